"""kdapp: a knowledge-distillation lab. UI only: every computation comes from kdapp.lab.facade.

One gr.Blocks, thin handlers that take and return {component: value}, and the lab opened when
the server starts (LAUNCH's lifespan), so importing this module starts no thread and opens no
database.
"""
import contextlib
import logging
import os
import secrets
import sys
from types import SimpleNamespace

import gradio as gr
from PIL import Image
from starlette.middleware import Middleware

from kdapp.config import DEFAULTS, NO_PRETRAINED, RANGES
from kdapp.evaluation.inference import MAX_SIDE, BlankCanvas, CanvasError, unreadable
from kdapp.lab import continual as lab_continual, facade as lab_lib, lessons as lessons_lib, tensorboard
from kdapp.lab.jobs import RunsFolderBusy
from kdapp.losses import FEATURE_LOSSES, LOGIT_LOSSES
from kdapp.models import cnn_names
from kdapp.ui import continual as continual_ui, drawing, mcp_tools, plots, reports

# Decompression bombs: a tiny PNG can claim 20000x20000 pixels. Refuse past ~2x our largest canvas.
Image.MAX_IMAGE_PIXELS = MAX_SIDE * MAX_SIDE

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
# One torch thread here: batch-1 predictions gain nothing from more, and training runs in its
# own worker processes with all the cores (measured under load: no loss, slightly more req/s).
lab_lib.configure_threads(int(os.environ.get("KDAPP_THREADS", lab_lib.SERVER_THREADS)))
# Cheap to build: the run store and the queue's dispatchers start in lab.open(), at server start.
lab = lab_lib.Lab(runs_dir=os.environ.get("KDAPP_RUNS_DIR", "runs"), data_dir=os.environ.get("KDAPP_DATA_DIR", "data"),
                  workers=int(os.environ.get("KDAPP_WORKERS", 1)),
                  keep_checkpoints=int(os.environ.get("KDAPP_KEEP_CHECKPOINTS", 100)),
                  drawing_dir=os.environ.get("KDAPP_DRAWING_DIR"))  # a `distill --out` folder, e.g. from torchrun

DRAW_HINT = reports.hint(drawing.HINT)
INTRO = """# Knowledge distillation lab
A big **teacher** teaches a small **student** with its *soft* predictions, its whole softmax at a raised
temperature **T**; **α** weighs them against the true labels. A **baseline**, the same student on the labels
alone, trains beside it, so the gain is measured, not assumed. The default run uses 10% of the labels, where
KD's gain is clearest. New here? Try the **Lessons** tab.
"""
NO_OWNER = "The page is still loading; try again in a moment."
ui = SimpleNamespace()  # every component, filled in by the layout below; handlers return {ui.x: value}

