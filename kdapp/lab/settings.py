"""Settings as visitors and links give them: the controls' choices and limits, loose settings
checked into a RunConfig under the hosted caps, and a page's permalink read and written.

`LabSettings` is a part of kdapp.lab.facade.Lab, kept here because it is one idea: it reads the
Lab's `caps`, `imposed`, `data_dir` and `runs_dir`.
"""
import urllib.parse

from kdapp import checkpoints, data as data_lib
from kdapp.config import CHOICES, DEFAULTS, MUTUAL, NO_PRETRAINED, RANGES, SELF, RunConfig, convert
from kdapp.models import ARCHITECTURES, count_parameters
from kdapp.training import teachers, train

# URL parameter -> setting, for short permalinks (/?T=8&fraction=0.1); full names work too.
URL_ALIASES = {"T": "temperature", "fraction": "train_fraction", "batch": "batch_size"}
# The techniques' and int8 settings: in a link only when not their default, so older links read the same.
TECHNIQUE_SETTINGS = ("temperature_schedule", "temperature_end", "joint_epochs", "collapse_weight",
                      "adversarial_weight", "teacher_shifts", "quantize")
URL_SETTINGS = ("teacher", "student", "temperature", "alpha", "epochs", "lr", "batch_size", "train_fraction",
                "loss", "feature_loss", "feature_weight", "alpha_end", "clip_grad_norm", "data", "seed",
                "augment", "consistent", "omit_class", "self_distill", "generations", *TECHNIQUE_SETTINGS)


class LabSettings:
    # ---- choices and limits for the controls ----
    def teacher_choices(self):
        choices = []
        for name in ARCHITECTURES:
            ready = checkpoints.find_teacher(name, "sample", teachers.teacher_dirs(self.runs_dir)) is not None
            note = "pretrained" if ready else "trained first"
            choices.append((f"{name} · {count_parameters(name):,} params · {note}", name))
        choices.append(("self · no pretrained teacher: the student teaches itself (born-again or deep supervision)",
                        SELF))
        choices.append(("mutual · no pretrained teacher: a peer of the student learns beside it (deep mutual learning)",
                        MUTUAL))
        return choices

    def second_teacher_choices(self, first=DEFAULTS.teacher):
        """The pretrained architectures a second teacher can be. The first teacher's own architecture is a
        second network of it (copy 2, trained separately), so its note says whether that one is saved."""
        choices = []
        for label, name in self.teacher_choices():
            if name in NO_PRETRAINED:
                continue
            if name == first:
                ready = checkpoints.find_teacher(name, "sample", teachers.teacher_dirs(self.runs_dir), 2) is not None
                label = (f"{name} · {count_parameters(name):,} params · a second network, "
                         f"{'pretrained' if ready else 'trained first'}")
            choices.append((label, name))
        return choices

    @staticmethod
    def student_choices():
        return [(f"{name} · {count_parameters(name):,} params", name) for name in ARCHITECTURES]

    def data_choices(self):
        choices = [("bundled MNIST sample · 8,000 train / 2,000 test", "sample")]
        if data_lib.mnist_present(self.data_dir):
            choices.append(("full MNIST · 60,000 train / 10,000 test", "mnist"))
        return choices

    @staticmethod
    def device_choices():
        return train.available_devices()

    def limit(self, name):
        """The highest value a visitor may pick for a setting: its range, or the hosted cap."""
        return min(RANGES[name].high, self.caps.get(name, RANGES[name].high))

    # ---- settings from visitors and links ----
    def config(self, settings):
        """Loose settings from a visitor -> RunConfig, with the hosted caps and imposed settings.
        Raises ValueError with a sentence for the visitor."""
        config = RunConfig.from_dict(dict(settings, **self.imposed))
        for name, cap in self.caps.items():
            if getattr(config, name) > cap:
                raise ValueError(f"{name} is capped at {cap} on this shared demo")
        return config

    def settings_from_url(self, params):
        """URL query parameters -> (settings that are valid, names of those ignored). Each value
        is checked alone against the config's ranges and choices; `run` and `lang` (the page's
        language) are handled by the caller."""
        settings, ignored = {}, []
        for key, raw in params.items():
            if key in ("run", "lang"):
                continue
            name = URL_ALIASES.get(key, key)
            try:
                if name not in URL_SETTINGS:
                    raise ValueError
                value = convert(name, raw)
                if name in ("teacher", "student"):
                    if value not in ARCHITECTURES and not (name == "teacher" and value in NO_PRETRAINED):
                        raise ValueError
                elif name in CHOICES:
                    offered = [v for _, v in self.data_choices()] if name == "data" else CHOICES[name]
                    if value not in offered:
                        raise ValueError
                elif name in RANGES and value is not None and not (RANGES[name].contains(value)
                                                                   and value <= self.limit(name)):
                    raise ValueError
            except ValueError:
                ignored.append(key)
                continue
            settings[name] = value
        return settings, ignored

    def settings_url(self, settings):
        """The permalink query for these settings (what settings_from_url reads back), or raises
        ValueError when they are not a valid run."""
        config = self.config(settings)
        short = {v: k for k, v in URL_ALIASES.items()}
        # A switch appears when it is not its default (augment=0, consistent=1): a page opened
        # without it starts from the defaults.
        query = {short.get(name, name): int(value) if isinstance(value, bool) else value
                 for name in URL_SETTINGS if (value := getattr(config, name)) is not None
                 and not (isinstance(value, bool) and value == getattr(DEFAULTS, name))
                 and not (name in ("self_distill", "generations") and config.teacher != SELF)
                 and not (name in TECHNIQUE_SETTINGS and value == getattr(DEFAULTS, name))}
        return "/?" + urllib.parse.urlencode(query)
