"""Every setting of a run in one place: its default, its range and its choices.

`RunConfig`'s defaults *are* the default run: the app's sliders start there, `python -m kdapp
distill` with no options runs it, and the bench times it. `RANGES` and `CHOICES` bound every
setting; the sliders, argparse, URL parameters and `validate` all read them from here.
A RunConfig validates itself when it is built, so one that exists is valid: validate loose
input once where it enters (the UI, the CLI, the worker's stdin), then trust the type.
"""
import math
import types
from dataclasses import asdict, dataclass, fields, replace
from typing import NamedTuple

from kdapp.data import DATA_SOURCES
from kdapp.losses import LOGIT_LOSSES
from kdapp.models import ARCHITECTURES, cnn_names, has_feature_maps

DEVICES = ("auto", "cpu", "cuda", "mps")
SELF = "self"  # teacher=self: no pretrained teacher; the student teaches itself (SELF_DISTILL says how)
SELF_DISTILL = ("born-again", "deep")  # an earlier generation of the student, or its own deepest layer


def is_deep_supervision(config):
    """For a run's config as a dict (a stored run, a checkpoint's metadata): no teacher at all."""
    return config.get("teacher") == SELF and config.get("self_distill") == "deep"
FEATURE_LOSSES = ("none", "hint", "attention", "gram")
# int8 students (kdapp.training.qat.deploy): none, post-training quantization, or quantization-aware distillation
QUANTIZE = ("none", "ptq", "qat")


@dataclass(frozen=True)
class RunConfig:
    teacher: str = "seed_teacher"        # the seed article's 1.2M-parameter CNN
    student: str = "seed_student"        # its 174k-parameter student
    temperature: float = 4.0             # the seed finds T = 3..5 best on MNIST; so does our sweep
    alpha: float = 0.7                   # weight of the soft term, the seed's value
    epochs: int = 15                     # with lr 0.01 and shifts: 98.2% mean over seeds 0-2 in ~20 s (README)
    lr: float = 0.01                     # Adam, cosine-decayed to 0 over the run; tuned for batch 128, 15 epochs
    batch_size: int = 128                # 256 is no faster per digit on CPU and lost 0.1 pt at 15 epochs
    train_fraction: float = 1.0          # KD helps most with little data; 0.1 is the seed's small-data test
    omit_class: int | None = None        # Hinton's "missing 3": no digit of this class in either student's data
    seed: int = 0                        # student init, batch order and subset; same for KD and baseline
    device: str = "auto"                 # auto = cuda, then mps, then cpu
    data: str = "sample"                 # the bundled 10k sample: offline and the same everywhere
    teacher_epochs: int = 20             # only used when no checkpoint exists for the teacher
    self_distill: str = "born-again"     # teacher=self: born-again generations, or deep supervision
    generations: int = 1                 # teacher=self, born-again: generations after generation 0 (1 to 3)
    augment: bool = True                 # ±2 px shifts for both students; soft targets stay the cached ones
    consistent: bool = False             # consistent teaching: pen-augmented batches, the teacher online on them
    extra_teachers: tuple = ()           # multi-teacher KD: soft targets average all teachers' probabilities
    alpha_end: float | None = None       # linear alpha schedule from alpha to alpha_end (None = constant)
    loss: str = "kd"                     # the soft term: kd | dkd | dist | lskd (kdapp.losses.distillation_loss)
    dkd_alpha: float = 1.0               # DKD's weight on TCKD (target-class KL)
    dkd_beta: float = 8.0                # DKD's weight on NCKD (non-target KL), the paper's MNIST-size default
    dist_beta: float = 1.0               # DIST's weight on the inter-class (per-example) correlation
    dist_gamma: float = 1.0              # DIST's weight on the intra-class (per-class) correlation
    feature_loss: str = "none"           # none | hint (FitNets) | attention (Zagoruyko & Komodakis)
    feature_weight: float = 1.0          # weight of the feature loss when there is one; 1 suits the hint
    clip_grad_norm: float | None = None  # max gradient norm for the students (None = no clipping)
    baseline: bool = True                # also train the same student on hard labels only: the honest control
    time_limit_s: float = 3600.0         # a run stops itself after this; the hosted app lowers it
    quantize: str = "none"               # int8 students as well: ptq (calibrate) or qat (fine-tune first)

    def __post_init__(self):
        self.validate()

    @property
    def teachers(self):
        return (self.teacher, *self.extra_teachers)

    @property
    def deep_supervision(self):
        """No teacher at all: the student's deepest layer teaches its shallower ones."""
        return is_deep_supervision({"teacher": self.teacher, "self_distill": self.self_distill})

    def to_dict(self):
        d = asdict(self)
        d["extra_teachers"] = list(self.extra_teachers)
        return d

    def replace(self, **changes):
        return replace(self, **changes)

    @classmethod
    def from_dict(cls, values):
        """Build from loose input (UI, JSON, CLI, URL), converting types with clear errors."""
        known = {f.name: f for f in fields(cls)}
        unknown = set(values) - set(known)
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
        return cls(**{name: convert(name, value, known[name].type) for name, value in values.items()})

    def validate(self):
        """Raise ValueError naming the first bad setting and what is allowed."""
        if SELF in self.extra_teachers or (self.teacher == SELF and self.extra_teachers):
            raise ValueError("teacher 'self' (born-again) is the only teacher of its run")
        for name in self.teachers + (self.student,):
            if name != SELF:
                check_choice("architecture", name, ARCHITECTURES)
        for name, spec in RANGES.items():
            value = getattr(self, name)
            if value is not None or name not in OPTIONAL:
                spec.check(name, value)
        for name, choices in CHOICES.items():
            check_choice(name, getattr(self, name), choices)
        if self.feature_loss in ("attention", "gram") and \
                not all(has_feature_maps(self.student if n == SELF else n) for n in self.teachers + (self.student,)):
            what = "attention transfer" if self.feature_loss == "attention" else "Gram matching"
            raise ValueError(f"{what} needs conv feature maps: pick a CNN student and teacher "
                             f"({cnn_names()}), or use the hint loss")
        if self.self_distill == "deep" and self.teacher != SELF:
            raise ValueError("deep supervision (self_distill=deep) needs teacher=self: the student is its own teacher")
        if self.deep_supervision and self.feature_loss != "none":
            raise ValueError("deep supervision is its own feature loss (each stage hints at the deepest); "
                             "set the feature loss to none")
        if self.deep_supervision and self.consistent:
            raise ValueError("consistent teaching needs a teacher to ask; deep supervision has none")
        if self.quantize == "qat" and self.deep_supervision:
            raise ValueError("quantization-aware distillation needs a teacher; deep supervision has none: "
                             "use quantize=ptq")
        if (self.feature_loss != "none" or self.deep_supervision) and self.feature_weight == 0:
            raise ValueError(f"the {'deep supervision' if self.deep_supervision else self.feature_loss} "
                             "feature loss needs a feature weight above 0")
        return self