# ---- the controls: one row per control, read by the layout, the handlers and the tests ----
# name -> (kind, label, info, extra). Sliders take their range, step and default from kdapp.config;
# the rest say their choices. Names that are RunConfig fields set that field (settings_from).
CONTROL_TABLE = {
    "teacher": ("dropdown", "Teacher", None, lambda: dict(choices=lab.teacher_choices(), value=DEFAULTS.teacher)),
    "student": ("dropdown", "Student", None, lambda: dict(choices=lab.student_choices(), value=DEFAULTS.student)),
    "temperature": ("slider", "Temperature T", "softens the teacher's softmax; 3–5 works best on MNIST", {}),
    "alpha": ("slider", "α: weight of the soft targets", "0 = labels only (no KD), 1 = teacher only", {}),
    "epochs": ("slider", "Epochs", None, {}),
    "batch_size": ("slider", "Batch size", None, dict(high=512)),
    "lr": ("slider", "Learning rate (Adam, cosine decay)", None, {}),
    "train_fraction": ("slider", "Train fraction (share of the labels)",
                       "0.1, the default: 800 digits, where KD's gain clears the noise; on all of them it is within it",
                       {}),
    "loss": ("radio", "Logit loss (the soft term)", " ".join(f"{e.short}: {e.explain}" for e in LOGIT_LOSSES.values()),
             dict(choices=[(entry.label, name) for name, entry in LOGIT_LOSSES.items()], value=DEFAULTS.loss)),
    "omit_class": ("dropdown", "Leave out a digit", "no example of it in either student's data (Hinton's missing 3)",
                   dict(choices=[("none", "")] + [(str(d), str(d)) for d in range(10)], value="")),
    "self_distill": ("radio", "With teacher = self",
                     "born-again: a copy of the student trained on labels teaches the next. Deep supervision: heads "
                     "on the student's shallower layers learn from its deepest layer (features, via adapters, and "
                     "softmax at T); no teacher at all",
                     dict(choices=[("born-again generations", "born-again"), ("deep supervision", "deep")],
                          value=DEFAULTS.self_distill, interactive=DEFAULTS.teacher == "self")),
    "generations": ("slider", "Born-again generations",
                    "generation k learns from generation k−1; generation 0, labels only, is the baseline",
                    dict(interactive=DEFAULTS.teacher == "self")),
    "feature_loss": ("radio", "Feature loss",
                     "; ".join(entry.label for entry in FEATURE_LOSSES.values())
                     + f" (conv maps: CNNs only, {cnn_names()}). With a second teacher the target is the two "
                     "teachers' features averaged.",
                     dict(choices=["none", *FEATURE_LOSSES], value=DEFAULTS.feature_loss)),
    "feature_weight": ("slider", "Feature loss weight", "also the hint's weight in deep supervision", {}),
    "second_teacher": ("dropdown", "Second teacher (multi-teacher KD: probabilities averaged)", None,
                       lambda: dict(choices=[("none", "")] + [c for c in lab.teacher_choices() if c[1] not in NO_PRETRAINED],
                                    value="")),
    "temperature_schedule": ("radio", "Temperature over the run",
                             "linear or cosine from T to the T at the end (high T early carries general knowledge, "
                             "low T later sharpens); CTKD: T learned against the student through a gradient reversal "
                             "layer, between T and the end value. The run's T is drawn beside the loss.",
                             dict(choices=[("constant", "constant"), ("linear", "linear"), ("cosine", "cosine"),
                                           ("CTKD (Li 2023)", "ctkd")], value=DEFAULTS.temperature_schedule)),
    "temperature_end": ("slider", "T at the end (CTKD: the other bound)", None, dict(value=1.0)),
    "joint_epochs": ("slider", "Joint epochs (progressive distillation)",
                     "after the fixed-teacher epochs, the teacher learns too: from the labels and the student's soft "
                     "targets, at a tenth of the learning rate. For a mutual teacher, pick teacher = mutual.", {}),
    "collapse_weight": ("slider", "Collapse regulariser λ", "λ‖Cov(F_S) − I‖²: keeps the student's adapted "
                        "features decorrelated (needs a feature loss)", {}),
    "adversarial_weight": ("slider", "Adversarial weight μ", "a discriminator tells teacher from student features; "
                           "the student learns to fool it (gradient reversal; needs hint or gram)", {}),
    "alpha_schedule": ("checkbox", "Linear α schedule", None, dict(value=False)),
    "alpha_end": ("slider", "α at the end", None, dict(value=0.3)),
    "clip_grad_norm": ("number", "Gradient-norm clip (0 = off)", None, dict(value=0)),
    "augment": ("checkbox", "Shift augmentation (±2 px)",
                "move every training digit by up to 2 px, for both students; the soft targets stay the teacher's "
                "cached answers. Free, and +0.4 points on the sample.", dict(value=DEFAULTS.augment)),
    "consistent": ("checkbox", "Consistent teaching",
                   "rotate, scale, slant and re-stroke every batch and ask the teacher about exactly those digits "
                   "(Beyer et al. 2022): students that read other people's handwriting. The baseline gets the same "
                   "batches. Slower: the teacher runs on every batch.", dict(value=DEFAULTS.consistent)),
    "quantize": ("radio", "int8 students",
                 "also make int8 students (ONNX, a quarter of the bytes): post-training calibration, or "
                 "quantization-aware fine-tuning, the KD student still taught by its teacher and the baseline by "
                 "the labels. Their size, speed and accuracy join the comparison table; docs/deployment.md.",
                 dict(choices=[("fp32 only", "none"), ("int8 after training (PTQ)", "ptq"),
                               ("int8-aware fine-tuning (QAT, with KD)", "qat")], value=DEFAULTS.quantize)),
    "data": ("dropdown", "Data", None, lambda: dict(choices=lab.data_choices(), value=DEFAULTS.data,
                                                     interactive=len(lab.data_choices()) > 1)),
    "device": ("dropdown", "Device", None, lambda: dict(choices=lab.device_choices(),
                                                         value=lab.device_choices()[0],
                                                         interactive=len(lab.device_choices()) > 1)),
}
# Where each control sits: rows on the main panel, then rows in the "More methods" accordion.
MAIN_ROWS = [["teacher", "student", "temperature", "alpha"]]  # one strip beside Start: the first screen
TRAIN_ROWS = [["epochs", "train_fraction"], ["lr", "batch_size"]]  # folded: the defaults are the lesson's recipe
MORE_ROWS = [["loss"], ["omit_class"], ["self_distill", "generations"], ["feature_loss"], ["feature_weight"],
             ["second_teacher"], ["alpha_schedule", "alpha_end"], ["temperature_schedule", "temperature_end"],
             ["joint_epochs"], ["collapse_weight", "adversarial_weight"], ["clip_grad_norm"], ["augment"], ["consistent"],
             ["quantize"], ["data"], ["device"]]
CONTROLS = {}  # name -> component, in CONTROL_TABLE's order once the layout has run


def control(name):
    """The component for one row of CONTROL_TABLE, with elem_id control-<name>."""
    kind, label, info, extra = CONTROL_TABLE[name]
    extra = dict(extra() if callable(extra) else extra)
    common = dict(label=label, info=info, elem_id=f"control-{name}")
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


def control_rows(rows, row=True):
    """The controls of `rows`, each row a gr.Row (row=False: straight into the enclosing row)."""
    for names in rows:
        with gr.Row() if row else contextlib.nullcontext():
            for name in names:
                CONTROLS[name] = control(name)


def control_values(data):
    """{component: value} from an event whose inputs are a set -> {control name: value}."""
    return {name: data[component] for name, component in CONTROLS.items() if component in data}


def settings_from(values):
    """The controls' values by name -> loose settings for the lab. The UI's own conventions live
    here: an unticked schedule, a clip of 0 and no second teacher mean "off"."""
    v = values
    settings = {name: v[name] for name in ("teacher", "student", "temperature", "alpha", "epochs", "lr", "batch_size",
                                           "train_fraction", "loss", "feature_loss", "feature_weight", "data",
                                           "device", "self_distill", "generations", "temperature_schedule",
                                           "joint_epochs", "collapse_weight", "adversarial_weight", "quantize")}
    return dict(settings, extra_teachers=v["second_teacher"] or "",
                alpha_end=v["alpha_end"] if v["alpha_schedule"] else None,
                temperature_end=None if v["temperature_schedule"] == "constant" else v["temperature_end"],
                clip_grad_norm=None if v["clip_grad_norm"] in (0, None, "") else v["clip_grad_norm"],
                augment=bool(v["augment"]), consistent=bool(v["consistent"]),
                omit_class=None if v["omit_class"] in ("", None) else v["omit_class"])


