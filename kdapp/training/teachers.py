"""Teachers: training one on hard labels (train_teacher), finding a trained one, running it over a
whole split, and caching what it says.

Teacher logits depend only on (teacher weights, images). The app distils from the same shipped
teacher over and over, each run in a fresh worker process, so they are kept in memory for the
process and, given a cache_dir, on disk for the next process: 3 s saved per run.
"""
import copy
import hashlib
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from kdapp import checkpoints, data as data_lib, events
from kdapp.models import build
from kdapp.training import distributed, resume as resume_lib
from kdapp.training.optim import AdamCosine
from kdapp.training.progress import Clock, Meter, log_points
from kdapp.training.techniques import max_norm_

EVAL_BATCH = 1000
_LOGIT_CACHE = {}
_LOGIT_CACHE_SIZE = 64  # (teacher, split, shift) keys; 60k x 10 floats is 2.4 MB; a radius-2 shift ensemble is 25 per split


class Cancelled(Exception):
    """Raised inside the loops when should_stop() says so; the message says why."""


def never():
    return False


def with_deadline(should_stop, seconds, what="the run"):
    """should_stop() that also raises Cancelled once `seconds` have passed from now: a run's time limit."""
    deadline = time.monotonic() + seconds

    def check():
        if time.monotonic() > deadline:
            raise Cancelled(f"{what} reached its time limit of {seconds:.0f} s")
        return should_stop()
    return check


@torch.inference_mode()
def predict_logits(model, x, batch_size=EVAL_BATCH, should_stop=never, transform=None):
    """The model's logits over x, batch by batch; `transform` (say, data.shift to an offset) is
    applied to each batch, so that no transformed copy of the whole split is made."""
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        if should_stop():
            raise Cancelled("stopped")
        batch = x[i:i + batch_size]
        out.append(model(batch if transform is None else transform(batch)))
    return torch.cat(out).float()


def shift_readings(model, x, k, should_stop=never):
    """The model's logits over x moved by each offset of data.shift_offsets(k), one tensor per offset:
    a shift ensemble's readings, uncached (k=0: the one plain reading)."""
    return [predict_logits(model, x, should_stop=should_stop, transform=data_lib.shifter(dy, dx))
            for dy, dx in data_lib.shift_offsets(k)]


def accuracy(logits, y):
    return (logits.argmax(1) == y).float().mean().item()


def evaluate(model, x, y, batch_size=EVAL_BATCH):
    """Test accuracy in [0, 1]. Leaves the model in eval() mode."""
    return accuracy(predict_logits(model, x, batch_size), y)


def is_cnn(model):
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def channels_last(model):
    """A CNN with its weights in channels_last (in place; other models as they are), so that its
    convs write NHWC maps and max-pooling runs on them. PyTorch's NCHW max_pool2d is slow on CPU:
    measured on 2 vCPUs, a KD + baseline step of seed_student 16.5 vs 20.2 ms, a 2,000-digit test
    pass 94 vs 162 ms, the seed teacher's pass 2,996 vs 2,150 samples/s. The same math; values
    differ only in float rounding, and the state_dict loads into a plain model."""
    return model.to(memory_format=torch.channels_last) if is_cnn(model) else model


def teacher_pass(teacher, x, should_stop=never, transform=None):
    """Logits of a teacher over a whole split (each batch through `transform` if given), run in
    channels_last (on a copy: the caller's teacher keeps its layout)."""
    if x.dim() == 4 and is_cnn(teacher):
        teacher = channels_last(copy.deepcopy(teacher))
        x = x.contiguous(memory_format=torch.channels_last)
        if transform is not None:  # a shifted batch is a strided view: back to channels_last for the convs
            transform = lambda batch, move=transform: move(batch).contiguous(memory_format=torch.channels_last)
    return predict_logits(teacher, x, should_stop=should_stop, transform=transform)


