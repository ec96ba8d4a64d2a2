"""The Distill tab's controls: one row per control (CONTROL_TABLE), read by the layout, the handlers
and the tests, and generated from kdapp.config (ranges, steps, defaults) as the CLI's options are.

`Controls(get_lab, I18N)` is the page's name -> component mapping, filled by `rows(...)` as the
layout runs: a handler reads the controls' values by name (`values_of`), and a test or a script
builds a page's inputs with `inputs_for(epochs=1)`. `settings_from` turns the values into the lab's
loose settings, where the page's own conventions (an unticked schedule means "off") live.
"""
import contextlib

import gradio as gr

from kdapp.config import DEFAULTS, RANGES
from kdapp.losses import FEATURE_LOSSES, LOGIT_LOSSES
from kdapp.models import cnn_names
from kdapp.ui import i18n
from kdapp.ui.i18n import _
from kdapp.ui.sentences import known

# How the page's own events are wired: kept out of the API page and MCP's tools (scripts can still
# call them by name), with no progress overlay (the page shows its own state).
PRIVATE = dict(api_visibility="private", show_progress="hidden")

# name -> (kind, extra). Each control's label is the catalog's "control.<name>" and its info line
# "control.<name>.info" when the catalog has one (kdapp/ui/locales). Sliders take their range, step
# and default from kdapp.config; the rest say their choices, as (catalog key or text, value): the
# choices are words in the visitor's language, sent by on_load (choices_for). An extra that depends
# on the lab (the teachers it has, its caps) is a function of it. Names that are RunConfig fields
# set that field (settings_from).
CONTROL_TABLE = {
    "teacher": ("dropdown", lambda lab: dict(choices=lab.teacher_choices(), value=DEFAULTS.teacher)),
    "student": ("dropdown", lambda lab: dict(choices=lab.student_choices(), value=DEFAULTS.student)),
    "temperature": ("slider", {}),
    "alpha": ("slider", {}),
    "epochs": ("slider", {}),
    "batch_size": ("slider", dict(high=512)),
    "lr": ("slider", {}),
    "train_fraction": ("slider", {}),
    "loss": ("radio", dict(choices=[(f"loss.{name}", name) for name in LOGIT_LOSSES], value=DEFAULTS.loss)),
    "omit_class": ("dropdown", dict(choices=[("choice.none", "")] + [(str(d), str(d)) for d in range(10)], value="")),
    "self_distill": ("radio", dict(choices=[("choice.self_distill.born-again", "born-again"),
                                            ("choice.self_distill.deep", "deep")],
                                   value=DEFAULTS.self_distill, interactive=DEFAULTS.teacher == "self")),
    "generations": ("slider", dict(interactive=DEFAULTS.teacher == "self")),
    "feature_loss": ("radio", dict(choices=[("choice.none", "none"), *((name, name) for name in FEATURE_LOSSES)],
                                   value=DEFAULTS.feature_loss)),
    "feature_weight": ("slider", {}),
    "second_teacher": ("dropdown", lambda lab, first=DEFAULTS.teacher: dict(
        choices=[("choice.none", "")] + lab.second_teacher_choices(first), value="")),
    "temperature_schedule": ("radio", dict(choices=[(f"schedule.{name}", name) for name in
                                                    ("constant", "linear", "cosine", "ctkd")],
                                           value=DEFAULTS.temperature_schedule)),
    "temperature_end": ("slider", dict(value=1.0)),
    "joint_epochs": ("slider", {}),
    "teacher_shifts": ("slider", {}),
    "collapse_weight": ("slider", {}),
    "adversarial_weight": ("slider", {}),
    "alpha_schedule": ("checkbox", dict(value=False)),
    "alpha_end": ("slider", dict(value=0.3)),
    "clip_grad_norm": ("number", dict(value=0)),
    "augment": ("checkbox", dict(value=DEFAULTS.augment)),
    "consistent": ("checkbox", dict(value=DEFAULTS.consistent)),
    "quantize": ("radio", dict(choices=[(f"choice.quantize.{name}", name) for name in ("none", "ptq", "qat")],
                               value=DEFAULTS.quantize)),
    "data": ("dropdown", lambda lab: dict(choices=lab.data_choices(), value=DEFAULTS.data,
                                          interactive=len(lab.data_choices()) > 1)),
    "device": ("dropdown", lambda lab: dict(choices=lab.device_choices(), value=lab.device_choices()[0],
                                            interactive=len(lab.device_choices()) > 1)),
}
CHOICE_CONTROLS = [name for name, (kind, _extra) in CONTROL_TABLE.items() if kind in ("dropdown", "radio")]
# Info lines with a list the code knows (the losses, the CNNs): the catalog entry has a slot for it.
INFO_SLOTS = {"loss": lambda: dict(losses=" ".join(f"{e.short}: {_(f'loss.{name}.explain')}"
                                                   for name, e in LOGIT_LOSSES.items())),
              "feature_loss": lambda: dict(losses="; ".join(_(f"feature_loss.{name}") for name in FEATURE_LOSSES),
                                           cnns=cnn_names())}