def inputs_for(**settings):
    """{component: value} for every control, defaults unless named: what the page sends to the
    start event, for tests and scripts that call the handlers as the page does."""
    unknown = set(settings) - set(CONTROLS)
    if unknown:
        raise ValueError(f"no controls named {', '.join(sorted(unknown))}")
    return {component: settings.get(name, component.value) for name, component in CONTROLS.items()}


# ---- handlers: thin, by name ----
def start(data):
    """Queue a run; the Distill tab then follows it, and the notice lasts until it ends."""
    owner = data[ui.owner]
    if not owner:  # every run has an owner who can stop it, and counts against their allowance
        return {ui.notice: reports.notice(NO_OWNER, ok=False)}
    record, message = lab.start(settings_from(control_values(data)), owner)
    if record is None:
        return {ui.notice: reports.notice(message, ok=False)}
    return {ui.notice: reports.notice(message), ui.view: record["id"], ui.notice_for: record["id"]}


def run_again(owner, view):
    """Queue the settings of the run on show (a permalink's too) again, as a new run of this visitor's."""
    if not owner:
        return {ui.notice: reports.notice(NO_OWNER, ok=False)}
    run = shown_run(view, lab.active(owner), lab.latest_finished())
    if run is None:
        return {ui.notice: reports.notice("There is no run on show to run again.", ok=False)}
    record, message = lab.run_again(run["id"], owner)
    if record is None:
        return {ui.notice: reports.notice(message, ok=False)}
    return {ui.notice: reports.notice(message), ui.view: record["id"], ui.notice_for: record["id"]}


def settings_link(data):
    try:
        url = lab.settings_url(settings_from(control_values(data)))
    except ValueError as e:
        return {ui.notice: reports.notice(f"No link: {e}", ok=False)}
    return {ui.notice: reports.link("Link to these settings", url)}


def sweep(name):
    def handler(data):
        if not data[ui.owner]:
            return {ui.notice: reports.notice(NO_OWNER, ok=False)}
        seeds = lab_lib.SEEDS if data.get(ui.sweep_seeds) else None
        records, message = lab.sweep(settings_from(control_values(data)), data[ui.owner], name, seeds)
        return {ui.notice: reports.notice(message, ok=bool(records))}
    return handler


MISSING_THREE = (
    "**Hinton's missing 3.** Both students train on every digit except the 3s, so neither ever sees one. "
    "The baseline cannot answer 3; the KD student can, because the teacher's soft targets at a high T say how "
    "3-like each 5 and 8 is. After the run, the status line shows how many test 3s each student reads, before and "
    "after raising the 3's output bias until it is answered as often as 3s occur (the paper's correction). Set: "
    "leave out 3, T=20, α=0.9, all the other digits for 15 epochs, no shifts (Hinton's transfer set is the digits as they are; shifted, the KD student "
    "read 55% of 3s instead of 83%). On the sample, 15 epochs: KD student 83% of 3s (96% after the correction), "
    "baseline 0% (36%). Press Start.")
MISSING_THREE_SETTINGS = {"omit_class": "3", "temperature": 20.0, "alpha": 0.9, "augment": False,
                          "train_fraction": 1.0, "epochs": 15}


def missing_three():
    """The missing-3 preset: its settings and its explanation."""
    return {ui.notice: reports.notice(MISSING_THREE),
            **{CONTROLS[name]: value for name, value in MISSING_THREE_SETTINGS.items()}}


def self_controls(teacher):
    """Teacher = self's own settings are live only when the teacher is self."""
    mine = teacher == lab_lib.SELF
    return {CONTROLS["self_distill"]: gr.update(interactive=mine), CONTROLS["generations"]: gr.update(interactive=mine)}


def stop(owner, view):
    """Stop the visitor's run on show if it is theirs, else their oldest queued or running run."""
    mine = [r for r in lab.active(owner) if r["mine"]]
    target = next((r["id"] for r in mine if r["id"] == view), mine[0]["id"] if mine else None)
    if target is None:
        return {ui.notice: reports.notice("You have no run queued or running.")}
    return {ui.notice: reports.notice(lab.cancel(target, owner)), ui.view: target}  # keep showing it, stopped


def shown_run(view, active, newest):
    """The run the Distill tab shows: the one a link or the Runs tab chose, else the visitor's own
    active run, else the one training now, else the newest finished run."""
    if view:  # queued and running runs come with their place in the queue and ETA
        return next((r for r in active if r["id"] == view), None) or lab.run(view)
    mine = [r for r in active if r["mine"]]
    running = [r for r in active if r["position"] == 0]
    return (mine or running or [newest])[0]


