"""The training loops. Small functions with explicit arguments; progress goes out through an
`emit(event)` callback (see kdapp.events) and cancellation comes in through `should_stop()`,
both checked every step, so the same code serves the CLI, the app's worker and the tests.

A run: get the teacher (checkpoint, or train it first), compute its soft targets over the
training set once, then train the KD student and a baseline student side by side: the same
architecture, the same initial weights, the same batches, hard labels only for the baseline.
"""
import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from kdapp import checkpoints, data as data_lib, events, fidelity
from kdapp.config import RunConfig
from kdapp.features import FeatureDistiller
from kdapp.losses import distillation_loss, teacher_log_probs
from kdapp.models import build
from kdapp.teachers import Cancelled, accuracy, cached_logits, evaluate, get_teacher, predict_logits

__all__ = ["Cancelled", "RunResult", "available_devices", "distill", "pick_device", "run", "train_teacher"]


def pick_device(name="auto"):
    """cuda, then mps, then cpu for "auto"; a named device that is missing is an error, not a fallback."""
    if name == "auto":
        return torch.device(available_devices()[0])
    if name != "cpu" and name not in available_devices():
        raise ValueError(f"device {name!r} was asked for, but no {name.upper()} device is available; "
                         "use 'auto' or 'cpu'")
    return torch.device(name)


def available_devices():
    """Best first."""
    names = ["cpu"]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        names.insert(0, "mps")
    if torch.cuda.is_available():
        names.insert(0, "cuda")
    return names


def _never():
    return False


def _ignore(event):
    pass


@dataclass
class RunResult:
    """What a run made, in this process: its models and its metrics (accuracies in [0, 1])."""
    config: RunConfig
    metrics: dict  # teacher_acc(s), student_acc, baseline_acc, train/test_samples (+ data, device, seconds)
    teacher: torch.nn.Module
    student: torch.nn.Module
    baseline: torch.nn.Module | None
    paths: dict = field(default_factory=dict)  # checkpoints written: teacher, student, baseline
    fidelity: dict | None = None  # kdapp.fidelity: agreement, KL, per class, confusions, changed answers


class AdamCosine:
    """Adam with its learning rate cosine-decayed to 0 over the run, and optional gradient
    clipping: the one way every model in a run learns, so the KD student and its baseline
    differ only in their loss."""

    def __init__(self, params, lr, total_steps, clip_grad_norm=None):
        self.params, self.clip = list(params), clip_grad_norm
        self.optimizer = torch.optim.Adam(self.params, lr=lr)
        cosine = lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, cosine)

    def step(self, loss):
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.optimizer.step()
        self.scheduler.step()


class _Clock:
    """Steps done of a phase's total -> ETA, from the phase's own pace."""

    def __init__(self, total_steps):
        self.total, self.start = max(total_steps, 1), time.monotonic()

    def eta(self, done):
        return None if done == 0 else (time.monotonic() - self.start) / done * (self.total - done)


class _Meter:
    """Running sums of a few losses, kept on the device and read once per log interval, so
    logging costs no per-step GPU sync."""

    def __init__(self, names, device):
        self.names, self.sums, self.count = names, torch.zeros(len(names), device=device), 0

    def add(self, *values):
        zero = self.sums.new_zeros(())
        self.sums += torch.stack([zero if v is None else v.detach() for v in values])
        self.count += 1

    def read(self):
        means = dict(zip(self.names, (self.sums / max(self.count, 1)).tolist()))
        self.sums.zero_()
        self.count = 0
        return means


