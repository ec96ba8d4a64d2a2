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

from kdapp.config import DEFAULTS
from kdapp.evaluation.inference import MAX_SIDE, BlankCanvas, CanvasError, unreadable
from kdapp.lab import continual as lab_continual, facade as lab_lib
from kdapp.lab.folder_lock import RunsFolderBusy
from kdapp.ui import (continual as continual_ui, controls as controls_ui, drawing, i18n, lessons_tab, mcp_tools, plots,
                      reports, run_report, runs_tab)
from kdapp.ui.controls import CHOICE_CONTROLS, INFO_SLOTS, choices_for, info_for, settings_from
from kdapp.ui.i18n import _
from kdapp.ui.sentences import known

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

# The page's static words, translated in the browser from its language (kdapp/ui/locales; ?lang= wins).
I18N = gr.I18n(**i18n.CATALOGS)
ui = SimpleNamespace()  # every component, filled in by the layout below; handlers return {ui.x: value}

# ---- the controls (kdapp.ui.controls: one row per control), and where each sits ----
# Rows on the main panel, then rows in the folded "Training" and "More methods" accordions.
MAIN_ROWS = [["teacher", "student", "temperature", "alpha"]]  # one strip beside Start: the first screen
TRAIN_ROWS = [["epochs", "train_fraction"], ["lr", "batch_size"]]  # folded: the defaults are the lesson's recipe
MORE_ROWS = [["loss"], ["omit_class"], ["self_distill", "generations"], ["feature_loss"], ["feature_weight"],
             ["second_teacher"], ["alpha_schedule", "alpha_end"], ["temperature_schedule", "temperature_end"],
             ["joint_epochs"], ["collapse_weight", "adversarial_weight"], ["clip_grad_norm"], ["augment"], ["consistent"],
             ["quantize"], ["data"], ["device"]]
CONTROLS = controls_ui.Controls(lambda: lab, I18N)  # name -> component, filled by the layout
control_values, inputs_for = CONTROLS.values_of, CONTROLS.inputs_for  # the handlers' and the tests' names
CONTINUAL_CHOICES = {}  # the Continual tab's choice controls by name: on_load sends their words


# ---- handlers: thin, by name ----
# Every handler that writes words takes the page's language (ui.lang, set by on_load) and speaks it:
# `with i18n.speaking(lang)`. The lab's own sentences are English; `known` translates those it knows.
def start(data):
    """Queue a run; the Distill tab then follows it, and the notice lasts until it ends."""
    with i18n.speaking(data.get(ui.lang)):
        owner = data[ui.owner]
        if not owner:  # every run has an owner who can stop it, and counts against their allowance
            return {ui.notice: reports.notice(_("notice.loading"), ok=False)}
        record, message = lab.start(settings_from(control_values(data)), owner)
        if record is None:
            return {ui.notice: reports.notice(known(message), ok=False)}
        return {ui.notice: reports.notice(known(message)), ui.view: record["id"], ui.notice_for: record["id"]}


def run_again(owner, view, lang=None):
    """Queue the settings of the run on show (a permalink's too) again, as a new run of this visitor's."""
    with i18n.speaking(lang):
        if not owner:
            return {ui.notice: reports.notice(_("notice.loading"), ok=False)}
        run = shown_run(view, lab.active(owner), lab.latest_finished())
        if run is None:
            return {ui.notice: reports.notice(_("notice.nothing_to_run_again"), ok=False)}
        record, message = lab.run_again(run["id"], owner)
        if record is None:
            return {ui.notice: reports.notice(known(message), ok=False)}
        return {ui.notice: reports.notice(known(message)), ui.view: record["id"], ui.notice_for: record["id"]}


def settings_link(data):
    with i18n.speaking(data.get(ui.lang)):
        try:
            url = lab.settings_url(settings_from(control_values(data)))
        except ValueError as e:
            return {ui.notice: reports.notice(_("notice.no_link").format(reason=e), ok=False)}
        return {ui.notice: reports.link(_("notice.settings_link"), url)}


def sweep(name):
    def handler(data):
        with i18n.speaking(data.get(ui.lang)):
            if not data[ui.owner]:
                return {ui.notice: reports.notice(_("notice.loading"), ok=False)}
            seeds = lab_lib.SEEDS if data.get(ui.sweep_seeds) else None
            records, message = lab.sweep(settings_from(control_values(data)), data[ui.owner], name, seeds)
            return {ui.notice: reports.notice(known(message), ok=bool(records))}
    return handler


