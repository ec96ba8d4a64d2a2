"""distill(): one KD student (and its hard-label twin) trained from its teachers, the loop that
every kind of run but born-again's generation 0 goes through. kdapp.training.train calls it; the
targets it learns from come from kdapp.training.targets, the losses from kdapp.losses."""
import copy
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from kdapp import data as data_lib, events
from kdapp.config import RunConfig
from kdapp.losses import LOGIT_LOSSES
from kdapp.training import distributed, resume as resume_lib, targets
from kdapp.training.optim import AdamCosine
from kdapp.training.progress import Clock, Meter, log_points
from kdapp.training.teachers import Cancelled, accuracy, cached_logits, evaluate, never, predict_logits
from kdapp.training.techniques import TemperatureSchedule


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


def evaluate_sharded(model, x, y, world):
    """Test accuracy with each rank counting its slice of the split (the whole split in one process)."""
    if not world.distributed:
        return evaluate(model, x, y)
    mine = distributed.shard(torch.arange(len(y), device=y.device), world)
    correct = (predict_logits(model, x[mine]).argmax(1) == y[mine]).sum().float().reshape(1)
    return distributed.sum_over_ranks(correct, world).item() / len(y)


def distill(config, teachers, dataset, emit=lambda event: None, should_stop=never, teacher_keys=None, cache_dir=None,
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
        self.train_x, self.train_y, subset = training_subset(config, dataset, self.generator)
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
        self.meter = Meter(["loss", "soft", "hard", "feature", "baseline", *self.part_names], device)
        self.clock, self.log_now = Clock(self.total_steps), log_points(self.steps_per_epoch, 25)
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


def training_subset(config, dataset, generator):
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
