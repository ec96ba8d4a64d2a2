"""What the student learned from its teacher, beyond accuracy: computed once, at the end of a run,
from the three models' logits on the test split, and stored with the run.

- agreement: how often a student's top-1 answer is the teacher's (Stanton et al., 2021, "Does
  knowledge distillation really work?", call this fidelity). When the soft targets came from an
  ensemble (several teachers, or a teacher read at several shifts), "the teacher" is that ensemble:
  its readings' probabilities averaged, at T=1 for answers and at each KL's T;
- KL(teacher ‖ model), mean over the test digits, at T=1 and at the run's T;
- accuracy per class and the confusion matrices (rows = true class);
- where KD changed the answer: the test digits the KD student gets right and the baseline wrong
  ("fixed"), and the other way round ("broken"). fixed − broken = (student − baseline) × test size.
"""
import base64

import numpy as np
import torch
import torch.nn.functional as F

from kdapp.data import MNIST_MEAN, MNIST_STD
from kdapp.losses import teacher_log_probs

MAX_EXAMPLES = 32  # thumbnails kept per gallery
ROLES = ("teacher", "student", "baseline")


def mean_kl(teacher_logits, logits, temperature):
    """Mean over digits of KL(softmax(t/T) ‖ softmax(s/T)), in nats; the teacher may be a list of
    readings (an ensemble: their probabilities averaged, as kdapp.losses.teacher_log_probs does)."""
    log_p = teacher_log_probs(teacher_logits, temperature)
    log_q = F.log_softmax(logits.float() / temperature, 1)
    return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True).item()


def confusion(y, predicted, classes=10):
    """counts[true][predicted] as nested lists."""
    return torch.bincount(y * classes + predicted, minlength=classes * classes).view(classes, classes).tolist()


def to_uint8(x):
    """Normalised (N,1,28,28) -> uint8 (N,28,28), exactly the bytes MNIST stored."""
    return ((x[:, 0].float() * MNIST_STD + MNIST_MEAN) * 255).round().clamp(0, 255).to(torch.uint8)


def encode_images(images):
    """uint8 (N,28,28) -> base64 text, for a JSON column."""
    return base64.b64encode(np.ascontiguousarray(images, dtype=np.uint8).tobytes()).decode("ascii")


def decode_images(text, side=28):
    raw = np.frombuffer(base64.b64decode(text), dtype=np.uint8)
    return raw.reshape(-1, side, side)


def _examples(mask, y, logits, x, limit):
    """The first `limit` digits where `mask` holds: index, label, each model's answer and softmax."""
    index = torch.nonzero(mask).flatten()[:limit]
    probs = {role: F.softmax(z[index].float(), 1) for role, z in logits.items()}
    return {"count": int(mask.sum()),
            "index": index.tolist(),
            "label": y[index].tolist(),
            "predicted": {role: p.argmax(1).tolist() for role, p in probs.items()},
            "probs": {role: [[round(v, 5) for v in row] for row in p.tolist()] for role, p in probs.items()},
            "images": encode_images(to_uint8(x[index]).cpu().numpy())}


def fidelity(logits, y, temperature, x, max_examples=MAX_EXAMPLES):
    """logits: {"teacher", "student", optional "baseline": (N,10)} on test digits x (N,1,28,28)
    with labels y. The teacher may be None (deep supervision), and then there is no agreement or KL
    to report, or a list of readings (an ensemble: teacher_log_probs), and then its answers are those of
    its averaged probabilities and `teacher_readings` says how many. Returns a JSON-ready dict (see
    the module docstring)."""
    readings = logits.get("teacher")
    readings = [t.detach().float().cpu() for t in readings] if isinstance(readings, (list, tuple)) else None
    logits = {role: (teacher_log_probs(readings, 1.0) if role == "teacher" and readings else z.detach().float().cpu())
              for role, z in logits.items() if z is not None}  # log-probabilities are logits at T=1
    teacher_at_T = readings or logits.get("teacher")
    y, x = y.cpu(), x.cpu()
    predicted = {role: z.argmax(1) for role, z in logits.items()}
    out = {"test_samples": len(y), "temperature": float(temperature),
           "teacher_readings": len(readings) if readings else 1,
           "accuracy": {role: (p == y).float().mean().item() for role, p in predicted.items()},
           "agreement": {}, "kl": {}, "per_class": {}, "confusion": {}}
    for role, p in predicted.items():
        out["confusion"][role] = confusion(y, p)
        counts = torch.bincount(y, minlength=10).clamp(min=1)
        out["per_class"][role] = (torch.bincount(y[p == y], minlength=10) / counts).tolist()
        if role != "teacher" and "teacher" in predicted:
            out["agreement"][role] = (p == predicted["teacher"]).float().mean().item()
            out["kl"][role] = {"T1": mean_kl(teacher_at_T, logits[role], 1.0),
                               "T": mean_kl(teacher_at_T, logits[role], temperature)}
    if "baseline" in predicted:
        student_right, baseline_right = predicted["student"] == y, predicted["baseline"] == y
        out["fixed"] = _examples(student_right & ~baseline_right, y, logits, x, max_examples)
        out["broken"] = _examples(~student_right & baseline_right, y, logits, x, max_examples)
    return out


def bias_for_share(logits, cls, count):
    """The smallest shift of class `cls`'s logit (its output bias) that makes it the top-1 answer
    for `count` of the examples: Hinton et al.'s correction for a class the student never saw."""
    others = logits.clone()
    others[:, cls] = float("-inf")
    needed = torch.sort(others.max(1).values - logits[:, cls]).values  # shift at which each flips to cls
    count = min(max(count, 1), len(needed))
    return float(needed[count - 1]) + 1e-4 if count == len(needed) else float(needed[count - 1] + needed[count]) / 2


def omitted_class(logits, labels, cls):
    """Hinton, Vinyals & Dean (2015), section 3: a student whose transfer set had no `cls` digits.
    For one model's test logits: errors overall and on `cls`, before and after raising cls's
    bias until its share of the answers matches its share of the test set."""
    labels = labels.cpu()
    logits = logits.float().cpu()
    on_cls = labels == cls
    shift = bias_for_share(logits, cls, int(on_cls.sum()))
    adjusted = logits.clone()
    adjusted[:, cls] += shift
    out = {"omitted_class": cls, "omitted_test_digits": int(on_cls.sum()), "bias_shift": shift}
    for name, z in (("", logits), ("_adjusted", adjusted)):
        wrong = z.argmax(1) != labels
        out[f"errors{name}"] = int(wrong.sum())
        out[f"omitted_errors{name}"] = int(wrong[on_cls].sum())
        out[f"omitted_acc{name}"] = 1 - int(wrong[on_cls].sum()) / max(int(on_cls.sum()), 1)
    return out