def refresh(last, view, owner, models_value, follow, notice_for):
    """Timer tick: send only what changed (gr.Plot rebuilds its figure on every new value)."""
    key = (lab.version(), view, owner, models_value, follow, notice_for)
    if last and last["key"] == key:
        return gr.skip()  # nothing changed; an empty dict is not read as "no outputs" by gradio 6.31
    active, newest = lab.active(owner), lab.latest_finished()
    run = shown_run(view, active, newest)
    mine = bool(run) and lab.owns(run["id"], owner)
    table = lab.comparison(run["id"]) if run and run["state"] == "finished" else None
    out = {ui.status: reports.status(run, mine, newest if run and newest and run["id"] != newest["id"] else None),
           ui.queue: reports.queue(active), ui.loss_plot: plots.loss_figure(run),
           ui.acc_plot: plots.accuracy_figure(run), ui.table: reports.comparison_table(table),
           ui.stop: gr.update(interactive=any(r["mine"] for r in active)),
           ui.link: reports.run_link(run["id"]) if run else ""}
    # The drawing follows the visitor's own newest finished run until they pick models themselves.
    choices = last["choices"] if last else None
    if follow is not None:  # the page has loaded: on_load set the drawing's models first
        wanted = lab.default_models(owner) if follow else models_value
        choices = lab.drawing_choices(include=wanted)
        if wanted not in [value for _, value in choices]:  # pruned meanwhile: a value outside the
            wanted = lab_lib.SHIPPED                          # choices would make every tick fail
        if wanted != models_value or not last or last["choices"] != choices:
            out.update({ui.models: gr.update(choices=choices, value=wanted), ui.drawing_models: wanted})
    # A "started"/"queued" notice is about one run: clear it once that run has ended.
    if notice_for and not any(r["id"] == notice_for for r in active):
        out.update({ui.notice: "", ui.notice_for: None})
    # The fidelity panel changes only when another run is shown or the shown one finishes.
    fidelity_key = (run["id"], run["state"]) if run else None
    if not (last and last.get("fidelity") == fidelity_key):
        out.update(fidelity_outputs(run))
    out[ui.last] = {"key": key, "choices": choices, "fidelity": fidelity_key}
    return out


def on_load(owner, request: gr.Request):
    """A new page: give the browser an owner token once, and apply the link's parameters."""
    owner = owner or secrets.token_urlsafe(16)
    params = dict(request.query_params) if request else {}
    settings, ignored = lab.settings_from_url(params)
    run_id = params.get("run")
    linked = lab.run(run_id) if run_id is not None else None
    out = {ui.owner: owner, ui.view: None,
           ui.notice: reports.url_notice(run_id if run_id is not None and linked is None else None, ignored)}
    if lab_continual.is_continual(linked):  # a continual run's link opens the Continual tab on it
        out.update({ui.continual_shown: linked["id"], ui.tabs: gr.Tabs(selected=continual_ui.TAB_ID)})
        linked = None
    view = out[ui.view] = linked["id"] if linked else None
    out.update({CONTROLS[name]: value for name, value in settings.items() if name in CONTROLS})
    if "alpha_end" in settings:  # a linked schedule is switched on, not just its end value
        out[CONTROLS["alpha_schedule"]] = True
    linked = bool(linked) and linked["has_checkpoints"]  # a linked run's models stay put
    models = view if linked else lab.default_models(owner)
    out.update({ui.models: gr.update(choices=lab.drawing_choices(include=models), value=models),
                ui.drawing_models: models, ui.follow: not linked})
    return out


class Sketchpad(gr.Sketchpad):
    """/predict's input, for scripts (gradio_client); the page draws with kdapp.ui.drawing.
    Gradio decodes an uploaded image before our handler runs, so a truncated or oversized file
    would reach the caller as a bare "Error". Hand the reason to `predict` instead."""

    def get_block_name(self):
        return "imageeditor"  # a subclass of a template must name the frontend itself

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except Exception as e:  # PIL's UnidentifiedImageError, OSError, DecompressionBombError, ...
            logging.getLogger("app").info("unreadable canvas: %s", e)
            return {"unreadable": unreadable(e)}  # the reason in words: no server path, no class name


def predict(sketch, temperature=DEFAULTS.temperature, models=lab_lib.SHIPPED):
    """/predict, for scripts: teacher, KD student and baseline on a drawing: top-3 labels,
    softmaxes at T=1 and T, the 28x28 input. Outputs, in order: teacher, KD student, baseline,
    chart, image, note. The page computes the same in the browser (kdapp.ui.drawing)."""
    try:
        if isinstance(sketch, dict) and "unreadable" in sketch:
            raise CanvasError(sketch["unreadable"])
        result = lab.predict(sketch, temperature, models or lab_lib.SHIPPED)
    except BlankCanvas:
        return clear()
    except CanvasError as e:
        return clear() | {ui.draw_note: reports.hint(f"Could not read that image: {e}")}
    teacher, student, baseline = (reports.top_labels(result[role]["p1"]) if role in result else None
                                  for role in ("teacher", "student", "baseline"))
    return {ui.teacher_pred: teacher, ui.student_pred: student, ui.baseline_pred: baseline,
            ui.dist_plot: plots.distribution_figure(result), ui.digit28: result["image"],
            ui.draw_note: reports.prediction_note(result)}


def clear():
    """/predict's outputs for a blank canvas."""
    return {ui.teacher_pred: None, ui.student_pred: None, ui.baseline_pred: None,
            ui.dist_plot: plots.distribution_figure(None), ui.digit28: None, ui.draw_note: DRAW_HINT}


# ---- what a finished run's student learned ----
FIDELITY_WAIT = reports.hint("The fidelity panel (agreement with the teacher, confusions, the digits KD fixed) "
                             "appears here when the run on show has finished.")
FIDELITY_OLD = reports.hint("This run finished before the lab recorded fidelity; start a new run to see it.")


def fidelity_outputs(run):
    """The fidelity panel for the run on show: markdown, confusions, both galleries, the example
    chart, and the id whose galleries are shown (for clicks)."""
    fidelity = lab.fidelity(run["id"]) if run and run["state"] == "finished" else None
    text = reports.fidelity_markdown(fidelity) if fidelity else FIDELITY_OLD if run and run["state"] == "finished" \
        else FIDELITY_WAIT
    return {ui.fidelity_md: text, ui.confusion_plot: plots.confusion_figure(fidelity),
            ui.fixed_gallery: lab.gallery(fidelity, "fixed"), ui.broken_gallery: lab.gallery(fidelity, "broken"),
            ui.example_plot: plots.example_figure(None, None, None), ui.fidelity_shown: run["id"] if fidelity else None}


