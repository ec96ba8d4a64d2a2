"""One run's hyperparameters: a dataclass, validated in one place."""
import math
import types
from dataclasses import asdict, dataclass, fields

from kdapp.data import DATA_SOURCES
from kdapp.models import ARCHITECTURES

DEVICES = ("auto", "cpu", "cuda", "mps")
FEATURE_LOSSES = ("none", "hint", "attention")


@dataclass
class RunConfig:
    teacher: str = "seed_teacher"        # the seed article's 1.2M-parameter CNN
    student: str = "seed_student"        # its 174k-parameter student
    temperature: float = 4.0             # the seed finds T = 3..5 best on MNIST
    alpha: float = 0.7                   # weight of the soft term, the seed's value
    epochs: int = 6                      # enough for >= 98% on the sample in well under a minute on 2 vCPUs
    lr: float = 2e-3                     # Adam, cosine-decayed to 0 over the run
    batch_size: int = 64                 # the seed's batch size
    train_fraction: float = 1.0          # KD helps most with little data; 0.1 is the seed's small-data test
    seed: int = 0                        # student init, batch order and subset; same for KD and baseline
    device: str = "auto"                 # auto = cuda, then mps, then cpu
    data: str = "auto"                   # auto = full MNIST if present or downloadable, else the sample
    teacher_epochs: int = 20             # only used when no checkpoint exists for the teacher
    augment: bool = False                # +-2 px shifts for the student; disables the teacher-logit cache
    extra_teachers: tuple = ()           # multi-teacher KD: soft targets average all teachers' probabilities
    alpha_end: float | None = None       # linear alpha schedule from alpha to alpha_end (None = constant)
    feature_loss: str = "none"           # none | hint (FitNets) | attention (Zagoruyko & Komodakis)
    feature_weight: float = 0.0          # weight of the feature loss, added to the KD loss
    clip_grad_norm: float | None = None  # max gradient norm for the student (None = no clipping)
    baseline: bool = True                # also train the same student on hard labels only: the honest control
    time_limit_s: float = 3600.0         # a run stops itself after this; the hosted app lowers it

    @property
    def teachers(self):
        return (self.teacher, *self.extra_teachers)

    def to_dict(self):
        d = asdict(self)
        d["extra_teachers"] = list(self.extra_teachers)
        return d

    @classmethod
    def from_dict(cls, values):
        """Build and validate from loose input (UI, JSON, CLI), converting types with clear errors."""
        known = {f.name: f for f in fields(cls)}
        unknown = set(values) - set(known)
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
        converted = {}
        for name, value in values.items():
            converted[name] = _convert(name, value, known[name].type)
        config = cls(**converted)
        config.validate()
        return config

    def validate(self):
        """Raise ValueError naming the first bad setting and its allowed range."""
        for name in (self.teacher, self.student, *self.extra_teachers):
            if name not in ARCHITECTURES:
                raise ValueError(f"unknown architecture {name!r}; valid names: {', '.join(ARCHITECTURES)}")
        _in_range("temperature", self.temperature, 0.0, 100.0, low_open=True)
        _in_range("alpha", self.alpha, 0.0, 1.0)
        if self.alpha_end is not None:
            _in_range("alpha_end", self.alpha_end, 0.0, 1.0)
        _in_range("epochs", self.epochs, 1, 100)
        _in_range("teacher_epochs", self.teacher_epochs, 1, 100)
        _in_range("lr", self.lr, 0.0, 1.0, low_open=True)
        _in_range("batch_size", self.batch_size, 8, 4096)
        _in_range("train_fraction", self.train_fraction, 0.0, 1.0, low_open=True)
        _in_range("seed", self.seed, 0, 2**31 - 1)
        _in_range("feature_weight", self.feature_weight, 0.0, 1000.0)
        if self.clip_grad_norm is not None:
            _in_range("clip_grad_norm", self.clip_grad_norm, 0.0, 1e6, low_open=True)
        _in_range("time_limit_s", self.time_limit_s, 1.0, 4 * 3600.0)
        _one_of("device", self.device, DEVICES)
        _one_of("data", self.data, DATA_SOURCES)
        _one_of("feature_loss", self.feature_loss, FEATURE_LOSSES)
        if self.feature_loss != "none" and self.feature_weight == 0:
            raise ValueError(f"feature_loss={self.feature_loss!r} needs a feature_weight > 0")
        return self


def _in_range(name, value, low, high, low_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value > high or value < low or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {value!r}")


def _one_of(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _convert(name, value, kind):
    """Loose UI/CLI values -> the field's type. Strings like '4' are fine; 'abc' is not."""
    optional = isinstance(kind, types.UnionType)
    if optional:
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


CONFIG_FIELDS = tuple(f.name for f in fields(RunConfig))