def extra_of(name, lab, **given):
    """A row's extra settings, the lab's choices filled in (`given`: what they depend on, such as the
    first teacher for the second teacher's choices)."""
    extra = CONTROL_TABLE[name][1]
    return dict(extra(lab, **given) if callable(extra) else extra)


def choices_for(name, lab, **given):
    """A choice control's choices in the language spoken now: (words, value) pairs."""
    return _in_words(extra_of(name, lab, **given)["choices"])


def _in_words(choices):
    pairs = [(c, c) if isinstance(c, str) else c for c in choices]
    return [(known(_(label)), value) for label, value in pairs]


def info_for(name):
    """A control's info line in the language spoken now (None when it has none)."""
    key = f"control.{name}.info"
    if key not in i18n.CATALOGS["en"]:
        return None
    return _(key).format(**INFO_SLOTS[name]()) if name in INFO_SLOTS else _(key)


class Controls(dict):
    """name -> component, in CONTROL_TABLE's order once the layout has run."""

    def __init__(self, get_lab, I18N):
        super().__init__()
        self.get_lab, self.I18N = get_lab, I18N

    def rows(self, rows, row=True):
        """The controls of `rows`, each row a gr.Row (row=False: straight into the enclosing row)."""
        for names in rows:
            with gr.Row() if row else contextlib.nullcontext():
                for name in names:
                    self[name] = self.control(name)

    def control(self, name):
        """The component for one row of CONTROL_TABLE, with elem_id control-<name>: static words as
        gr.I18n keys (the browser translates them), the rest in English until on_load."""
        lab, I18N = self.get_lab(), self.I18N
        kind, extra = CONTROL_TABLE[name][0], extra_of(name, lab)
        if "choices" in extra:
            extra["choices"] = _in_words(extra["choices"])  # the lab's choices, asked once
        info = info_for(name)
        info = info if name in INFO_SLOTS or info is None else I18N(f"control.{name}.info")
        common = dict(label=I18N(f"control.{name}"), info=info, elem_id=f"control-{name}")
        if kind == "slider":
            r = RANGES[name]
            return gr.Slider(r.low, extra.pop("high", None) or lab.limit(name), step=r.step,
                             value=extra.pop("value", getattr(DEFAULTS, name)), **common)
        if kind == "dropdown":
            return gr.Dropdown(elem_classes="control-choice", **extra, **common)
        if kind == "radio":
            return gr.Radio(**extra, **common)
        if kind == "checkbox":
            return gr.Checkbox(**extra, **common)
        return gr.Number(**extra, **common)

    def values_of(self, data):
        """{component: value} from an event whose inputs are a set -> {control name: value}."""
        return {name: data[component] for name, component in self.items() if component in data}

    def inputs_for(self, **settings):
        """{component: value} for every control, defaults unless named: what the page sends to the
        start event, for tests and scripts that call the handlers as the page does."""
        unknown = set(settings) - set(self)
        if unknown:
            raise ValueError(f"no controls named {', '.join(sorted(unknown))}")
        return {component: settings.get(name, component.value) for name, component in self.items()}


def settings_from(values):
    """The controls' values by name -> loose settings for the lab. The UI's own conventions live
    here: an unticked schedule, a clip of 0 and no second teacher mean "off"."""
    v = values
    settings = {name: v[name] for name in ("teacher", "student", "temperature", "alpha", "epochs", "lr", "batch_size",
                                           "train_fraction", "loss", "feature_loss", "feature_weight", "data",
                                           "device", "self_distill", "generations", "temperature_schedule",
                                           "joint_epochs", "collapse_weight", "adversarial_weight", "teacher_shifts",
                                           "quantize")}
    return dict(settings, extra_teachers=v["second_teacher"] or "",
                alpha_end=v["alpha_end"] if v["alpha_schedule"] else None,
                temperature_end=None if v["temperature_schedule"] == "constant" else v["temperature_end"],
                clip_grad_norm=None if v["clip_grad_norm"] in (0, None, "") else v["clip_grad_norm"],
                augment=bool(v["augment"]), consistent=bool(v["consistent"]),
                omit_class=None if v["omit_class"] in ("", None) else v["omit_class"])