def show_example(kind):
    def handler(shown, evt: gr.SelectData):
        return plots.example_figure(lab.fidelity(shown), kind, evt.index)
    return handler


# ---- the Lessons tab: one-click experiments (kdapp.lab.lessons), answered with the visitor's runs ----
LESSON_BUTTONS = {}  # lesson key -> its button, filled in by the layout
LESSONS_INTRO = """## Lessons: one question, one click
Each lesson queues its runs on the settings of the Distill tab (the pair, epochs, data), each on
seeds 0, 1 and 2, then answers its question here with your own numbers and their 95% intervals,
beside what the literature reports. An effect inside the noise is called so.
"""


def lesson_start(key):
    def handler(data):
        if not data[ui.owner]:
            return {ui.lesson_note: reports.notice(NO_OWNER, ok=False)}
        group, message = lab.lesson(settings_from(control_values(data)), data[ui.owner], key)
        if group is None:
            return {ui.lesson_note: reports.notice(message, ok=False)}
        return {ui.lesson_note: reports.notice(message), ui.lesson: {"key": key, "group": group},
                ui.lesson_md: lessons_lib.progress(lessons_lib.LESSONS[key], lab.group_runs(group))}
    return handler


def lesson_tick(lesson, last):
    """Timer tick: the lesson's progress, then its answer once every run has ended."""
    if not lesson:
        return gr.skip()  # nothing to send
    runs = lab.group_runs(lesson["group"])
    key = [[r["id"], r["state"]] for r in runs]
    if key == last:
        return gr.skip()
    chosen = lessons_lib.LESSONS[lesson["key"]]
    ended = all(r["state"] not in ("queued", "running") for r in runs)
    return {ui.lesson_md: lessons_lib.summary(chosen, runs) if ended else lessons_lib.progress(chosen, runs),
            ui.lesson_last: key}


# ---- the Runs tab ----
def runs_table(pair, chosen):
    teacher, student = (pair.split(" → ") + [None])[:2] if pair and pair != "all" else (None, None)
    records = lab.runs(teacher, student)
    pairs = ["all"] + sorted({f"{r['config']['teacher']} → {r['config']['student']}" for r in lab.runs()})
    continual = lab_continual.runs(lab, limit=200)
    ids = [r["id"] for r in records] + [r["id"] for r in continual]
    choices = [r["id"] for r in records] + [(f"{r['id']} (continual)", r["id"]) for r in continual]
    return {ui.runs_df: reports.runs_rows(records), ui.continual_runs_df: continual_ui.runs_rows(continual),
            ui.pair: gr.update(choices=pairs), ui.selected: gr.update(choices=choices,
                                                                      value=[i for i in chosen or [] if i in ids])}


def compare(selected, pair):
    records = [r for r in (lab.run(i) for i in (selected or [])[:4]) if r]
    # Distillation and continual runs are compared each with their own kind; distillation runs first.
    distill = [r for r in records if not lab_continual.is_continual(r)]
    continual = [r for r in records if lab_continual.is_continual(r)]
    return {ui.compare_plot: plots.compare_figure(distill) if distill or not continual
            else continual_ui.compare_figure(continual),
            ui.diff: reports.config_diff(distill or continual),
            ui.gain_plot: plots.gain_map([] if continual and not distill
                                         else lab.gain_group(distill[0] if distill else None)),
            ui.run_link: reports.run_link(records[0]["id"]) if records else ""}


def downloads(selected):
    files, notes = [], []
    for run_id in (selected or [])[:1]:
        for kind in ("pt", "onnx", "int8"):
            try:
                files.append(str(lab.export(run_id, kind)))
            except (LookupError, OSError, RuntimeError) as e:
                if kind != "int8":  # only runs with int8 students have one; the others need no note
                    notes.append(str(e))
    return {ui.files: files or None,
            ui.runs_note: reports.notice(" ".join(notes) or ("Select a finished run first." if not files else ""))}


def tensorboard_download(selected):
    """The selected runs (none selected: the newest 200) as TensorBoard event files, zipped."""
    try:
        return {ui.files: [str(tensorboard.zip_runs(lab, selected))],
                ui.runs_note: reports.notice("Unzip, then: tensorboard --logdir <folder>")}
    except ValueError as e:
        return {ui.files: None, ui.runs_note: reports.notice(str(e), ok=False)}


def open_run(selected):
    first = (selected or [None])[0]
    if lab_continual.is_continual(lab.run(first)):
        return {ui.continual_shown: first, ui.tabs: gr.Tabs(selected=continual_ui.TAB_ID)}
    return {ui.view: first, ui.tabs: gr.Tabs(selected="distill")}


def api_runs() -> list[dict]:
    """Every run as JSON: id, state, config, metrics, created time (owners are never included)."""
    return [{k: r[k] for k in ("id", "state", "config", "metrics", "created", "started", "ended", "data", "device",
                               "resumed_from_epoch")} for r in lab.runs()]