def cached_logits(key, teacher, x, should_stop=never, cache_dir=None, transform=None):
    """The teacher's logits over x (each batch through `transform`, e.g. a shift, if given), looked
    up by `key` (None = no caching); the key must name the transform."""
    if key is None:
        return teacher_pass(teacher, x, should_stop, transform)
    if key in _LOGIT_CACHE:
        return _LOGIT_CACHE[key]
    path = logits = None
    if cache_dir is not None:
        path = cache_path(cache_dir, key)
        try:
            logits = torch.load(path, map_location=x.device, weights_only=True)
            if logits.shape != (len(x), 10):
                logits = None
        except Exception:  # missing, or unreadable: recompute and rewrite
            logits = None
    if logits is None:
        logits = teacher_pass(teacher, x, should_stop, transform)
        if path is not None:
            checkpoints.atomic_save(logits.cpu(), path)
    if len(_LOGIT_CACHE) >= _LOGIT_CACHE_SIZE:
        _LOGIT_CACHE.pop(next(iter(_LOGIT_CACHE)))
    _LOGIT_CACHE[key] = logits
    return logits


def cache_path(cache_dir, key):
    """The file under cache_dir that holds the logits cached under `key`."""
    return Path(cache_dir) / f"teacher-logits-{hashlib.sha1(repr(key).encode()).hexdigest()[:16]}.pt"


def teacher_key(path, data, device):
    """The logit cache's key for the teacher checkpoint at `path` reading `data` digits on `device` (a
    tensor's device, such as cpu or cuda:0): the file and when it was written, so a retrained teacher
    is read afresh."""
    path = Path(path)
    return str(path), path.stat().st_mtime_ns, data, str(device)


def teacher_dirs(runs_dir):
    """Where teachers are looked for: the shipped ones first, then those trained by earlier runs."""
    return [checkpoints.SHIPPED_DIR] + ([Path(runs_dir) / "teachers"] if runs_dir else [])


def copy_seed(seed, copy):
    """The seed that trains copy 2, 3, ... of an architecture: seed + 1, + 2, ...: another network, not the same
    one again (a run's missing copy, `train-teacher --copy N`, the reproduction's teachers)."""
    return seed + copy - 1


def get_teacher(arch, dataset, runs_dir, emit, copy=1):
    """The trained teacher for (arch, data), or None when there is none (or it is corrupt, with a
    warning event); `copy` 2, 3, ... is another network of that architecture (checkpoints.teacher_path).
    Returns (model, cache key, checkpoint path) on the dataset's device."""
    path = checkpoints.find_teacher(arch, dataset.source, teacher_dirs(runs_dir), copy)
    if path is None:
        return None
    try:
        model, meta = checkpoints.load(path, dataset.train_x.device)
    except checkpoints.CheckpointError as e:
        emit(events.warning(f"{e}; training a new {arch} teacher instead"))
        return None
    if meta.get("data") != dataset.source:
        # The sample's test digits are MNIST training digits: a teacher that trained on them
        # would leak the test set into every soft target.
        emit(events.warning(f"{path.name} was trained on {meta.get('data')!r} data, not {dataset.source!r}: "
                            f"a teacher must never have seen the run's test digits; training a new {arch} "
                            "teacher instead"))
        return None
    emit(events.phase("teacher", f"teacher {arch} from {path.name}"))
    return model, teacher_key(path, dataset.source, dataset.train_x.device), str(path)


TEACHER_AUGMENTATIONS = {"none": None, "shift2": data_lib.random_shift, "pen": data_lib.random_pen}


