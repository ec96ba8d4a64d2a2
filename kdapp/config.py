"""Every setting of a run in one place: its default, its range and its choices.

`RunConfig`'s defaults *are* the default run: the app's sliders start there, `python -m kdapp
distill` with no options runs it, and the bench times it. Each field is one line of `setting(...)`:
its default, help, Range or choices. `RANGES`, `CHOICES` and `HELP` are read from those fields, and
the CLI's options (kdapp.cli), the sliders, URL parameters and `validate` all read them.
A RunConfig validates itself when it is built, so one that exists is valid: validate loose
input once where it enters (the UI, the CLI, the worker's stdin), then trust the type.
"""
import math
import types
from dataclasses import asdict, dataclass, field, fields, replace
from typing import NamedTuple

from kdapp.data import DATA_SOURCES
from kdapp.losses import FEATURE_LOSSES, LOGIT_LOSSES
from kdapp.models import ARCHITECTURES, cnn_names, has_feature_maps

DEVICES = ("auto", "cpu", "cuda", "mps")
SELF = "self"  # teacher=self: no pretrained teacher; the student teaches itself (SELF_DISTILL says how)
SELF_DISTILL = ("born-again", "deep")  # an earlier generation of the student, or its own deepest layer
MUTUAL = "mutual"  # teacher=mutual: no pretrained teacher; a peer learns beside the student (deep mutual learning)
NO_PRETRAINED = (SELF, MUTUAL)
TEMPERATURE_SCHEDULES = ("constant", "linear", "cosine", "ctkd")  # kdapp.training.techniques
FEATURE_CHOICES = ("none", *FEATURE_LOSSES)
# int8 students (kdapp.training.qat.deploy): none, post-training quantization, or quantization-aware distillation
QUANTIZE = ("none", "ptq", "qat")


def is_deep_supervision(config):
    """For a run's config as a dict (a stored run, a checkpoint's metadata): no teacher at all."""
    return config.get("teacher") == SELF and config.get("self_distill") == "deep"


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
            raise ValueError(f"{name} must be {self.describe()}, got {value!r}")

    def contains(self, value):
        try:
            self.check("value", value)
        except ValueError:
            return False
        return True

    def describe(self):
        number = lambda x: f"{x:,}" if x == int(x) and abs(x) >= 1e5 else f"{x:g}"
        return f"{'above' if self.low_open else 'from'} {number(self.low)} to {number(self.high)}"


def setting(default, help, range=None, choices=None, flag=None):
    """A RunConfig field with what the CLI, the sliders and `validate` need: its help line, its
    Range or its choices, and (optionally) the CLI flag when it is not --<name>."""
    return field(default=default, metadata={"help": help, "range": range, "choices": choices, "flag": flag})


