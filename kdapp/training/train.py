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

from kdapp import checkpoints, data as data_lib, events
from kdapp.training import distributed, resume as resume_lib, targets
from kdapp.evaluation import fidelity
from kdapp.config import MUTUAL, NO_PRETRAINED, SELF, RunConfig
from kdapp.training.optim import AdamCosine
from kdapp.training.techniques import TemperatureSchedule, max_norm_
from kdapp.losses import LOGIT_LOSSES
from kdapp.models import build
from kdapp.training.teachers import (Cancelled, accuracy, cached_logits, channels_last, evaluate, get_teacher, never,
                                     predict_logits, with_deadline)

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


def _ignore(event):
    pass


@dataclass
class RunResult:
    """What a run made, in this process: its models and its metrics (accuracies in [0, 1])."""
    config: RunConfig
    metrics: dict  # teacher_acc(s), student_acc, baseline_acc, train/test_samples (+ data, device, seconds)
    teacher: torch.nn.Module | None  # None for deep supervision, which has no teacher
    student: torch.nn.Module
    baseline: torch.nn.Module | None
    paths: dict = field(default_factory=dict)  # checkpoints written: teacher, student, baseline
    fidelity: dict | None = None  # kdapp.evaluation.fidelity: agreement, KL, per class, confusions, changed answers


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

    def read(self, world=distributed.SINGLE):
        """Means since the last read, averaged over ranks (every rank reads at the same steps)."""
        sums = distributed.sum_over_ranks(self.sums.clone(), world) / world.size
        means = dict(zip(self.names, (sums / max(self.count, 1)).tolist()))
        self.sums.zero_()
        self.count = 0
        return means


def _batches(n, batch_size, generator, device):
    """One epoch of shuffled index slices into in-memory tensors (no DataLoader)."""
    return distributed.epoch_batches(n, batch_size, generator, device)