CSS = """
#fixed-gallery img, #broken-gallery img { image-rendering: pixelated; }
#status { min-height: 3em; }
/* break table cells between words only (Gradio's default split "architecture" mid-word) */
#comparison th, #comparison td, #queue th, #queue td { white-space: normal; word-break: normal; overflow-wrap: normal; }
#comparison { overflow-x: auto; }
@media (max-width: 700px) {
  .modebar-container { display: none !important; }  /* plotly's toolbar covers the titles on a phone */
}
/* Every Markdown table scrolls inside its own box and breaks only between words, so on a phone no
   cell is narrower than its longest word ("accuracy", "99.0%"), and the page never scrolls sideways. */
.prose table, .md table { display: block; max-width: 100%; overflow-x: auto; }
.prose th, .prose td, .md th, .md td { word-break: normal !important; overflow-wrap: normal !important;
  hyphens: none; }
#lessons .lesson-question p { margin: 0.3em 0; }
.control-choice input { padding-right: 2.2em !important; text-overflow: ellipsis; }
"""
class OwnerToken(gr.BrowserState):
    """The visitor's owner token, encrypted in the browser's localStorage so it survives reloads,
    new tabs and server restarts; never shown to anyone. Its key is the lab's, kept beside the
    runs: read when launch() builds the page's config, not when the Blocks are built on import
    (`built` turns True after the layout), so importing this module writes no file."""
    built = False

    def get_block_name(self):
        return "browserstate"  # a subclass must name gradio's frontend, or the page waits for a custom one

    @property
    def secret(self):
        return lab.browser_secret() if OwnerToken.built else "not-served"

    @secret.setter
    def secret(self, value):
        pass  # BrowserState sets a random key; ours is the lab's


