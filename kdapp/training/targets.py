"""Where the KD student's targets come from, chosen once before distill()'s loop: the teachers'
soft targets cached over the training set, the teachers run online on every batch (consistent
teaching, feature losses, feature regularisers), a teacher that learns beside the student (deep
mutual learning, progressive distillation's joint epochs), or, with no teacher (deep supervision),
the student's own deepest layer. Also the twin students themselves: the KD student with its
feature adapter or heads, and the baseline with the same initial weights."""
import copy
from pathlib import Path

import torch

from kdapp import checkpoints, data as data_lib, events
from kdapp.config import MUTUAL, NO_PRETRAINED
from kdapp.losses import LOGIT_LOSSES, distillation_loss, self_distillation_loss, teacher_log_probs
from kdapp.models import build
from kdapp.training import distributed
from kdapp.training.features import DeepSupervision, FeatureDistiller
from kdapp.training.teachers import (cache_path, cached_logits, channels_last, evaluate, never, shift_readings,
                                     teacher_dirs, teacher_key)
from kdapp.training.optim import AdamCosine
from kdapp.training.techniques import mutual_loss


class KDStudent(torch.nn.Module):
    """The KD student and its feature adapter or deep-supervision heads (if any) as one module, so
    that DDP averages the gradients of all: forward(x, teacher features) -> (logits, feature loss or
    None, the deep-supervision heads' logits or None, the feature regularisers' terms by name)."""

    def __init__(self, student, distiller=None, deep=None):
        super().__init__()
        self.student, self.distiller, self.deep = student, distiller, deep

    def forward(self, x, teacher_features=None):
        if self.deep is not None:
            logits, stages = self.student.forward_stages(x)
            aux_logits, hint = self.deep(stages)
            return logits, hint, aux_logits, {}
        if self.distiller is None:
            return self.student(x), None, None, {}
        logits, features = self.student.forward_features(x)
        feature_loss, terms = self.distiller.forward_terms(features, teacher_features)
        return logits, feature_loss, None, terms


def teacher_learns(config):
    return config.teacher == MUTUAL or config.joint_epochs > 0


def regularizers(config):
    """The feature regularisers a run adds, by name -> their weights' settings."""
    return {name: weight for name, weight in (("collapse", "collapse_weight"), ("adversarial", "adversarial_weight"))
            if getattr(config, weight)}


class TeacherLearning:
    """The teacher learning beside the student, from epoch `start` on: from scratch with its own
    initial weights (teacher=mutual, deep mutual learning), or the pretrained teacher fine-tuned at a
    tenth of the learning rate in the joint epochs after the fixed-teacher ones (progressive
    distillation). Its loss is techniques.mutual_loss against the student's logits of the same
    batch; a run whose teacher stays fixed never steps it."""

    def __init__(self, config, teachers, steps_per_epoch, epochs):
        self.start = 0 if config.teacher == MUTUAL else (config.epochs if config.joint_epochs else epochs)
        self.teacher, self.pending = (teachers[0] if teachers else None), None
        if self.start < epochs:
            lr = config.lr if config.teacher == MUTUAL else config.lr / 10
            self.optimizer = AdamCosine(self.teacher.parameters(), lr, (epochs - self.start) * steps_per_epoch,
                                        config.clip_grad_norm)

    def learns(self, epoch):
        return epoch >= self.start

    def targets(self, x, student_logits, y, temperature, alpha):
        """The teacher's logits on x (for the student's targets, detached), its loss kept for step()."""
        self.teacher.train()
        logits = self.teacher(x)
        self.pending = mutual_loss(logits, student_logits, y, float(temperature), alpha)
        return logits.detach()

    def step(self):
        if self.pending is not None:
            self.optimizer.step(self.pending)
            self.pending = None

    def accuracy(self, epoch, dataset, last):
        """The teacher's test accuracy after an epoch in which it learned, else `last`."""
        return evaluate(self.teacher, dataset.test_x, dataset.test_y) if self.learns(epoch) else last


def online_teachers(config):
    """The teachers must answer each batch anew: consistent teaching asks them about the augmented
    digits, and a feature loss needs their features. Shifts (config.augment) keep the cache: a digit
    moved by 2 px gets the teacher's answer for the unmoved digit, which the move barely changes."""
    return config.consistent or config.feature_loss != "none"