class Range(NamedTuple):
    """Allowed values of a numeric setting, and the step a slider moves by."""
    low: float
    high: float
    step: float
    low_open: bool = False  # low itself is not allowed (a temperature or learning rate of 0)

    def check(self, name, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        if value > self.high or value < self.low or (self.low_open and value == self.low):
            low = "above" if self.low_open else "from"
            raise ValueError(f"{name} must be {low} {self.low:g} to {self.high:g}, got {value!r}")

    def contains(self, value):
        try:
            self.check("value", value)
        except ValueError:
            return False
        return True


RANGES = {
    "temperature": Range(0.5, 20.0, 0.5),    # below 1 sharpens; Hinton's MNIST run used 20
    "alpha": Range(0.0, 1.0, 0.05),
    "alpha_end": Range(0.0, 1.0, 0.05),
    "epochs": Range(1, 100, 1),
    "teacher_epochs": Range(1, 100, 1),
    "generations": Range(1, 3, 1),
    "lr": Range(0.0001, 0.02, 0.0001),
    "batch_size": Range(16, 1024, 16),
    "train_fraction": Range(0.01, 1.0, 0.01),
    "omit_class": Range(0, 9, 1),
    "seed": Range(0, 2**31 - 1, 1),
    "feature_weight": Range(0.0, 1000.0, 0.5),
    "dkd_alpha": Range(0.0, 20.0, 0.5),
    "dkd_beta": Range(0.0, 20.0, 0.5),
    "dist_beta": Range(0.0, 20.0, 0.5),
    "dist_gamma": Range(0.0, 20.0, 0.5),
    "clip_grad_norm": Range(0.0, 1e6, 0.1, low_open=True),
    "time_limit_s": Range(1.0, 4 * 3600.0, 1.0),
}
OPTIONAL = ("alpha_end", "clip_grad_norm", "omit_class")  # None means off
CHOICES = {"device": DEVICES, "data": DATA_SOURCES, "feature_loss": FEATURE_LOSSES, "loss": LOGIT_LOSSES,
           "self_distill": SELF_DISTILL, "quantize": QUANTIZE}

# A shared 2-vCPU box: one visitor's run must not hold it for long. Caps refuse what a visitor
# asks for beyond them; the imposed settings are not the visitor's to choose.
HOSTED_CAPS = {"epochs": 40}
HOSTED_IMPOSED = {"teacher_epochs": 10, "time_limit_s": 600.0}


def check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def convert(name, value, kind=None):
    """Loose UI/CLI/URL values -> the field's type. Strings like '4' are fine; 'abc' is not."""
    kind = kind or FIELD_TYPES[name]
    if isinstance(kind, types.UnionType):  # float | None
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            return None
        kind = next(k for k in kind.__args__ if k is not type(None))
    try:
        if kind is int:
            number = float(value)
            if not math.isfinite(number) or number != int(number):
                raise ValueError
            return int(number)
        if kind is float:
            return float(value)
        if kind is bool:
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if kind is tuple:
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return tuple(str(v) for v in value)
        if not isinstance(value, str):
            raise TypeError
        return value
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} must be {'an integer' if kind is int else 'a ' + kind.__name__}, "
                         f"got {value!r}") from None


FIELD_TYPES = {f.name: f.type for f in fields(RunConfig)}
DEFAULTS = RunConfig()