def _batches(n, batch_size, generator, device):
    """One epoch of shuffled index slices into in-memory tensors (no DataLoader)."""
    order = torch.randperm(n, generator=generator).to(device)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def _log_points(steps_per_epoch, per_epoch):
    every = max(1, steps_per_epoch // per_epoch)
    return lambda i: (i + 1) % every == 0 or i + 1 == steps_per_epoch


TEACHER_AUGMENTATIONS = {"none": None, "shift2": data_lib.random_shift, "pen": data_lib.random_pen}


def train_teacher(arch, dataset, epochs, lr=1e-3, batch_size=128, seed=0, augment="shift2",
                  emit=_ignore, should_stop=_never):
    """Train `arch` on hard labels, its batches augmented by TEACHER_AUGMENTATIONS[augment]: ±2 px
    shifts (the default), or `pen` (kdapp.data.random_pen). Returns (model in eval mode, test accuracy)."""
    augmentation = TEACHER_AUGMENTATIONS[augment]
    device = dataset.train_x.device
    torch.manual_seed(seed)
    model = build(arch).to(device)
    generator = torch.Generator().manual_seed(seed)
    n = len(dataset.train_y)
    steps_per_epoch = math.ceil(n / batch_size)
    optimizer = AdamCosine(model.parameters(), lr, epochs * steps_per_epoch)
    clock, meter, log_now = _Clock(epochs * steps_per_epoch), _Meter(["ce"], device), _log_points(steps_per_epoch, 20)
    emit(events.phase("training teacher", f"training {arch} for {epochs} epochs"))
    acc = 0.0
    for epoch in range(epochs):
        model.train()
        for i, idx in enumerate(_batches(n, batch_size, generator, device)):
            if should_stop():
                raise Cancelled("stopped")
            x = dataset.train_x[idx]
            if augmentation is not None:
                x = augmentation(x, generator=generator)
            loss = F.cross_entropy(model(x), dataset.train_y[idx])
            optimizer.step(loss)
            meter.add(loss)
            if log_now(i):
                step = epoch * steps_per_epoch + i + 1
                emit(events.teacher_step(epoch + 1, epochs, step, clock.total, meter.read()["ce"], clock.eta(step)))
        acc = evaluate(model, dataset.test_x, dataset.test_y)
        emit(events.teacher_epoch(epoch + 1, epochs, acc))
    return model.eval(), acc


def _alpha_at(config, step, total_steps):
    """alpha, or the linear schedule from alpha to alpha_end over the run."""
    if config.alpha_end is None:
        return config.alpha
    return config.alpha + (config.alpha_end - config.alpha) * step / max(total_steps - 1, 1)


def distill(config, teachers, dataset, emit=_ignore, should_stop=_never, teacher_keys=None, cache_dir=None):
    """Train the KD student (and, if config.baseline, its hard-label twin) from `teachers`.

    Without augmentation or a feature loss the teachers' soft targets over the whole training set
    are computed once and indexed by the same shuffled indices as each batch; otherwise the
    teachers run on every batch, on exactly the images the student sees. Consistent teaching
    (Beyer et al., 2022, "function matching") is the second case with pen-augmented batches
    (kdapp.data.random_pen): the teacher answers for each augmented image, not the original.
    The baseline trains on the same augmented batches, so the comparison stays fair."""
    device, T = dataset.train_x.device, config.temperature
    generator = torch.Generator().manual_seed(config.seed)
    n_all = len(dataset.train_y)
    n = max(min(n_all, config.batch_size), round(config.train_fraction * n_all))
    subset = torch.randperm(n_all, generator=generator)[:n].to(device)
    train_x, train_y = dataset.train_x[subset], dataset.train_y[subset]

    # The teachers: their test accuracy, and their soft targets unless they must run online.
    keys = teacher_keys or [None] * len(teachers)
    teacher_accs = [evaluate_cached(t, k, dataset, cache_dir) for t, k in zip(teachers, keys)]
    online = config.augment or config.consistent or config.feature_loss != "none"
    if not online:
        emit(events.phase("teacher logits", f"computing the teacher's soft targets over {n_all:,} "
                                            "training digits, once"))
        soft_targets = teacher_log_probs([cached_logits(k, t, dataset.train_x, should_stop, cache_dir)[subset]
                                          for k, t in zip(keys, teachers)], T)

    # Twin students: the same initial weights; the baseline learns from the labels alone.
    torch.manual_seed(config.seed)
    student = build(config.student).to(device)
    baseline = copy.deepcopy(student) if config.baseline else None
    distiller = None
    if config.feature_loss != "none":
        distiller = FeatureDistiller.for_models(config.feature_loss, student, teachers[0], train_x[:2])
        distiller = distiller.to(device).train()
    steps_per_epoch = math.ceil(n / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    kd_params = list(student.parameters()) + (list(distiller.parameters()) if distiller else [])
    kd_optimizer = AdamCosine(kd_params, config.lr, total_steps, config.clip_grad_norm)
    if baseline is not None:
        base_optimizer = AdamCosine(baseline.parameters(), config.lr, total_steps, config.clip_grad_norm)

    emit(events.phase("distilling", f"distilling {config.student} from {'+'.join(config.teachers)} "
                                    f"on {n:,} digits"))
    emit(events.epoch(0, config.epochs, teacher_accs[0], None, None))
    clock, log_now = _Clock(total_steps), _log_points(steps_per_epoch, 25)
    meter = _Meter(["loss", "soft", "hard", "feature", "baseline"], device)
    student_acc = baseline_acc = None
    for epoch in range(config.epochs):
        student.train()
        if baseline is not None:
            baseline.train()
        for i, idx in enumerate(_batches(n, config.batch_size, generator, device)):
            if should_stop():
                raise Cancelled("stopped")
            step = epoch * steps_per_epoch + i
            x, y = train_x[idx], train_y[idx]
            if config.consistent:
                x = data_lib.random_pen(x, generator=generator)
            elif config.augment:
                x = data_lib.random_shift(x, generator=generator)

            # KD student: soft targets from the cache, or from the teachers on this very batch.
            feature_loss = None
            if online:
                logits, s_features = student.forward_features(x)
                with torch.no_grad():
                    outs = [t.forward_features(x) for t in teachers]
                targets = teacher_log_probs([o[0] for o in outs], T)
                if distiller is not None:
                    feature_loss = distiller(s_features, outs[0][1])
            else:
                logits, targets = student(x), soft_targets[idx]
            parts = distillation_loss(logits, targets, y, T, _alpha_at(config, step, total_steps))
            loss = parts.total if feature_loss is None else parts.total + config.feature_weight * feature_loss
            kd_optimizer.step(loss)

            # Baseline: the same batch, labels only.
            base_loss = None
            if baseline is not None:
                base_loss = F.cross_entropy(baseline(x), y)
                base_optimizer.step(base_loss)

            meter.add(parts.total, parts.soft, parts.hard, feature_loss, base_loss)
            if log_now(i):
                m = meter.read()
                emit(events.step(epoch + 1, config.epochs, step + 1, total_steps, m["loss"], m["soft"], m["hard"],
                                 m["feature"] if distiller else None,
                                 m["baseline"] if baseline is not None else None, clock.eta(step + 1)))
        student_acc = evaluate(student, dataset.test_x, dataset.test_y)
        baseline_acc = evaluate(baseline, dataset.test_x, dataset.test_y) if baseline is not None else None
        emit(events.epoch(epoch + 1, config.epochs, teacher_accs[0], student_acc, baseline_acc))

    metrics = {"teacher_acc": teacher_accs[0], "teacher_accs": teacher_accs, "student_acc": student_acc,
               "baseline_acc": baseline_acc, "train_samples": n, "test_samples": len(dataset.test_y)}
    return RunResult(config, metrics, teachers[0], student.eval(),
                     baseline.eval() if baseline is not None else None)


def evaluate_cached(teacher, key, dataset, cache_dir=None):
    """A teacher's test accuracy from its (cached) test-set logits."""
    logits = cached_logits(None if key is None else (*key, "test"), teacher, dataset.test_x, cache_dir=cache_dir)
    return accuracy(logits, dataset.test_y)


def run_fidelity(result, teacher_key, dataset, cache_dir=None):
    """kdapp.fidelity over the test split for a finished distill(): the teacher's test logits come
    from the cache that evaluated it."""
    test_x = dataset.test_x
    logits = {"teacher": cached_logits(None if teacher_key is None else (*teacher_key, "test"), result.teacher,
                                       test_x, cache_dir=cache_dir),
              "student": predict_logits(result.student, test_x),
              "baseline": predict_logits(result.baseline, test_x) if result.baseline is not None else None}
    return fidelity.fidelity(logits, dataset.test_y, result.config.temperature, test_x)


def _teacher(arch, dataset, config, runs_dir, emit, should_stop):
    """A trained teacher: its checkpoint if there is one, else trained now (and saved for next time)."""
    found = get_teacher(arch, dataset, runs_dir, emit)
    if found is not None:
        return found
    model, acc = train_teacher(arch, dataset, config.teacher_epochs, seed=config.seed, emit=emit,
                               should_stop=should_stop)
    if not runs_dir:
        return model, None, None
    path = checkpoints.save(checkpoints.teacher_path(Path(runs_dir) / "teachers", arch, dataset.source), model,
                            arch, config={"epochs": config.teacher_epochs, "seed": config.seed, "augment": "shift2"},
                            data=dataset.source, metrics={"test_acc": acc})
    emit(events.phase("teacher", f"saved teacher to {path}"))
    return model, None, str(path)


def run(config, emit=_ignore, should_stop=_never, runs_dir=None, data_dir="data", out_dir=None):
    """One whole run: data, teacher(s), KD + baseline, evaluation, and the students saved into
    `out_dir` (default runs_dir/latest). Trained teachers and the logit cache go under runs_dir."""
    started = time.monotonic()
    deadline = started + config.time_limit_s

    def stop_check():
        if time.monotonic() > deadline:
            raise Cancelled(f"the run reached its time limit of {config.time_limit_s:.0f} s")
        return should_stop()

    emit(events.phase("loading data", "loading data"))
    device = pick_device(config.device)
    dataset = data_lib.load(config.data, data_dir).to(device)
    emit(events.data(dataset.source, dataset.describe(), str(device)))
    found = [_teacher(arch, dataset, config, runs_dir, emit, stop_check) for arch in config.teachers]
    teachers, keys = [f[0] for f in found], [f[1] for f in found]
    result = distill(config, teachers, dataset, emit, stop_check, teacher_keys=keys,
                     cache_dir=Path(runs_dir) / "cache" if runs_dir else None)
    emit(events.phase("fidelity", "comparing the students with the teacher on the test digits"))
    result.fidelity = run_fidelity(result, keys[0], dataset, Path(runs_dir) / "cache" if runs_dir else None)
    result.metrics.update(data=dataset.source, device=str(device), seconds=round(time.monotonic() - started, 2))
    result.paths["teacher"] = found[0][2]
    out_dir = out_dir or (Path(runs_dir) / "latest" if runs_dir else None)
    if out_dir:
        emit(events.phase("saving", "saving the students"))
        for kind, role in (("kd", "student"), ("baseline", "baseline")):
            model = getattr(result, role)
            if model is not None:
                path = checkpoints.student_path(out_dir, config.student, kind, dataset.source)
                result.paths[role] = str(checkpoints.save(path, model, config.student, config.to_dict(),
                                                          dataset.source, result.metrics))
    result.teacher, result.student = result.teacher.cpu().eval(), result.student.cpu().eval()
    if result.baseline is not None:
        result.baseline = result.baseline.cpu().eval()
    return result