def cached_teacher_logits(config, teachers, teacher_keys, dataset, subset, emit, should_stop, cache_dir):
    """The teachers' logits over the training subset, computed once (None when the teachers run
    online, learn from the start, or there are none), in the subset's order so a batch's indices
    find them. Logits, not probabilities: each batch's soft targets are taken at that step's T.

    With config.teacher_shifts = k, each teacher reads every digit at each of the (2k+1)² offsets
    of data.shift_offsets(k): one logit tensor per (teacher, offset), and teacher_log_probs
    averages their probabilities, as it does a multi-teacher run's."""
    if not teachers or online_teachers(config) or config.teacher == MUTUAL:
        return None
    offsets = data_lib.shift_offsets(config.teacher_shifts)
    readings = f", each read at {len(offsets)} shifts" if len(offsets) > 1 else ""
    emit(events.phase("teacher logits", f"computing the teacher's soft targets over {len(dataset.train_y):,} "
                                        f"training digits{readings}, once"))
    keys = teacher_keys or [None] * len(teachers)
    return [cached_logits(shifted_key(k, dy, dx), t, dataset.train_x, should_stop, cache_dir,
                          transform=data_lib.shifter(dy, dx))[subset]
            for k, t in zip(keys, teachers) for dy, dx in offsets]


def shift_ensemble_probs(teacher, x, k):
    """A shift ensemble's answers on x: the teacher's probabilities (T=1) averaged over its readings of
    each digit moved by every offset of data.shift_offsets(k)."""
    readings = shift_readings(teacher, x, k)
    return sum(logits.softmax(1) for logits in readings) / len(readings)


def ensemble_test_readings(config, teachers, teacher_keys, test_x, cache_dir=None, should_stop=never):
    """The readings the soft targets average, taken on the test digits, when there are several (several
    teachers, or a teacher read at several shifts): one logit tensor per (teacher, offset), each cached as
    the training ones are. None when the targets come from one reading, from no pretrained teacher, or
    from a teacher that learns during the run."""
    offsets = data_lib.shift_offsets(config.teacher_shifts)
    if not teachers or None in teachers or len(teachers) * len(offsets) < 2 or teacher_learns(config):
        return None
    keys = teacher_keys or [None] * len(teachers)
    return [cached_logits(shifted_key(None if k is None else (*k, "test"), dy, dx), t, test_x, should_stop,
                          cache_dir, transform=data_lib.shifter(dy, dx))
            for k, t in zip(keys, teachers) for dy, dx in offsets]


def ensemble_test_log_probs(config, teachers, teacher_keys, test_x, cache_dir=None, should_stop=never):
    """Where the soft targets come from, read on the test digits, when that is an ensemble
    (ensemble_test_readings): log(mean_j softmax(z_j/T)) at the run's T (its first T under a schedule),
    the logits standardised first for the losses that ask for it, exactly as the training targets
    average them (kdapp.losses.teacher_log_probs); its argmax is the answer the soft targets rank
    first. None when the targets come from one reading."""
    readings = ensemble_test_readings(config, teachers, teacher_keys, test_x, cache_dir, should_stop)
    return None if readings is None else teacher_log_probs(readings, config.temperature, config.loss)


def work_ahead(config, runs_dir, device="cpu"):
    """What a run must do before its students learn, found on disk without loading a model: the teachers
    it must train first, as (architecture, copy), and the readings it must compute, as (architecture,
    "train" or "test"), those already under runs_dir/cache left out. `device` is the tensors' device
    (cpu, cuda:0), which the cache's keys name. For the queue's time estimates (kdapp.lab.eta)."""
    if config.teacher in NO_PRETRAINED:
        return [], []
    offsets = data_lib.shift_offsets(config.teacher_shifts)
    cached_targets = not (online_teachers(config) or teacher_learns(config))  # the training readings are cached
    ensemble = len(config.teacher_copies) * len(offsets) > 1 and not teacher_learns(config)  # read on the test digits
    to_train, readings = [], []
    for arch, n in config.teacher_copies:
        path = checkpoints.find_teacher(arch, config.data, teacher_dirs(runs_dir), n) if runs_dir else None
        if path is None:
            to_train.append((arch, n))
        key = None if path is None else teacher_key(path, config.data, device)
        for dy, dx in offsets:
            plain = (dy, dx) == (0, 0)  # each teacher's own test accuracy reads the test digits
            for split in ("train",) * cached_targets + ("test",) * (ensemble or plain):
                split_key = key if split == "train" or key is None else (*key, "test")
                split_key = shifted_key(split_key, dy, dx)
                if split_key is None or not cache_path(Path(runs_dir) / "cache", split_key).is_file():
                    readings.append((arch, split))
    return to_train, readings