def _log_points(steps_per_epoch, per_epoch):
    every = max(1, steps_per_epoch // per_epoch)
    return lambda i: (i + 1) % every == 0 or i + 1 == steps_per_epoch


TEACHER_AUGMENTATIONS = {"none": None, "shift2": data_lib.random_shift, "pen": data_lib.random_pen}


def train_teacher(arch, dataset, epochs, lr=1e-3, batch_size=128, seed=0, augment="shift2", max_norm=None,
                  init=None, swa=False, resume=None, emit=_ignore, should_stop=never):
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
    clock, meter, log_now = _Clock(epochs * steps_per_epoch), _Meter(["ce"], device), _log_points(steps_per_epoch, 20)
    settings = {"teacher": arch, "data": dataset.source, "epochs": epochs, "lr": lr, "batch_size": batch_size,
                "seed": seed, "augment": augment, "max_norm": max_norm, "swa": swa,
                "init": None if init is None else distributed.weights_hash(start_from)}  # weights, not file bytes
    averaged = {"average": average} if swa else None
    trained = average.module if swa else model  # what is evaluated and returned
    start, acc, seconds = 0, 0.0, 0.0
    state = resume.load(settings) if resume is not None else None
    if state is not None:
        start, (acc,), seconds = resume_lib.restore(state, model, optimizer, None, None, [generator], averaged)
        clock = _Clock((epochs - start) * steps_per_epoch)
        emit(events.phase("resuming", f"resuming {arch} after epoch {start} of {epochs}"))
    emit(events.phase("training teacher", f"training {arch} for {epochs} epochs"))
    for epoch in range(start, epochs):
        began = time.monotonic()
        model.train()
        for i, idx in enumerate(_batches(n, batch_size, generator, device)):
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


def evaluate_sharded(model, x, y, world):
    """Test accuracy with each rank counting its slice of the split (the whole split in one process)."""
    if not world.distributed:
        return evaluate(model, x, y)
    mine = distributed.shard(torch.arange(len(y), device=y.device), world)
    correct = (predict_logits(model, x[mine]).argmax(1) == y[mine]).sum().float().reshape(1)
    return distributed.sum_over_ranks(correct, world).item() / len(y)


def distill(config, teachers, dataset, emit=_ignore, should_stop=never, teacher_keys=None, cache_dir=None,
            world=distributed.SINGLE, resume=None):
    """Train the KD student (and, if config.baseline, its hard-label twin) from `teachers`.

    Where the KD student's targets come from is chosen once, before the loop
    (kdapp.training.targets): the teachers' soft targets cached over the training set, the teachers
    run online on every batch, a teacher that learns too, or, with no teachers (deep supervision),
    the student's own deepest layer. The baseline learns from the labels alone on the same batches.

    Under torchrun (`world`, see kdapp.training.distributed) each rank trains on its slice of every
    global batch of config.batch_size x world.size, with both students wrapped in DDP.

    With `resume` (a kdapp.training.resume.ResumePoint) the state after each epoch is saved there,
    and a run that finds one at the start carries on after its epoch."""
    run = _Distillation(config, teachers, dataset, emit, teacher_keys, cache_dir, world, should_stop)
    for epoch in range(run.start_epoch(resume), run.epochs):
        kd_loss = run.begin_epoch(epoch)  # the fixed teacher's targets, or a learning one's (joint epochs, mutual)
        for i, idx in enumerate(run.batches()):
            if should_stop():
                raise Cancelled("stopped")
            step = epoch * run.steps_per_epoch + i
            x, y = run.batch(idx)

            # KD student: alpha * soft + (1 - alpha) * hard, plus the weighted feature loss if any.
            parts, feature_loss = kd_loss(x, y, idx, run.alpha(step), run.temperature.at(step))
            loss = parts.total if feature_loss is None else parts.total + config.feature_weight * feature_loss
            run.kd_optimizer.step(loss)
            run.learner.step()  # the teacher's own step, when it learns too

            # Baseline: the same batch, labels only.
            base_loss = None
            if run.baseline is not None:
                base_loss = F.cross_entropy(run.base_model(x), y)
                run.base_optimizer.step(base_loss)

            run.log(epoch, i, step, parts, feature_loss, base_loss)
        run.end_epoch(epoch, resume)
    return run.result()


class _Distillation:
    """Everything distill()'s loop reads, built once: the training digits and their order, the
    twin students and their optimisers, the temperature, the KD student's target source and the
    meters; and the loop's bookkeeping (augmenting a batch, logging, the epoch's evaluation, resume
    points, the metrics), so that distill() shows the training itself."""

    def __init__(self, config, teachers, dataset, emit, teacher_keys, cache_dir, world, should_stop):
        if bool(teachers) == config.deep_supervision:
            raise ValueError("deep supervision takes no teachers; every other run takes one or more")
        if world.distributed and (config.temperature_schedule == "ctkd" or targets.teacher_learns(config)):
            raise ValueError("ctkd, joint epochs and mutual learning run in one process: drop torchrun")
        if config.joint_epochs:  # the teacher will change: the caller's (and the cache's) stays as it was
            teachers = [copy.deepcopy(teachers[0])]
        self.config, self.dataset, self.emit, self.world, self.teachers = config, dataset, emit, world, teachers
        device = dataset.train_x.device
        self.generator = torch.Generator().manual_seed(config.seed)
        self.train_x, self.train_y, subset = _training_subset(config, dataset, self.generator)
        self.n = len(self.train_y)
        with distributed.main_first(world):  # rank 0 fills the logit cache, the other ranks read it
            self.teacher_accs = [evaluate_cached(t, k, dataset, cache_dir)
                                 for t, k in zip(teachers, teacher_keys or [None] * len(teachers))]
            teacher_logits = targets.cached_teacher_logits(config, teachers, teacher_keys, dataset, subset, emit,
                                                           should_stop, cache_dir)
        self.student, self.baseline, self.kd_model, self.base_model = targets.twin_students(
            config, teachers, self.train_x, world)
        # Augmentations draw from their own generator per rank; the batch order's stays in step.
        self.augment_generator = self.generator if not world.distributed else \
            torch.Generator().manual_seed(config.seed * 1_000_003 + world.rank)
        self.steps_per_epoch = distributed.steps_per_epoch(self.n, config.batch_size, world)
        self.epochs = config.epochs + config.joint_epochs
        self.total_steps = self.epochs * self.steps_per_epoch
        self.temperature = TemperatureSchedule(config, self.total_steps, device)
        self.learner = targets.TeacherLearning(config, teachers, self.steps_per_epoch, self.epochs)
        self.sources = targets.target_source(config, teachers, self.kd_model, teacher_logits, self.learner)
        self.kd_optimizer = AdamCosine([*self.kd_model.parameters(), *self.temperature.parameters()], config.lr,
                                       self.total_steps, config.clip_grad_norm)
        self.base_optimizer = AdamCosine(self.base_model.parameters(), config.lr, self.total_steps,
                                         config.clip_grad_norm) if self.baseline is not None else None
        self.part_names = [*LOGIT_LOSSES[config.loss].parts, *targets.regularizers(config)]
        self.has_feature = config.feature_loss != "none" or config.deep_supervision
        self.meter = _Meter(["loss", "soft", "hard", "feature", "baseline", *self.part_names], device)
        self.clock, self.log_now = _Clock(self.total_steps), _log_points(self.steps_per_epoch, 25)
        self.teacher_acc = self.teacher_accs[0] if self.teacher_accs else None
        self.student_acc = self.baseline_acc = None
        self.started, self.seconds_before = time.monotonic(), 0.0

        source = "its own deepest layer (deep supervision)" if not teachers else "+".join(config.teachers)
        emit(events.phase("distilling", f"distilling {config.student} from {source} on {self.n:,} digits"
                                        + (f", {world.size} processes" if world.distributed else "")))
        emit(events.epoch(0, self.epochs, self.teacher_acc, None, None))

    def _trainees(self):
        generators = [self.generator] if self.augment_generator is self.generator else \
            [self.generator, self.augment_generator]
        return self.kd_model, self.kd_optimizer, self.base_model, self.base_optimizer, generators

    def _extras(self):
        """What else learns, for a resume point: CTKD's temperature, and a teacher that learns beside
        the student (mutual learning, joint epochs) with its optimiser."""
        models, optimizers = {}, {}
        if self.temperature.learned is not None:
            models["temperature"] = self.temperature.learned
        if self.learner.learns(self.epochs - 1):
            models["teacher"], optimizers["teacher"] = self.learner.teacher, self.learner.optimizer
        return dict(extra_models=models, extra_optimizers=optimizers)

    def start_epoch(self, resume):
        """0, or the epoch after the one a resume point holds (its state restored). A point holds the
        config and a hash of the teachers' weights: one made from a since-retrained teacher is refused."""
        if resume is None:
            return 0
        self.resume_settings = {**self.config.to_dict(),
                                "teacher_weights": [distributed.weights_hash(t) for t in self.teachers]}
        if (state := resume.load(self.resume_settings)) is None:
            return 0
        start, accuracies, self.seconds_before = resume_lib.restore(state, *self._trainees(), **self._extras())
        self.student_acc, self.baseline_acc, self.teacher_acc = accuracies
        self.emit(events.resumed(start, start * self.steps_per_epoch))
        return start

    def begin_epoch(self, epoch):
        """Both students in training mode; -> this epoch's KD loss (kdapp.training.targets.target_source)."""
        self.kd_model.train()
        if self.baseline is not None:
            self.baseline.train()
        return self.sources(epoch)

    def batches(self):
        return distributed.epoch_batches(self.n, self.config.batch_size, self.generator, self.train_x.device,
                                         self.world)

    def batch(self, idx):
        """The digits at idx and their labels, with the run's augmentation (the same for both students)."""
        x, y = self.train_x[idx], self.train_y[idx]
        if self.config.consistent:
            x = data_lib.random_pen(x, generator=self.augment_generator)
        elif self.config.augment:
            x = data_lib.random_shift(x, generator=self.augment_generator)
        return x, y

    def alpha(self, step):
        """alpha, or the linear schedule from alpha to alpha_end over the run."""
        config = self.config
        if config.alpha_end is None:
            return config.alpha
        return config.alpha + (config.alpha_end - config.alpha) * step / max(self.total_steps - 1, 1)

    def log(self, epoch, i, step, parts, feature_loss, base_loss):
        """Add the step's losses to the meter, and emit their means at the log points."""
        self.meter.add(parts.total, parts.soft, parts.hard, feature_loss, base_loss,
                       *(parts.parts[name] for name in self.part_names))
        if not self.log_now(i):
            return
        m = self.meter.read(self.world)
        self.emit(events.step(epoch + 1, self.epochs, step + 1, self.total_steps, m["loss"], m["soft"], m["hard"],
                              m["feature"] if self.has_feature else None,
                              m["baseline"] if self.baseline is not None else None, self.clock.eta(step + 1),
                              parts={name: m[name] for name in self.part_names},
                              temperature=self.temperature.value()))

    def end_epoch(self, epoch, resume):
        """Test accuracies after the epoch (emitted), and the resume point saved if there is one."""
        test_x, test_y = self.dataset.test_x, self.dataset.test_y
        self.student_acc = evaluate_sharded(self.student, test_x, test_y, self.world)
        self.baseline_acc = evaluate_sharded(self.baseline, test_x, test_y, self.world) \
            if self.baseline is not None else None
        self.teacher_acc = self.learner.accuracy(epoch, self.dataset, self.teacher_acc)
        self.emit(events.epoch(epoch + 1, self.epochs, self.teacher_acc, self.student_acc, self.baseline_acc))
        if resume is not None:
            resume.save(resume_lib.capture(self.resume_settings, epoch + 1, *self._trainees(),
                                           (self.student_acc, self.baseline_acc, self.teacher_acc), self._seconds(),
                                           **self._extras()))

    def _seconds(self):
        return round(self.seconds_before + time.monotonic() - self.started, 2)  # loop and evaluations

    def result(self):
        # teacher_acc: after the run, for a teacher that learned too (mutual, joint epochs)
        world = self.world
        metrics = {"teacher_acc": self.teacher_acc, "teacher_accs": self.teacher_accs,
                   "student_acc": self.student_acc, "baseline_acc": self.baseline_acc, "train_samples": self.n,
                   "test_samples": len(self.dataset.test_y), "world_size": world.size,
                   "effective_batch_size": self.config.batch_size * world.size, "train_seconds": self._seconds()}
        if world.distributed:  # every replica must hold the same weights, bit for bit
            metrics["replica_hashes"] = distributed.gather_strings(
                distributed.weights_hash(self.student, self.baseline), world)
        teacher = self.learner.teacher
        return RunResult(self.config, metrics, teacher, self.student.eval(),
                         self.baseline.eval() if self.baseline is not None else None)


def _training_subset(config, dataset, generator):
    """The students' training digits: config.train_fraction of the split (at least one batch), in an
    order drawn from the run's generator, without Hinton's held-out class if there is one.
    Returns (x, y, the indices into the split)."""
    n_all = len(dataset.train_y)
    n = max(min(n_all, config.batch_size), round(config.train_fraction * n_all))
    subset = torch.randperm(n_all, generator=generator)[:n].to(dataset.train_x.device)
    if config.omit_class is not None:  # Hinton's held-out class: neither student ever sees one
        subset = subset[dataset.train_y[subset] != config.omit_class]
    return dataset.train_x[subset], dataset.train_y[subset], subset


def evaluate_cached(teacher, key, dataset, cache_dir=None):
    """A teacher's test accuracy from its (cached) test-set logits."""
    logits = cached_logits(None if key is None else (*key, "test"), teacher, dataset.test_x, cache_dir=cache_dir)
    return accuracy(logits, dataset.test_y)


def run_fidelity(result, teacher_key, dataset, cache_dir=None):
    """kdapp.evaluation.fidelity over the test split for a finished distill(): the teacher's test logits come
    from the cache that evaluated it (none without a teacher: deep supervision)."""
    test_x = dataset.test_x
    logits = {"teacher": cached_logits(None if teacher_key is None else (*teacher_key, "test"), result.teacher,
                                       test_x, cache_dir=cache_dir) if result.teacher is not None else None,
              "student": predict_logits(result.student, test_x),
              "baseline": predict_logits(result.baseline, test_x) if result.baseline is not None else None}
    return fidelity.fidelity(logits, dataset.test_y, result.config.temperature, test_x)


def born_again(config, dataset, emit=_ignore, should_stop=never, world=distributed.SINGLE):
    """Born-again networks (Furlanello et al., "Born-Again Neural Networks", ICML 2018): no
    pretrained teacher. Generation 0 is the student trained on labels alone, which is also the
    run's baseline; generation k distils from generation k-1, for config.generations generations.
    Every generation starts from the same initial weights (config.seed), so each differs from the
    last only in who taught it. Returns distill()'s RunResult for the last generation, its
    teacher generation K-1, the baseline generation 0 and metrics["generations"] (accuracies)."""
    augment = "pen" if config.consistent else ("shift2" if config.augment else "none")
    emit(events.phase("generation 0", f"generation 0: {config.student} on the labels alone"))
    previous, acc = train_teacher(config.student, dataset, config.epochs, lr=config.lr, batch_size=config.batch_size,
                                  seed=config.seed, augment=augment, emit=emit, should_stop=should_stop)
    gen0, accs = previous, [acc]
    for k in range(1, config.generations + 1):
        emit(events.phase("distilling", f"generation {k} of {config.generations} distils from generation {k - 1}"))
        result = distill(config.replace(baseline=False), [previous], dataset, emit, should_stop, world=world)
        accs.append(result.metrics["student_acc"])
        if k < config.generations:
            previous = result.student
    result.baseline = gen0
    result.config = config
    result.metrics.update(baseline_acc=accs[0], generations=accs)
    return result


def train_students(config, teachers, dataset, emit=_ignore, should_stop=never, teacher_keys=None, cache_dir=None,
                   world=distributed.SINGLE, resume=None):
    """The KD student and its baseline, however the config says they learn: from `teachers`, from
    an earlier generation of the student (born-again), from its own deepest layer, or beside a
    peer that learns from it in turn (mutual). With `resume`, every kind but born-again saves a point
    after each epoch and carries on from it (a teacher that learns, and CTKD's T, are in the point);
    born-again runs start over."""
    if config.deep_supervision:
        return distill(config, [], dataset, emit, should_stop, world=world, resume=resume)
    if config.teacher == MUTUAL:
        return distill(config, [mutual_peer(config, dataset)], dataset, emit, should_stop, world=world,
                       resume=resume)
    if config.teacher == SELF:
        return born_again(config, dataset, emit, should_stop, world)
    return distill(config, teachers, dataset, emit, should_stop, teacher_keys=teacher_keys, cache_dir=cache_dir,
                   world=world, resume=resume)


def mutual_peer(config, dataset):
    """Deep mutual learning's second network (Zhang et al. 2018): the student's architecture from
    other initial weights (seed + 1), untrained; distill() trains it beside the student."""
    torch.manual_seed(config.seed + 1)
    return channels_last(build(config.student).to(dataset.train_x.device))


def omitted_class_reports(result, dataset, omit_class):
    """{role: Hinton's counts for the held-out class} for the students a run has ({} without one)."""
    if omit_class is None:
        return {}
    return {role: fidelity.omitted_class(predict_logits(model, dataset.test_x), dataset.test_y, omit_class)
            for role in ("student", "baseline") if (model := getattr(result, role)) is not None}


def _run_metrics(result, dataset, device, world, started):
    """What a whole run adds to distill()'s metrics: where it ran, how long it took, Hinton's counts
    for a held-out class and, under torchrun, the learning rate and threads each rank used."""
    config, metrics = result.config, {}
    for role, report in omitted_class_reports(result, dataset, config.omit_class).items():
        metrics.update({f"{role}_{k}": v for k, v in report.items() if k not in ("omitted_class", "omitted_test_digits")})
        metrics.update(omitted_class=config.omit_class, omitted_test_digits=report["omitted_test_digits"])
    if world.distributed:
        metrics.update(lr=config.lr, threads_per_rank=world.threads)
    return dict(metrics, data=dataset.source, device=str(device), seconds=round(time.monotonic() - started, 2))


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


def run(config, emit=_ignore, should_stop=never, runs_dir=None, data_dir="data", out_dir=None,
        world=distributed.SINGLE, device=None, resume_path=None, resume_advice=None):
    """One whole run: data, teacher(s), KD + baseline, evaluation, and the students saved into
    `out_dir` (default runs_dir/latest). Trained teachers and the logit cache go under runs_dir.
    With `resume_path` the students' training saves a resume point there after each epoch, and
    resumes from the one it finds (kdapp.training.resume; single-process runs only); `resume_advice`,
    ResumePoint's (afresh, again), tells a user what to do when a point cannot be read or saved.

    Under torchrun, pass the World and device from kdapp.training.distributed.init: every rank trains, and
    only rank 0 computes the fidelity panel and saves (the others return without them)."""
    started = time.monotonic()
    stop_check = with_deadline(should_stop, config.time_limit_s)

    # One rank stopping on its own clock would leave the others waiting in an all-reduce:
    # a distributed run has no time limit (the app's runs are single-process).
    check = should_stop if world.distributed else stop_check
    if config.quantize != "none" and not (out_dir or runs_dir):
        raise ValueError("quantize needs a folder for the int8 files: give runs_dir or out_dir")
    emit(events.phase("loading data", "loading data"))
    device = device or pick_device(config.device)
    with distributed.main_first(world):  # one download, not one per rank
        dataset = data_lib.load(config.data, data_dir).to(device)
    emit(events.data(dataset.source, dataset.describe(), str(device)))
    if config.teacher in NO_PRETRAINED:  # no pretrained teacher to find
        found = [(None, None, None)]
    else:
        with distributed.main_first(world):  # rank 0 trains and saves a missing teacher; the others load it
            found = [_teacher(arch, dataset, config, runs_dir, emit, check) for arch in config.teachers]
    result = train_students(config, [f[0] for f in found], dataset, emit, check,
                            teacher_keys=[f[1] for f in found], world=world,
                            cache_dir=Path(runs_dir) / "cache" if runs_dir else None,
                            resume=resume_lib.ResumePoint(resume_path, *(resume_advice or ())) if resume_path and not world.distributed
                            else None)
    if not world.main:
        return result
    emit(events.phase("fidelity", "comparing the students with the teacher on the test digits"))
    teacher_key = None if targets.teacher_learns(config) else found[0][1]  # a teacher that learned is not the cached one
    result.fidelity = run_fidelity(result, teacher_key, dataset, Path(runs_dir) / "cache" if runs_dir else None)
    result.metrics.update(_run_metrics(result, dataset, device, world, started))
    result.paths["teacher"] = found[0][2]
    out_dir = out_dir or (Path(runs_dir) / "latest" if runs_dir else None)
    if out_dir:
        emit(events.phase("saving", "saving the students"))
        if config.teacher in NO_PRETRAINED and result.teacher is not None:  # born-again's last teacher, the peer
            result.paths["teacher"] = str(checkpoints.save(
                checkpoints.teacher_path(out_dir, config.teacher, dataset.source), result.teacher, config.student,
                config.to_dict(), dataset.source, {"test_acc": result.metrics["teacher_acc"]}))
        for kind, role in (("kd", "student"), ("baseline", "baseline")):
            model = getattr(result, role)
            if model is not None:
                path = checkpoints.student_path(out_dir, config.student, kind, dataset.source)
                result.paths[role] = str(checkpoints.save(path, model, config.student, config.to_dict(),
                                                          dataset.source, result.metrics))
    result.student = result.student.cpu().eval()
    if result.teacher is not None:
        result.teacher = result.teacher.cpu().eval()
    if result.baseline is not None:
        result.baseline = result.baseline.cpu().eval()
    if config.quantize != "none":  # int8 students beside the fp32 ones (kdapp.training.qat)
        from kdapp.training import qat  # lazy: it needs onnxruntime, which fp32 runs do not
        result.metrics["quantized"], int8_paths = qat.deploy(result, dataset, config.quantize, out_dir,
                                                             [f[0] for f in found], emit, check)
        result.paths.update(int8_paths)
    return result