with gr.Blocks(title="kdapp: knowledge distillation lab") as demo:
    gr.Markdown(INTRO)
    ui.owner = OwnerToken(None, storage_key="kdapp-owner")
    ui.view = gr.State(None)         # run id chosen by Start, a link or the Runs tab; None = follow the lab
    ui.notice_for = gr.State(None)   # the run the notice speaks of
    ui.follow = gr.State(None)       # the drawing follows the visitor's newest run until they pick models;
                                     # None until on_load has run, so a first tick cannot undo a link
    ui.last = gr.State(None)
    # The drawing's models as session state, not an API input: /predict keeps (sketch, T).
    ui.drawing_models = gr.State(lab_lib.SHIPPED)
    with gr.Tabs() as ui.tabs:
        with gr.Tab("Distill", id="distill"):
            # The first screen (1400x1000): the pair, T and α with Start in one strip, the rest folded,
            # then the drawing, which works before any training. The run's curves come after it.
            with gr.Row(elem_id="quick-controls", equal_height=False):
                control_rows(MAIN_ROWS, row=False)
                with gr.Column(min_width=170, scale=1):
                    ui.start = gr.Button("Start distillation", variant="primary", elem_id="start")
                    ui.stop = gr.Button("Stop my run", variant="stop", elem_id="stop", interactive=False)
            with gr.Row(equal_height=False):
                with gr.Column(scale=1, min_width=300):
                    with gr.Accordion("Training: epochs, batch, learning rate, share of the labels", open=False,
                                      elem_id="training-settings"):
                        control_rows(TRAIN_ROWS)
                with gr.Column(scale=1, min_width=300):
                    with gr.Accordion("More methods, data and device", open=False):
                        control_rows(MORE_ROWS)
            with gr.Row(elem_id="sweeps"):
                ui.sweep_t = gr.Button("Sweep T (1, 2, 4, 8, 16)", size="sm", elem_id="sweep-t", min_width=150)
                ui.sweep_alpha = gr.Button("Sweep α (0.1 … 0.9)", size="sm", elem_id="sweep-alpha", min_width=150)
                ui.sweep_seeds = gr.Checkbox(False, label="sweeps on seeds 0, 1, 2 (error bars, 3× the runs)",
                                             elem_id="sweep-seeds", min_width=220)
                ui.missing_three = gr.Button("Preset: Hinton's missing 3", size="sm", elem_id="preset-missing-3",
                                             min_width=150)
                ui.settings_link = gr.Button("Link to these settings", size="sm", elem_id="settings-link",
                                             min_width=150)
            ui.notice = gr.Markdown(elem_id="notice")
            ui.queue = gr.Markdown(elem_id="queue")
            with gr.Row(equal_height=False):
                with gr.Column(scale=5):
                    ui.status = gr.Markdown(reports.status(None, False), elem_id="status")
                    ui.link = gr.Markdown(elem_id="status-link")
                ui.run_again = gr.Button("Run again (same settings, as your run)", size="sm", elem_id="run-again",
                                         scale=0, min_width=260)
            with gr.Row(equal_height=True):  # side by side at 1400 px, so the canvas is on the first screen
                with gr.Column(min_width=300):
                    gr.Markdown("## Draw a digit and compare")
                with gr.Column(min_width=300):
                    # Only the shipped models at build time; on_load offers each visitor the finished runs.
                    ui.models = gr.Dropdown([("shipped checkpoints", lab_lib.SHIPPED)], value=lab_lib.SHIPPED,
                                            label="Models for the drawing: the shipped ones, or a finished run's",
                                            elem_id="drawing-models")
            # The canvas, the three models' answers, the 28x28 input and the softmax chart: all
            # computed in the visitor's browser (kdapp/ui/drawing.py, static/drawing.js).
            drawing.panel(lambda: lab, DEFAULTS.temperature, lab_lib.SHIPPED, roles=lab.shipped_roles())
            # /predict, for scripts (gradio_client), with the same inputs and outputs as ever; hidden.
            with gr.Column(visible=False):
                ui.sketch = Sketchpad(type="numpy", image_mode="RGBA", canvas_size=(drawing.CANVAS, drawing.CANVAS),
                                      layers=False, transforms=())
                ui.teacher_pred, ui.student_pred, ui.baseline_pred = (gr.Label(num_top_classes=3) for _ in range(3))
                ui.dist_plot, ui.digit28, ui.draw_note = gr.Plot(), gr.Image(), gr.Markdown()
            gr.Markdown("## The run: curves and results")
            with gr.Row():
                ui.loss_plot = gr.Plot(plots.loss_figure(None), elem_id="loss-plot", show_label=False)
                ui.acc_plot = gr.Plot(plots.accuracy_figure(None), elem_id="acc-plot", show_label=False)
            ui.table = gr.Markdown(reports.comparison_table(None), elem_id="comparison")
            gr.Markdown("## What the student learned")
            ui.fidelity_md = gr.Markdown(FIDELITY_WAIT, elem_id="fidelity")
            ui.confusion_plot = gr.Plot(plots.confusion_figure(None), elem_id="confusion-plot", show_label=False)
            with gr.Row():
                ui.fixed_gallery = gr.Gallery(label="KD right, baseline wrong (up to 32)", elem_id="fixed-gallery",
                                              columns=6, height=260, allow_preview=False, object_fit="contain")
                ui.broken_gallery = gr.Gallery(label="Baseline right, KD wrong (up to 32)", elem_id="broken-gallery",
                                               columns=6, height=260, allow_preview=False, object_fit="contain")
            ui.example_plot = gr.Plot(plots.example_figure(None, None, None), elem_id="example-plot",
                                      show_label=False)
            ui.fidelity_shown = gr.State(None)  # the run whose galleries are on show
        with gr.Tab("Lessons", id="lessons-tab", elem_id="lessons"):
            gr.Markdown(LESSONS_INTRO)
            for key, lesson in lessons_lib.LESSONS.items():
                with gr.Row(equal_height=True):
                    LESSON_BUTTONS[key] = gr.Button(lesson.title, size="sm", scale=1, min_width=160,
                                                       elem_id=f"lesson-{key}")
                    gr.Markdown(lesson.question, elem_classes="lesson-question")
            ui.lesson_note = gr.Markdown(elem_id="lesson-note")
            ui.lesson_md = gr.Markdown(elem_id="lesson-result")
            ui.lesson = gr.State(None)       # {"key", "group"}: the lesson on show
            ui.lesson_last = gr.State(None)  # its runs' states when last shown
        with gr.Tab("Runs", id="runs-tab"):
            with gr.Row():
                ui.pair = gr.Dropdown(["all"], value="all", label="Teacher → student", elem_id="runs-filter")
                ui.refresh_runs = gr.Button("Refresh", size="sm")
            ui.runs_df = gr.Dataframe(reports.runs_rows([]), elem_id="runs", interactive=False, wrap=False)
            gr.Markdown("**Continual runs** (split MNIST, task after task; shown in the Continual tab): "
                        "average accuracy after the last task / forgetting, per strategy")
            ui.continual_runs_df = gr.Dataframe(continual_ui.runs_rows([]), elem_id="continual-runs-table",
                                                interactive=False, wrap=False)
            ui.selected = gr.Dropdown([], multiselect=True, max_choices=4, label="Select up to 4 runs to compare",
                                      elem_id="runs-select")
            with gr.Row():
                ui.open_run = gr.Button("Show the first in its tab (Distill or Continual)", size="sm")
                ui.download = gr.Button("Download the first run's student (.pt and .onnx)", size="sm")
                ui.tensorboard = gr.Button("Download for TensorBoard (.zip)", size="sm", elem_id="tensorboard-zip")
            ui.run_link = gr.Markdown(elem_id="run-link")
            ui.files = gr.File(label="Student files", file_count="multiple", elem_id="downloads", height=110)
            ui.runs_note = gr.Markdown()
            ui.compare_plot = gr.Plot(plots.compare_figure([]), elem_id="runs-compare", show_label=False)
            ui.diff = gr.Markdown(elem_id="runs-diff")
            ui.gain_plot = gr.Plot(plots.gain_map([]), elem_id="gain-map", show_label=False)
        with gr.Tab("Continual", id="continual-tab", elem_id="continual-tab"):  # issue 26: kdapp.ui.continual builds it
            ui.continual_shown = continual_ui.build(lambda: lab, ui.owner).shown  # the run the tab shows
        with gr.Tab("Reproduction"):
            gr.Markdown(reports.reproduction_markdown(reports.RESULTS_MNIST_PATH), elem_id="reproduce-mnist")
            with gr.Accordion("The same tables on the bundled 8,000 / 2,000 sample", open=False):
                gr.Markdown(reports.reproduction_markdown(), elem_id="reproduce-sample")
            with gr.Accordion("The methods since 2015, side by side (full MNIST, then the sample)", open=False):
                gr.Markdown(reports.reproduction_markdown(reports.METHODS_PATHS["mnist"]), elem_id="methods-mnist")
                gr.Markdown(reports.reproduction_markdown(reports.METHODS_PATHS["sample"]), elem_id="methods-sample")

    controls = set(CONTROLS.values())
    private = dict(api_visibility="private", show_progress="hidden")
    ui.start.click(start, {ui.owner, *controls}, [ui.notice, ui.view, ui.notice_for], concurrency_limit=None,
                   **private)
    ui.sweep_t.click(sweep("temperature"), {ui.owner, ui.sweep_seeds, *controls}, ui.notice, concurrency_limit=None,
                     **private)
    ui.sweep_alpha.click(sweep("alpha"), {ui.owner, ui.sweep_seeds, *controls}, ui.notice, concurrency_limit=None,
                         **private)
    ui.stop.click(stop, [ui.owner, ui.view], [ui.notice, ui.view], concurrency_limit=None, **private)
    ui.run_again.click(run_again, [ui.owner, ui.view], [ui.notice, ui.view, ui.notice_for], concurrency_limit=None,
                       **private)
    ui.settings_link.click(settings_link, controls, ui.notice, **private)
    ui.missing_three.click(missing_three, None, [ui.notice, *(CONTROLS[n] for n in MISSING_THREE_SETTINGS)],
                           **private)
    for key, button in LESSON_BUTTONS.items():
        button.click(lesson_start(key), {ui.owner, *controls}, [ui.lesson_note, ui.lesson, ui.lesson_md],
                     concurrency_limit=None, **private)
    gr.Timer(2.0).tick(lesson_tick, [ui.lesson, ui.lesson_last], [ui.lesson_md, ui.lesson_last],
                       concurrency_limit=None, queue=False, **private)
    # The born-again / deep-supervision choice means something only with teacher = self: greyed out otherwise,
    # so an ordinary run does not look like a born-again one.
    CONTROLS["teacher"].change(self_controls, CONTROLS["teacher"], [CONTROLS["self_distill"], CONTROLS["generations"]],
                               **private)
    timer = gr.Timer(1.0)
    timer.tick(refresh, [ui.last, ui.view, ui.owner, ui.drawing_models, ui.follow, ui.notice_for],
               [ui.status, ui.queue, ui.loss_plot, ui.acc_plot, ui.table, ui.stop, ui.models, ui.drawing_models,
                ui.link, ui.notice, ui.notice_for, ui.fidelity_md, ui.confusion_plot, ui.fixed_gallery,
                ui.broken_gallery, ui.example_plot, ui.fidelity_shown, ui.last],
               concurrency_limit=None, queue=False, **private)
    predict_outputs = [ui.teacher_pred, ui.student_pred, ui.baseline_pred, ui.dist_plot, ui.digit28, ui.draw_note]
    predict_inputs = [ui.sketch, CONTROLS["temperature"], ui.drawing_models]
    # /predict skips the queue (queue=False): one POST to gradio_api/run/predict, answered in its reply.
    ui.sketch.change(predict, predict_inputs, predict_outputs, api_name="predict", show_progress="hidden",
                     queue=False, api_visibility="undocumented")  # for scripts; not an MCP tool
    # The drawing's models live in session state, set in the same answer that shows them in the
    # dropdown (a link, a finished run) or by the visitor's own pick. The panel follows the
    # dropdown in the browser and reads the digit again there (no server call).
    ui.models.input(lambda choice: {ui.drawing_models: choice, ui.follow: False}, ui.models,
                    [ui.drawing_models, ui.follow], **private)
    ui.models.change(None, ui.models, None, js="(choice) => { window.kdappDrawing?.setModels(choice); }", **private)
    # T set from a link fires no input event in the page; the panel follows every move by itself.
    CONTROLS["temperature"].change(None, CONTROLS["temperature"], None,
                                   js="(t) => { window.kdappDrawing?.setTemperature(t); }", **private)
    ui.fixed_gallery.select(show_example("fixed"), ui.fidelity_shown, ui.example_plot, **private)
    ui.broken_gallery.select(show_example("broken"), ui.fidelity_shown, ui.example_plot, **private)
    demo.load(on_load, [ui.owner], [ui.owner, ui.view, ui.notice, ui.models, ui.drawing_models, ui.follow,
                                    ui.tabs, ui.continual_shown, *CONTROLS.values()], **private)

    runs_outputs = [ui.runs_df, ui.continual_runs_df, ui.pair, ui.selected]
    for event in (ui.refresh_runs.click, ui.pair.input):
        event(runs_table, [ui.pair, ui.selected], runs_outputs, **private)
    demo.load(runs_table, [ui.pair, ui.selected], runs_outputs, **private)
    ui.selected.change(compare, [ui.selected, ui.pair], [ui.compare_plot, ui.diff, ui.gain_plot, ui.run_link],
                       **private)
    ui.open_run.click(open_run, ui.selected, [ui.view, ui.tabs, ui.continual_shown], **private)
    ui.download.click(downloads, ui.selected, [ui.files, ui.runs_note], **private)
    ui.tensorboard.click(tensorboard_download, ui.selected, [ui.files, ui.runs_note], **private)
    # /predict and /runs stay callable by scripts, but only the read-only tools are the documented API and MCP's.
    gr.api(api_runs, api_name="runs", api_visibility="undocumented")
    mcp_tools.register(lambda: lab, shipped=lab_lib.SHIPPED)