def shifted_key(key, dy, dx):
    """A teacher's logit-cache key for its reading of the digits moved by (dy, dx)."""
    return key if key is None or (dy, dx) == (0, 0) else (*key, "shift", dy, dx)


def twin_students(config, teachers, train_x, world):
    """The KD student (with its feature adapter or deep-supervision heads, if any) and the baseline:
    the same architecture and the same initial weights. Returns (student, baseline or None, the KD
    model to train, the baseline model to train), the last two DDP-wrapped under torchrun."""
    torch.manual_seed(config.seed)
    student = channels_last(build(config.student).to(train_x.device))
    baseline = copy.deepcopy(student) if config.baseline else None
    distiller = deep = None
    if config.feature_loss != "none":
        distiller = FeatureDistiller.for_models(config.feature_loss, student, teachers[0], train_x[:2],
                                                collapse=config.collapse_weight > 0,
                                                adversarial=config.adversarial_weight > 0)
        distiller = distiller.to(train_x.device).train()
    if config.deep_supervision:
        deep = DeepSupervision.for_model(student, train_x[:2]).to(train_x.device).train()
    kd_model = distributed.wrap(KDStudent(student, distiller, deep), world)
    base_model = distributed.wrap(baseline, world) if baseline is not None else None
    return student, baseline, kd_model, base_model


def target_source(config, teachers, kd_model, teacher_logits, learner):
    """epoch -> the KD student's loss on a batch, (x, y, idx, alpha, T) -> (KDParts, feature loss or
    None), with its targets from the cached logits (teacher_logits[k][idx]), from the teachers on
    this very batch, from a teacher that learns too (learner: mutual learning, joint epochs), or
    (deep supervision) from its own final layer to its shallower heads. T is the step's
    temperature (kdapp.training.techniques.TemperatureSchedule)."""
    loss = config.loss
    settings = {name: getattr(config, name) for name in LOGIT_LOSSES[loss].settings}
    weights = {name: getattr(config, weight) for name, weight in regularizers(config).items()}

    def self_taught(x, y, idx, alpha, T):
        logits, hint, aux_logits, _ = kd_model(x)
        return self_distillation_loss(logits, aux_logits, y, T, alpha, loss, **settings), hint

    def cached(x, y, idx, alpha, T):
        logits, feature_loss, _, _ = kd_model(x)
        targets = teacher_log_probs([t[idx] for t in teacher_logits], T, loss)
        return distillation_loss(logits, targets, y, T, alpha, loss, **settings), feature_loss

    def online(x, y, idx, alpha, T):
        with torch.no_grad():
            outs = [t.forward_features(x) for t in teachers]
        targets = teacher_log_probs([o[0] for o in outs], T, loss)
        logits, feature_loss, _, terms = kd_model(x, [o[1] for o in outs])  # several teachers: averaged
        return with_terms(distillation_loss(logits, targets, y, T, alpha, loss, **settings), terms, weights), \
            feature_loss

    def mutual(x, y, idx, alpha, T):
        logits, feature_loss, _, _ = kd_model(x)
        targets = teacher_log_probs(learner.targets(x, logits.detach(), y, T, alpha), T, loss)
        return distillation_loss(logits, targets, y, T, alpha, loss, **settings), feature_loss

    fixed = self_taught if config.deep_supervision else (cached if teacher_logits is not None else online)
    return lambda epoch: mutual if learner.learns(epoch) else fixed


def with_terms(parts, terms, weights):
    """KDParts with the feature regularisers added: total + sum_k weight_k term_k, and each term
    reported among the parts."""
    if not terms:
        return parts
    total = parts.total + sum(weights[name] * value for name, value in terms.items())
    return parts._replace(total=total, parts={**(parts.parts or {}), **terms})