MISSING_THREE_SETTINGS = {"omit_class": "3", "temperature": 20.0, "alpha": 0.9, "augment": False,
                          "train_fraction": 1.0, "epochs": 15}


def missing_three(lang=None):
    """The missing-3 preset: its settings and its explanation."""
    with i18n.speaking(lang):
        text = _("notice.missing_three")
    return {ui.notice: reports.notice(text),
            **{CONTROLS[name]: value for name, value in MISSING_THREE_SETTINGS.items()}}


def self_controls(teacher):
    """Teacher = self's own settings are live only when the teacher is self."""
    mine = teacher == lab_lib.SELF
    return {CONTROLS["self_distill"]: gr.update(interactive=mine), CONTROLS["generations"]: gr.update(interactive=mine)}


def stop(owner, view, lang=None):
    """Stop the visitor's run on show if it is theirs, else their oldest queued or running run."""
    with i18n.speaking(lang):
        mine = [r for r in lab.active(owner) if r["mine"]]
        target = next((r["id"] for r in mine if r["id"] == view), mine[0]["id"] if mine else None)
        if target is None:
            return {ui.notice: reports.notice(_("notice.no_active_run"))}
        return {ui.notice: reports.notice(known(lab.cancel(target, owner))), ui.view: target}  # keep showing it


def shown_run(view, active, newest):
    """The run the Distill tab shows: the one a link or the Runs tab chose, else the visitor's own
    active run, else the one training now, else the newest finished run."""
    if view:  # queued and running runs come with their place in the queue and ETA
        return next((r for r in active if r["id"] == view), None) or lab.run(view)
    mine = [r for r in active if r["mine"]]
    running = [r for r in active if r["position"] == 0]
    return (mine or running or [newest])[0]


def refresh(last, view, owner, models_value, follow, notice_for, lang=None):
    """Timer tick: send only what changed (gr.Plot rebuilds its figure on every new value)."""
    key = (lab.version(), view, owner, models_value, follow, notice_for, lang)
    if last and last["key"] == key:
        return gr.skip()  # nothing changed; an empty dict is not read as "no outputs" by gradio 6.31
    with i18n.speaking(lang):
        return refreshed(last, view, owner, models_value, follow, notice_for, key)


def refreshed(last, view, owner, models_value, follow, notice_for, key):
    active, newest = lab.active(owner), lab.latest_finished()
    run = shown_run(view, active, newest)
    mine = bool(run) and lab.owns(run["id"], owner)
    table = lab.comparison(run["id"]) if run and run["state"] == "finished" else None
    out = {ui.status: reports.status(run, mine, newest if run and newest and run["id"] != newest["id"] else None),
           ui.queue: reports.queue(active), ui.loss_plot: plots.loss_figure(run),
           ui.acc_plot: plots.accuracy_figure(run), ui.table: run_report.comparison_table(table),
           ui.stop: gr.update(interactive=any(r["mine"] for r in active)),
           ui.link: reports.run_link(run["id"]) if run else ""}
    # The drawing follows the visitor's own newest finished run until they pick models themselves.
    choices = last["choices"] if last else None
    if follow is not None:  # the page has loaded: on_load set the drawing's models first
        wanted = lab.default_models(owner) if follow else models_value
        choices = translated(lab.drawing_choices(include=wanted))
        if wanted not in [value for _, value in choices]:  # pruned meanwhile: a value outside the
            wanted = lab_lib.SHIPPED                          # choices would make every tick fail
        if wanted != models_value or not last or last["choices"] != choices:
            out.update({ui.models: gr.update(choices=choices, value=wanted), ui.drawing_models: wanted})
    # A "started"/"queued" notice is about one run: clear it once that run has ended.
    if notice_for and not any(r["id"] == notice_for for r in active):
        out.update({ui.notice: "", ui.notice_for: None})
    # The fidelity panel changes only when another run is shown or the shown one finishes.
    fidelity_key = (run["id"], run["state"], key[-1]) if run else key[-1]
    if not (last and last.get("fidelity") == fidelity_key):
        out.update(fidelity_outputs(run))
    out[ui.last] = {"key": key, "choices": choices, "fidelity": fidelity_key}
    return out