demo.queue(max_size=64, default_concurrency_limit=2)
OwnerToken.built = True  # from here on the page's config (built by launch) carries the lab's key


@contextlib.asynccontextmanager
async def lab_lifespan(_app):
    """The lab's life is the server's: open the run store and start the queue when the server
    starts (runs an earlier server left are picked up then), close it when the server stops."""
    lab.open()
    try:
        yield
    finally:
        lab.close()


# Tests launch with these too. show_error=False: visitors get our messages, never tracebacks.
# No "runs" footer link: it is Gradio's own /predict history, easy to mistake for the lab's runs.
LAUNCH = dict(css=CSS, max_file_size="5mb", show_error=False, footer_links=["api", "gradio", "settings"],
              run_history=False, mcp_server=True, allowed_paths=[str(lab.runs_path)],
              # the middleware serves the drawing panel's files: its JS, the in-browser runtime, the models' ONNX
              app_kwargs={"lifespan": lab_lifespan,
                          "middleware": [Middleware(drawing.DrawingFiles, get_lab=lambda: lab)]})

if __name__ == "__main__":
    try:
        lab.open()  # here, not only in the lifespan: a refusal is one sentence and an exit, not a stack
    except RunsFolderBusy as e:  # a second server on one runs folder would start the same queued runs twice
        sys.exit(f"kdapp did not start: {e}")
    demo.launch(**LAUNCH)  # honours GRADIO_SERVER_NAME / GRADIO_SERVER_PORT