@dataclass(frozen=True)
class RunConfig:
    """One run's settings. The comment on each field says why it has its default; the help says what it does."""
    teacher: str = setting("seed_teacher",  # the seed article's 1.2M-parameter CNN
                           f"architecture ({', '.join(ARCHITECTURES)}), or {SELF}: no pretrained teacher "
                           f"(see --self-distill), or {MUTUAL}: deep mutual learning, a peer of the student's "
                           "architecture learns beside it from scratch (Zhang et al. 2018)")
    student: str = setting("seed_student", f"architecture ({', '.join(ARCHITECTURES)})")  # its 174k-param student
    temperature: float = setting(4.0, "softmax temperature T of the soft targets",  # the seed finds 3..5 best
                                 Range(0.5, 20.0, 0.5), flag="-T")  # below 1 sharpens; Hinton's MNIST run used 20
    alpha: float = setting(0.7, "weight of the soft (KD) term; 1 - alpha weighs the labels' CE",
                           Range(0.0, 1.0, 0.05))  # the seed's value
    epochs: int = setting(40, "epochs of distillation",  # on 10% of the digits: as quick as 4 full epochs (~11 s)
                          Range(1, 100, 1))
    lr: float = setting(0.01, "Adam's learning rate, cosine-decayed to 0 over the run",  # tuned: batch 128, 15 epochs
                        Range(0.0001, 0.02, 0.0001))
    batch_size: int = setting(128, "digits per step", Range(16, 1024, 16))  # 256: no faster per digit, -0.1 pt
    # Scarce labels are where KD shows: at 0.1 the gain clears its 95% interval on seeds 0-2
    # (results/default-run.json); on all the digits it is +0.6 ± 0.9, inside the noise.
    train_fraction: float = setting(0.1, "share of the training digits the students see",
                                    Range(0.01, 1.0, 0.01))
    omit_class: int | None = setting(None, "Hinton's missing class: no digit of it in the students' data; the JSON "
                                     "reports their accuracy on it before and after a bias correction",
                                     Range(0, 9, 1))
    seed: int = setting(0, "student initialisation, batch order and subset; the same for KD and baseline",
                        Range(0, 2**31 - 1, 1))
    device: str = setting("auto", "auto = cuda, then mps, then cpu", choices=DEVICES)
    data: str = setting("sample", "sample: the bundled 10k digits (offline); mnist: full MNIST after "
                        "`python -m kdapp data import`; auto: mnist if present", choices=DATA_SOURCES)
    teacher_epochs: int = setting(20, "epochs for a teacher that has no checkpoint yet", Range(1, 100, 1))
    self_distill: str = setting("born-again", f"with teacher {SELF}: born-again (generation k teaches k+1) or deep "
                                "(heads on shallower layers learn from the deepest)", choices=SELF_DISTILL)
    generations: int = setting(1, f"with teacher {SELF}, born-again: generations after generation 0",
                               Range(1, 3, 1))
    augment: bool = setting(False, "±2 px shifts of both students' batches; the soft targets stay the cached "
                            "ones")  # off by default: shifts help the baseline as much as KD, and hide the gain
    consistent: bool = setting(False, "consistent teaching: rotate, scale, slant, shift and re-stroke each batch, "
                               "the teacher online on exactly those images (Beyer et al. 2022)")
    extra_teachers: tuple = setting((), "more teachers, comma-separated: the soft targets average all "
                                    "teachers' probabilities (multi-teacher KD); an architecture named again is "
                                    "another network of it, trained separately")
    # Hinton et al.'s cumbersome model may be an ensemble: radius 2 took the distilled mlp_800 from 100.7 to 94.7
    # errors on full MNIST over 3 seeds (docs/development.md); 0: the teacher reads each digit once, as it is.
    teacher_shifts: int = setting(0, "a shift ensemble as the teacher: the soft targets average its probabilities "
                                  "over each training digit moved by every offset in -k..k px, (2k+1)² readings; "
                                  "the students still see the digits unmoved (unless --augment)", Range(0, 2, 1))
    alpha_end: float | None = setting(None, "a linear alpha schedule from alpha to this (off when not given)",
                                      Range(0.0, 1.0, 0.05))
    temperature_schedule: str = setting("constant", "T over the run: constant; linear or cosine from T to "
                                        "--temperature-end; ctkd: learned against the student through a gradient "
                                        "reversal layer (Li et al. 2023), within [T, T end] (or 0.5..20 without an "
                                        "end)", choices=TEMPERATURE_SCHEDULES)  # the KD article §6.2: high, then low
    temperature_end: float | None = setting(None, "T at the end of a linear or cosine schedule; with ctkd, the "
                                            "other bound of T's range", Range(0.5, 20.0, 0.5))
    joint_epochs: int = setting(0, "progressive distillation: after the fixed-teacher epochs, this many epochs in "
                                "which the teacher learns too, from the labels and the student's soft targets",
                                Range(0, 50, 1))  # the KD article §6.1; 0: the teacher stays fixed
    loss: str = setting("kd", "the soft term: " + "; ".join(f"{k}: {v.label}" for k, v in LOGIT_LOSSES.items()),
                        choices=tuple(LOGIT_LOSSES))
    dkd_alpha: float = setting(1.0, "DKD's weight on TCKD (target-class KL)", Range(0.0, 20.0, 0.5))
    dkd_beta: float = setting(8.0, "DKD's weight on NCKD (other classes)",  # the paper's MNIST-size default
                              Range(0.0, 20.0, 0.5))
    dist_beta: float = setting(1.0, "DIST's weight on the inter-class (per-example) correlation",
                               Range(0.0, 20.0, 0.5))
    dist_gamma: float = setting(1.0, "DIST's weight on the intra-class (per-class) correlation",
                                Range(0.0, 20.0, 0.5))
    feature_loss: str = setting("none", "a feature loss beside the soft term: "
                                + "; ".join(f"{k}: {v.label}" for k, v in FEATURE_LOSSES.items()),
                                choices=FEATURE_CHOICES)
    feature_weight: float = setting(1.0, "weight of the feature loss (used only with one)",  # 1 suits the hint
                                    Range(0.0, 1000.0, 0.5))
    collapse_weight: float = setting(0.0, "λ of λ‖Cov(F_S) − I‖²_F on the student's adapted features, against "
                                     "feature collapse (needs a feature loss)",  # the feature article §5.3
                                     Range(0.0, 10.0, 0.001))  # a sum over C² entries: keep it small
    adversarial_weight: float = setting(0.0, "μ of an adversarial feature loss: a discriminator tells the teacher's "
                                        "features from the student's, which learns to fool it through a gradient "
                                        "reversal layer (needs the hint or gram loss)",  # the feature article §5.3
                                        Range(0.0, 10.0, 0.05))
    clip_grad_norm: float | None = setting(None, "max gradient norm for the students (off when not given)",
                                           Range(0.0, 1e6, 0.1, low_open=True))
    baseline: bool = setting(True, "also train the same student on the labels alone: the honest control")
    time_limit_s: float = setting(3600.0, "a run stops itself after this many seconds",  # the hosted app lowers it
                                  Range(1.0, 4 * 3600.0, 1.0))
    quantize: str = setting("none", "int8 students too (docs/deployment.md): ptq calibrates the finished students; "
                            "qat fine-tunes them through int8 rounding first, the KD student with its teacher",
                            choices=QUANTIZE)  # off by default: it needs onnxruntime and costs an epoch

    def __post_init__(self):
        self.validate()

    @property
    def teachers(self):
        return (self.teacher, *self.extra_teachers)

    @property
    def teacher_copies(self):
        """(architecture, copy) of each teacher: an architecture named again is its copy 2, 3, ..., a network
        trained separately (kdapp.checkpoints.teacher_path), so that two mlp_1200s make an ensemble."""
        return tuple((name, self.teachers[:i].count(name) + 1) for i, name in enumerate(self.teachers))

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
        if set(NO_PRETRAINED) & set(self.extra_teachers) or (self.teacher in NO_PRETRAINED and self.extra_teachers):
            raise ValueError(f"teacher '{self.teacher}' (no pretrained teacher) is the only teacher of its run")
        check_choice("teacher", self.teacher, (*ARCHITECTURES, *NO_PRETRAINED))
        for name in self.extra_teachers:
            check_choice("extra teacher", name, ARCHITECTURES)
        check_choice("student", self.student, ARCHITECTURES)
        for name, spec in RANGES.items():
            value = getattr(self, name)
            if value is not None or name not in OPTIONAL:
                spec.check(name, value)
        for name, choices in CHOICES.items():
            check_choice(name, getattr(self, name), choices)
        feature = FEATURE_LOSSES.get(self.feature_loss)
        if feature and feature.needs_maps and \
                not all(has_feature_maps(self.student if n == SELF else n) for n in self.teachers + (self.student,)):
            raise ValueError(f"{feature.what} needs conv feature maps: pick a CNN student and teacher "
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
        self._validate_techniques()
        return self

    def _validate_techniques(self):
        """The combinations the techniques of kdapp.training.techniques need."""
        if self.temperature_schedule in ("linear", "cosine") and self.temperature_end is None:
            raise ValueError(f"a {self.temperature_schedule} temperature schedule needs temperature_end")
        if self.joint_epochs and (self.teacher in NO_PRETRAINED or self.extra_teachers or self.feature_loss != "none"):
            raise ValueError("joint epochs fine-tune one pretrained teacher with logits alone: pick an "
                             "architecture as the only teacher and no feature loss")
        if self.teacher == MUTUAL and self.feature_loss != "none":
            raise ValueError("mutual learning here is logits only: set the feature loss to none")
        if self.teacher_shifts and (self.teacher in NO_PRETRAINED or self.consistent or self.joint_epochs
                                    or self.feature_loss != "none"):
            raise ValueError("a shift ensemble averages a fixed, pretrained teacher's readings computed once: pick "
                             "an architecture as the teacher, and no consistent teaching, joint epochs or feature loss")
        if (self.collapse_weight or self.adversarial_weight) and self.feature_loss == "none":
            raise ValueError("the collapse and adversarial terms act on the student's features: pick a feature loss")
        if self.adversarial_weight and not FEATURE_LOSSES[self.feature_loss].adapter:
            raise ValueError("the adversarial term compares adapted features: use the hint or gram feature loss")


_META = {f.name: f.metadata for f in fields(RunConfig)}
RANGES = {name: m["range"] for name, m in _META.items() if m["range"]}
CHOICES = {name: m["choices"] for name, m in _META.items() if m["choices"]}
OPTIONAL = tuple(f.name for f in fields(RunConfig) if f.default is None)  # None means off
HELP = {name: m["help"] for name, m in _META.items()}
FLAGS = {name: m["flag"] for name, m in _META.items() if m["flag"]}

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