def translated(choices):
    """The lab's (label, value) choices with the labels it makes in the language spoken now."""
    return [(known(label), value) for label, value in choices]


def on_load(owner, request: gr.Request):
    """A new page: give the browser an owner token once, decide the page's language (?lang=, else
    the browser's), and apply the link's parameters."""
    params = dict(request.query_params) if request else {}
    lang = i18n.language(params.pop("lang", None), request.headers.get("accept-language") if request else None)
    with i18n.speaking(lang):
        return loaded(owner, params) | {ui.lang: lang}


def loaded(owner, params):
    owner = owner or secrets.token_urlsafe(16)
    settings, ignored = lab.settings_from_url(params)
    run_id = params.get("run")
    linked = lab.run(run_id) if run_id is not None else None
    out = {ui.owner: owner, ui.view: None,
           ui.notice: reports.url_notice(run_id if run_id is not None and linked is None else None, ignored)}
    if lab_continual.is_continual(linked):  # a continual run's link opens the Continual tab on it
        out.update({ui.continual_shown: linked["id"], ui.tabs: gr.Tabs(selected=continual_ui.TAB_ID)})
        linked = None
    view = out[ui.view] = linked["id"] if linked else None
    # The choices and the info lines with slots, in the page's language; the link's values with them.
    for name in CHOICE_CONTROLS:
        out[CONTROLS[name]] = gr.update(choices=choices_for(name, lab), **({"info": info_for(name)} if name in INFO_SLOTS
                                                                       else {}))
    out.update({CONTINUAL_CHOICES[name]: gr.update(choices=words)
                for name, words in continual_ui.choices().items()})
    for name, value in settings.items():
        if name in CONTROLS:
            out[CONTROLS[name]] = dict(out.get(CONTROLS[name], gr.update()), value=value)
    if "alpha_end" in settings:  # a linked schedule is switched on, not just its end value
        out[CONTROLS["alpha_schedule"]] = True
    linked = bool(linked) and linked["has_checkpoints"]  # a linked run's models stay put
    models = view if linked else lab.default_models(owner)
    out.update({ui.models: gr.update(choices=translated(lab.drawing_choices(include=models)), value=models),
                ui.drawing_models: models, ui.follow: not linked})
    out.update({markdown: reports.reproduction_markdown(REPRODUCTIONS[elem_id])
                for elem_id, markdown in REPRODUCTION_VIEWS.items()})
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
        return clear() | {ui.draw_note: reports.hint(_("notice.unreadable").format(reason=e))}
    teacher, student, baseline = (reports.top_labels(result[role]["p1"]) if role in result else None
                                  for role in ("teacher", "student", "baseline"))
    return {ui.teacher_pred: teacher, ui.student_pred: student, ui.baseline_pred: baseline,
            ui.dist_plot: plots.distribution_figure(result), ui.digit28: result["image"],
            ui.draw_note: reports.prediction_note(result)}


def clear():
    """/predict's outputs for a blank canvas."""
    return {ui.teacher_pred: None, ui.student_pred: None, ui.baseline_pred: None,
            ui.dist_plot: plots.distribution_figure(None), ui.digit28: None,
            ui.draw_note: reports.hint(_("draw.hint"))}


# ---- what a finished run's student learned ----


def confusion_plot(role):
    return getattr(ui, f"confusion_{role}")


def confusion_outputs(fidelity):
    """One confusion matrix per model the run has (none yet: the first plot says what will come)."""
    roles = [r for r in plots.CONFUSION_ROLES if fidelity and r in fidelity["confusion"]] or plots.CONFUSION_ROLES[:1]
    return {confusion_plot(role): gr.update(value=plots.confusion_figure(fidelity, role), visible=role in roles)
            for role in plots.CONFUSION_ROLES}


