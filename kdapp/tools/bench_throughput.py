"""Training throughput for `python -m kdapp bench` (docs/performance.md, part a): the seed article's
loop as it is written there, against the engine's KD (teacher logits cached) and plain training,
measured in alternating rounds in one process.
"""
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdapp import data as data_lib
from kdapp.config import RunConfig
from kdapp.models import build
from kdapp.training import teachers, train


# ---- (a) the seed article's loop, as it is written there ----
class PILDigits(torch.utils.data.Dataset):
    """The seed's input pipeline: one PIL image per sample through ToTensor + Normalize."""

    def __init__(self, images, labels):
        from PIL import Image
        from torchvision import transforms
        self.images = [Image.fromarray(img) for img in images]
        self.labels = labels.tolist()
        self.transform = transforms.Compose([transforms.ToTensor(),
                                             transforms.Normalize((data_lib.MNIST_MEAN,), (data_lib.MNIST_STD,))])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i]


def seed_reference_throughput(teacher, samples, T=4.0, alpha=0.7, seed=0):
    """Samples/s of the seed's train_distillation: DataLoader, teacher forward every batch, batch 64."""
    images, labels = data_lib.sample_split()[:2]
    loader = torch.utils.data.DataLoader(PILDigits(images, labels), batch_size=64, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    student = build("seed_student")
    optimizer = torch.optim.Adam(student.parameters(), lr=0.001)
    kl, ce = nn.KLDivLoss(reduction="batchmean"), nn.CrossEntropyLoss()
    teacher.eval()
    student.train()
    seen, start = 0, time.perf_counter()
    while seen < samples:
        for x, y in loader:
            with torch.no_grad():
                teacher_probs = F.softmax(teacher(x) / T, dim=1)
            logits = student(x)
            loss = alpha * kl(F.log_softmax(logits / T, dim=1), teacher_probs) * T * T + (1 - alpha) * ce(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(y)
            if seen >= samples:
                break
    return seen / (time.perf_counter() - start)


def interleaved_throughputs(teacher, dataset, rounds, reference_samples):
    """Samples/s of (seed reference loop, engine KD with logits cached, plain training), measured
    in alternating rounds (one epoch of each per round) so that machine noise hits all three alike.
    Also returns the one-time teacher pass that fills the cache."""
    teachers._LOGIT_CACHE.clear()
    key = ("bench", time.time())
    start = time.perf_counter()  # a cold run pays the teacher once on each split
    teachers.cached_logits(key, teacher, dataset.train_x)
    teachers.cached_logits((*key, "test"), teacher, dataset.test_x)
    teacher_pass_s = time.perf_counter() - start
    n = len(dataset.train_y)
    loops = {
        "reference": lambda r: seed_reference_throughput(teacher, reference_samples, seed=r),
        "kd": lambda r: train.distill(RunConfig(epochs=1, baseline=False, batch_size=64, augment=False,
                                                 lr=0.001, seed=r), [teacher], dataset, teacher_keys=[key]),
        "plain": lambda r: train.train_teacher("seed_student", dataset, 1, lr=0.001, batch_size=64,
                                                augment="none", seed=r),
    }
    spent = dict.fromkeys(loops, 0.0)
    order = list(loops)
    for r in range(rounds):
        for name in order[r % 3:] + order[:r % 3]:  # rotate, so no loop always follows the same one
            start = time.perf_counter()
            loops[name](r)
            spent[name] += time.perf_counter() - start
    return (rounds * reference_samples / spent["reference"], rounds * n / spent["kd"],
            rounds * n / spent["plain"], teacher_pass_s)


def amortised(steady_per_s, teacher_pass_s, samples_per_epoch, epochs):
    """Samples/s of a whole cold-cache run of `epochs`: the teacher pass paid once."""
    total = samples_per_epoch * epochs
    return total / (total / steady_per_s + teacher_pass_s)