def train_teacher(arch, dataset, epochs, lr=1e-3, batch_size=128, seed=0, augment="shift2", max_norm=None,
                  init=None, swa=False, resume=None, emit=lambda event: None, should_stop=never):
    """Train `arch` on hard labels, its batches augmented by TEACHER_AUGMENTATIONS[augment]: ±2 px
    shifts (the default), or `pen` (kdapp.data.random_pen). With `max_norm` every hidden unit's
    incoming weights are held to that L2 norm after each step (techniques.max_norm_, Hinton et al.
    2012). With `init` (a checkpoint as kdapp.checkpoints.load returns it: model, metadata)
    training starts from that model's weights instead of a random initialisation.

    With `swa` the learning rate stays at `lr` and the model returned is the mean of the weights
    after each epoch: stochastic weight averaging (Izmailov et al. 2018, "Averaging weights leads
    to wider optima and better generalization"), usually from a trained `init`. The mean of
    max-norm-bounded weights is bounded too. The models here have no batch norm to re-estimate.

    With `resume` (a kdapp.training.resume.ResumePoint) the state is saved after each epoch and a
    training that finds one carries on after its epoch. Returns (model in eval mode, test accuracy)."""
    augmentation = TEACHER_AUGMENTATIONS[augment]
    device = dataset.train_x.device
    torch.manual_seed(seed)
    model = channels_last(build(arch).to(device))
    if init is not None:
        start_from, meta = init
        if meta["arch"] != arch:
            raise ValueError(f"the checkpoint to start from holds architecture {meta['arch']}, not {arch}: start "
                             f"from a checkpoint of {arch}, or train {meta['arch']}")
        if meta.get("data") != dataset.source:  # full MNIST's training digits hold the sample's test digits
            raise ValueError(f"the checkpoint to start from was trained on {meta.get('data')!r} data, not "
                             f"{dataset.source!r}: a teacher must never have seen the run's test digits")
        model.load_state_dict(start_from.state_dict())
    average = torch.optim.swa_utils.AveragedModel(model, use_buffers=True) if swa else None
    generator = torch.Generator().manual_seed(seed)
    n = len(dataset.train_y)
    steps_per_epoch = math.ceil(n / batch_size)
    optimizer = AdamCosine(model.parameters(), lr, epochs * steps_per_epoch, constant=swa)
    clock, meter, log_now = Clock(epochs * steps_per_epoch), Meter(["ce"], device), log_points(steps_per_epoch, 20)
    settings = {"teacher": arch, "data": dataset.source, "epochs": epochs, "lr": lr, "batch_size": batch_size,
                "seed": seed, "augment": augment, "max_norm": max_norm, "swa": swa,
                "init": None if init is None else distributed.weights_hash(start_from)}  # weights, not file bytes
    averaged = {"average": average} if swa else None
    trained = average.module if swa else model  # what is evaluated and returned
    start, acc, seconds = 0, 0.0, 0.0
    state = resume.load(settings) if resume is not None else None
    if state is not None:
        start, (acc,), seconds = resume_lib.restore(state, model, optimizer, None, None, [generator], averaged)
        clock = Clock((epochs - start) * steps_per_epoch)
        emit(events.phase("resuming", f"resuming {arch} after epoch {start} of {epochs}"))
    emit(events.phase("training teacher", f"training {arch} for {epochs} epochs"))
    for epoch in range(start, epochs):
        began = time.monotonic()
        model.train()
        for i, idx in enumerate(distributed.epoch_batches(n, batch_size, generator, device)):
            if should_stop():
                raise Cancelled("stopped")
            x = dataset.train_x[idx]
            if augmentation is not None:
                x = augmentation(x, generator=generator)
            loss = F.cross_entropy(model(x), dataset.train_y[idx])
            optimizer.step(loss)
            if max_norm is not None:
                max_norm_(model, max_norm)
            meter.add(loss)
            if log_now(i):
                step = epoch * steps_per_epoch + i + 1
                emit(events.teacher_step(epoch + 1, epochs, step, epochs * steps_per_epoch, meter.read()["ce"],
                                         clock.eta(step - start * steps_per_epoch)))
        if swa:
            average.update_parameters(model)
        acc = evaluate(trained, dataset.test_x, dataset.test_y)
        seconds += time.monotonic() - began
        emit(events.teacher_epoch(epoch + 1, epochs, acc))
        if resume is not None:
            resume.save(resume_lib.capture(settings, epoch + 1, model, optimizer, None, None, [generator], [acc],
                                           seconds, averaged))
    return trained.eval(), acc