def fidelity_outputs(run):
    """The fidelity panel for the run on show: markdown, confusions, both galleries, the example
    chart, and the id whose galleries are shown (for clicks)."""
    fidelity = lab.fidelity(run["id"]) if run and run["state"] == "finished" else None
    text = run_report.fidelity_markdown(fidelity) if fidelity else reports.hint(_("fidelity.old")) \
        if run and run["state"] == "finished" else reports.hint(_("fidelity.wait"))
    return {ui.fidelity_md: text, **confusion_outputs(fidelity),
            ui.fixed_gallery: lab.gallery(fidelity, "fixed"), ui.broken_gallery: lab.gallery(fidelity, "broken"),
            ui.example_plot: plots.example_figure(None, None, None), ui.fidelity_shown: run["id"] if fidelity else None}


def show_example(kind):
    def handler(shown, evt: gr.SelectData, lang=None):
        with i18n.speaking(lang):
            return plots.example_figure(lab.fidelity(shown), kind, evt.index)
    return handler


# ---- the Reproduction tab: the results files, in the page's language ----
REPRODUCTION_VIEWS = {}  # elem_id -> the Markdown that shows a results file, filled in by the layout
REPRODUCTIONS = {"reproduce-mnist": reports.RESULTS_MNIST_PATH, "reproduce-sample": reports.RESULTS_PATH,
                 "methods-mnist": reports.METHODS_PATHS["mnist"], "methods-sample": reports.METHODS_PATHS["sample"]}


# ---- the Runs tab (kdapp.ui.runs_tab builds it): opening a run moves the page ----
def open_run(selected):
    first = (selected or [None])[0]
    if lab_continual.is_continual(lab.run(first)):
        return {ui.continual_shown: first, ui.tabs: gr.Tabs(selected=continual_ui.TAB_ID)}
    return {ui.view: first, ui.tabs: gr.Tabs(selected="distill")}


def api_runs() -> list[dict]:
    """Every run as JSON: id, state, config, metrics, created time (owners are never included)."""
    return [{k: r[k] for k in ("id", "state", "config", "metrics", "created", "started", "ended", "data", "device",
                               "resumed_from_epoch")} for r in lab.runs()]


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
    gr.Markdown(I18N("intro"))
    ui.lang = gr.State(i18n.LANGUAGES[0])  # the page's language ("en", "zh"): on_load decides it
    ui.owner = OwnerToken(None, storage_key="kdapp-owner")
    ui.view = gr.State(None)         # run id chosen by Start, a link or the Runs tab; None = follow the lab
    ui.notice_for = gr.State(None)   # the run the notice speaks of
    ui.follow = gr.State(None)       # the drawing follows the visitor's newest run until they pick models;
                                     # None until on_load has run, so a first tick cannot undo a link
    ui.last = gr.State(None)
    # The drawing's models as session state, not an API input: /predict keeps (sketch, T).
    ui.drawing_models = gr.State(lab_lib.SHIPPED)
    with gr.Tabs() as ui.tabs:
        with gr.Tab(I18N("tab.distill"), id="distill"):
            # The first screen (1400x1000): the pair, T and α with Start in one strip, the rest folded,
            # then the drawing, which works before any training. The run's curves come after it.
            with gr.Row(elem_id="quick-controls", equal_height=False):
                CONTROLS.rows(MAIN_ROWS, row=False)
                with gr.Column(min_width=170, scale=1):
                    ui.start = gr.Button(I18N("button.start"), variant="primary", elem_id="start")
                    ui.stop = gr.Button(I18N("button.stop"), variant="stop", elem_id="stop", interactive=False)
            with gr.Row(equal_height=False):
                with gr.Column(scale=1, min_width=300):
                    with gr.Accordion(I18N("accordion.training"), open=False,
                                      elem_id="training-settings"):
                        CONTROLS.rows(TRAIN_ROWS)
                with gr.Column(scale=1, min_width=300):
                    with gr.Accordion(I18N("accordion.more"), open=False):
                        CONTROLS.rows(MORE_ROWS)
            with gr.Row(elem_id="sweeps"):
                ui.sweep_t = gr.Button(I18N("button.sweep_t"), size="sm", elem_id="sweep-t", min_width=150)
                ui.sweep_alpha = gr.Button(I18N("button.sweep_alpha"), size="sm", elem_id="sweep-alpha", min_width=150)
                ui.sweep_seeds = gr.Checkbox(False, label=I18N("control.sweep_seeds"),
                                             elem_id="sweep-seeds", min_width=220)
                ui.missing_three = gr.Button(I18N("button.missing_three"), size="sm", elem_id="preset-missing-3",
                                             min_width=150)
                ui.settings_link = gr.Button(I18N("button.settings_link"), size="sm", elem_id="settings-link",
                                             min_width=150)
            ui.notice = gr.Markdown(elem_id="notice")
            ui.queue = gr.Markdown(elem_id="queue")
            with gr.Row(equal_height=False):
                with gr.Column(scale=5):
                    ui.status = gr.Markdown(I18N("status.idle"), elem_id="status")
                    ui.link = gr.Markdown(elem_id="status-link")
                ui.run_again = gr.Button(I18N("button.run_again"), size="sm", elem_id="run-again",
                                         scale=0, min_width=260)
            with gr.Row(equal_height=True):  # side by side at 1400 px, so the canvas is on the first screen
                with gr.Column(min_width=300):
                    gr.Markdown(I18N("heading.draw"))
                with gr.Column(min_width=300):
                    # Only the shipped models at build time; on_load offers each visitor the finished runs.
                    ui.models = gr.Dropdown([(_("choice.models.shipped"), lab_lib.SHIPPED)], value=lab_lib.SHIPPED,
                                            label=I18N("control.drawing_models"),
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
            gr.Markdown(I18N("heading.run"))
            with gr.Row():
                ui.loss_plot = gr.Plot(plots.loss_figure(None), elem_id="loss-plot", show_label=False)
                ui.acc_plot = gr.Plot(plots.accuracy_figure(None), elem_id="acc-plot", show_label=False)
            ui.table = gr.Markdown(run_report.comparison_table(None), elem_id="comparison")
            gr.Markdown(I18N("heading.learned"))
            ui.fidelity_md = gr.Markdown(reports.hint(_("fidelity.wait")), elem_id="fidelity")
            gr.Markdown(I18N("plot.confusion.title"), elem_id="confusion-caption")
            with gr.Row(elem_id="confusion-plot"):  # one per model; min_width stacks them on a phone
                for role in plots.CONFUSION_ROLES:
                    setattr(ui, f"confusion_{role}", gr.Plot(plots.confusion_figure(None, role), show_label=False,
                                                             elem_id=f"confusion-{role}", min_width=300,
                                                             visible=role == plots.CONFUSION_ROLES[0]))
            with gr.Row():
                ui.fixed_gallery = gr.Gallery(label=I18N("gallery.fixed"), elem_id="fixed-gallery",
                                              columns=6, height=260, allow_preview=False, object_fit="contain")
                ui.broken_gallery = gr.Gallery(label=I18N("gallery.broken"), elem_id="broken-gallery",
                                               columns=6, height=260, allow_preview=False, object_fit="contain")
            ui.example_plot = gr.Plot(plots.example_figure(None, None, None), elem_id="example-plot",
                                      show_label=False)
            ui.fidelity_shown = gr.State(None)  # the run whose galleries are on show
        with gr.Tab(I18N("tab.lessons"), id="lessons-tab", elem_id="lessons"):
            ui.lessons = lessons_tab.LessonsTab(lambda: lab, I18N)
        with gr.Tab(I18N("tab.runs"), id="runs-tab"):
            ui.runs = runs_tab.RunsTab(lambda: lab, I18N)
        with gr.Tab(I18N("tab.continual"), id="continual-tab", elem_id="continual-tab"):  # issue 26: kdapp.ui.continual builds it
            continual_tab = continual_ui.build(lambda: lab, ui.owner, ui.lang, I18N)
            ui.continual_shown = continual_tab.shown  # the run the tab shows
            CONTINUAL_CHOICES.update(continual_tab.choice_controls)
        with gr.Tab(I18N("tab.reproduction"), id="reproduction-tab", elem_id="reproduction-tab"):
            # The results files in the page's language: on_load sends them again, reproduce.zh.md on a
            # Chinese page (reports.reproduction_markdown), English here and wherever a language's file is missing.
            def reproduction(elem_id):
                REPRODUCTION_VIEWS[elem_id] = gr.Markdown(reports.reproduction_markdown(REPRODUCTIONS[elem_id]),
                                                        elem_id=elem_id)
            reproduction("reproduce-mnist")
            with gr.Accordion(I18N("repro.accordion.sample"), open=False):
                reproduction("reproduce-sample")
            with gr.Accordion(I18N("repro.accordion.methods"), open=False):
                reproduction("methods-mnist")
                reproduction("methods-sample")

    controls = set(CONTROLS.values())
    private = dict(api_visibility="private", show_progress="hidden")
    ui.start.click(start, {ui.owner, ui.lang, *controls}, [ui.notice, ui.view, ui.notice_for], concurrency_limit=None,
                   **private)
    ui.sweep_t.click(sweep("temperature"), {ui.owner, ui.lang, ui.sweep_seeds, *controls}, ui.notice,
                     concurrency_limit=None, **private)
    ui.sweep_alpha.click(sweep("alpha"), {ui.owner, ui.lang, ui.sweep_seeds, *controls}, ui.notice,
                         concurrency_limit=None, **private)
    ui.stop.click(stop, [ui.owner, ui.view, ui.lang], [ui.notice, ui.view], concurrency_limit=None, **private)
    ui.run_again.click(run_again, [ui.owner, ui.view, ui.lang], [ui.notice, ui.view, ui.notice_for],
                       concurrency_limit=None, **private)
    ui.settings_link.click(settings_link, {ui.lang, *controls}, ui.notice, **private)
    ui.missing_three.click(missing_three, ui.lang, [ui.notice, *(CONTROLS[n] for n in MISSING_THREE_SETTINGS)],
                           **private)
    ui.lessons.wire(ui.owner, ui.lang, controls, lambda data: settings_from(control_values(data)))
    # The born-again / deep-supervision choice means something only with teacher = self: greyed out otherwise,
    # so an ordinary run does not look like a born-again one.
    CONTROLS["teacher"].change(self_controls, CONTROLS["teacher"], [CONTROLS["self_distill"], CONTROLS["generations"]],
                               **private)
    timer = gr.Timer(1.0)
    timer.tick(refresh, [ui.last, ui.view, ui.owner, ui.drawing_models, ui.follow, ui.notice_for, ui.lang],
               [ui.status, ui.queue, ui.loss_plot, ui.acc_plot, ui.table, ui.stop, ui.models, ui.drawing_models,
                ui.link, ui.notice, ui.notice_for, ui.fidelity_md, *map(confusion_plot, plots.CONFUSION_ROLES),
                ui.fixed_gallery, ui.broken_gallery, ui.example_plot, ui.fidelity_shown, ui.last],
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
    ui.fixed_gallery.select(show_example("fixed"), [ui.fidelity_shown, ui.lang], ui.example_plot, **private)
    ui.broken_gallery.select(show_example("broken"), [ui.fidelity_shown, ui.lang], ui.example_plot, **private)
    loaded_page = demo.load(on_load, [ui.owner], [ui.owner, ui.view, ui.notice, ui.models, ui.drawing_models,
                                                  ui.follow, ui.lang, ui.tabs, ui.continual_shown,
                                                  *REPRODUCTION_VIEWS.values(), *CONTROLS.values(),
                                                  *CONTINUAL_CHOICES.values()], **private)

    ui.runs.wire(ui.lang, loaded_page)
    ui.runs.open_run.click(open_run, ui.runs.selected, [ui.view, ui.tabs, ui.continual_shown], **private)
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
LAUNCH = dict(css_paths=[drawing.STATIC_DIR / "page.css"], max_file_size="5mb", show_error=False, footer_links=["api", "gradio", "settings"],
              run_history=False, mcp_server=True, allowed_paths=[str(lab.runs_path)],
              # the middleware serves the drawing panel's files: its JS, the in-browser runtime, the models' ONNX
              i18n=I18N,
              app_kwargs={"lifespan": lab_lifespan,
                          "middleware": [Middleware(drawing.DrawingFiles, get_lab=lambda: lab),
                                         Middleware(i18n.LanguageScript, src=drawing.LANGUAGE_SCRIPT)]})

if __name__ == "__main__":
    try:
        lab.open()  # here, not only in the lifespan: a refusal is one sentence and an exit, not a stack
    except RunsFolderBusy as e:  # a second server on one runs folder would start the same queued runs twice
        sys.exit(f"kdapp did not start: {e}")
    demo.launch(**LAUNCH)  # honours GRADIO_SERVER_NAME / GRADIO_SERVER_PORT
