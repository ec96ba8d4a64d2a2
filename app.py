"""kdapp: a knowledge-distillation lab. UI only; every computation comes from kdapp.lab.facade."""
import logging
import os
import secrets

import gradio as gr
from PIL import Image
from starlette.middleware import Middleware

from kdapp.lab import facade as lab_lib
from kdapp.ui import drawing, plots, reports
from kdapp.config import DEFAULTS, RANGES
from kdapp.evaluation.inference import MAX_SIDE, BlankCanvas, CanvasError
from kdapp.models import cnn_names

# Decompression bombs: a tiny PNG can claim 20000x20000 pixels. Refuse past ~2x our largest canvas.
Image.MAX_IMAGE_PIXELS = MAX_SIDE * MAX_SIDE

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
# One torch thread here: batch-1 predictions gain nothing from more, and training runs in its
# own worker processes with all the cores (measured under load: no loss, slightly more req/s).
lab_lib.configure_threads(int(os.environ.get("KDAPP_THREADS", lab_lib.SERVER_THREADS)))
lab = lab_lib.Lab(runs_dir=os.environ.get("KDAPP_RUNS_DIR", "runs"), data_dir=os.environ.get("KDAPP_DATA_DIR", "data"),
                  workers=int(os.environ.get("KDAPP_WORKERS", 1)),
                  keep_checkpoints=int(os.environ.get("KDAPP_KEEP_CHECKPOINTS", 100)),
                  drawing_dir=os.environ.get("KDAPP_DRAWING_DIR"))  # a `distill --out` folder, e.g. from torchrun

DRAW_HINT = reports.hint(drawing.HINT)
INTRO = """# Knowledge distillation lab
A big **teacher** network teaches a small **student** with its *soft* predictions: its full
softmax at a raised temperature **T**, not just the right label. Pick the two networks, set
**T** and **α** (the weight of the teacher's soft targets against the true labels), and start a
run. A **baseline** student, same network, same start and same batches but trained on labels
alone, runs beside it, so the gain from distillation is measured, not assumed.
"""


LOSS_CHOICES = [("KD (Hinton 2015)", "kd"), ("DKD (Zhao 2022)", "dkd"), ("DIST (Huang 2022)", "dist"),
                ("LS-KD (Sun 2024)", "lskd")]


def slider(name, label, info=None, high=None):
    """A slider whose range, step and default come from kdapp.config: the one home of settings."""
    r = RANGES[name]
    return gr.Slider(r.low, high or lab.limit(name), value=getattr(DEFAULTS, name), step=r.step, label=label,
                     info=info, elem_id=f"control-{name}")


# ---- handlers: thin, by name ----
def settings_from(values):
    """The controls' values (in CONTROLS order) -> loose settings for the lab. The UI's own
    conventions live here: an unticked schedule, a clip of 0 and no second teacher mean "off"."""
    v = dict(zip(CONTROLS, values))
    return dict(teacher=v["teacher"], student=v["student"], temperature=v["temperature"], alpha=v["alpha"],
                epochs=v["epochs"], lr=v["lr"], batch_size=v["batch_size"], train_fraction=v["train_fraction"],
                loss=v["loss"], feature_loss=v["feature_loss"], feature_weight=v["feature_weight"],
                extra_teachers=v["second_teacher"] or "", alpha_end=v["alpha_end"] if v["alpha_schedule"] else None,
                clip_grad_norm=None if v["clip_grad_norm"] in (0, None, "") else v["clip_grad_norm"],
                augment=bool(v["augment"]), consistent=bool(v["consistent"]), data=v["data"], device=v["device"],
                omit_class=None if v["omit_class"] in ("", None) else v["omit_class"], self_distill=v["self_distill"],
                generations=v["generations"])


def inputs_for(**settings):
    """The controls' values in CONTROLS order, defaults unless named: for tests and scripts that
    call the start event as the page does."""
    unknown = set(settings) - set(CONTROLS)
    if unknown:
        raise ValueError(f"no controls named {', '.join(sorted(unknown))}")
    return [settings.get(name, control.value) for name, control in CONTROLS.items()]


NO_OWNER = "The page is still loading; try again in a moment."


def start(owner, *values):
    """Queue a run; the Distill tab then follows it, and the notice lasts until it ends."""
    if not owner:  # every run has an owner who can stop it, and counts against their allowance
        return reports.notice(NO_OWNER, ok=False), gr.skip(), None
    record, message = lab.start(settings_from(values), owner)
    if record is None:
        return reports.notice(message, ok=False), gr.skip(), None
    return reports.notice(message), record["id"], record["id"]


def settings_link(*values):
    try:
        url = lab.settings_url(settings_from(values))
    except ValueError as e:
        return reports.notice(f"No link: {e}", ok=False)
    return reports.link("Link to these settings", url)


def sweep(name):
    def handler(owner, *values):
        if not owner:
            return reports.notice(NO_OWNER, ok=False)
        records, message = lab.sweep(settings_from(values), owner, name)
        return reports.notice(message, ok=bool(records))
    return handler


MISSING_THREE = (
    "**Hinton's missing 3.** Both students train on every digit except the 3s, so neither ever sees one. "
    "The baseline cannot answer 3; the KD student can, because the teacher's soft targets at a high T say how "
    "3-like each 5 and 8 is. After the run, the status line shows how many test 3s each student reads, before and "
    "after raising the 3's output bias until it is answered as often as 3s occur (the paper's correction). Set: "
    "leave out 3, T=20, α=0.9, no shifts (Hinton's transfer set is the digits as they are; shifted, the KD student "
    "read 55% of 3s instead of 83%). On the sample, 15 epochs: KD student 83% of 3s (96% after the correction), "
    "baseline 0% (36%). Press Start.")


def missing_three():
    """The missing-3 preset: its settings and its explanation."""
    return reports.notice(MISSING_THREE), "3", 20.0, 0.9, False


def stop(owner, view):
    """Stop the visitor's run on show if it is theirs, else their oldest queued or running run."""
    mine = [r for r in lab.active(owner) if r["mine"]]
    target = next((r["id"] for r in mine if r["id"] == view), mine[0]["id"] if mine else None)
    if target is None:
        return reports.notice("You have no run queued or running."), gr.skip()
    return reports.notice(lab.cancel(target, owner)), target  # keep showing it, stopped


def shown_run(view, active, newest):
    """The run the Distill tab shows: the one a link or the Runs tab chose, else the visitor's own
    active run, else the one training now, else the newest finished run."""
    if view:  # queued and running runs come with their place in the queue and ETA
        return next((r for r in active if r["id"] == view), None) or lab.run(view)
    mine = [r for r in active if r["mine"]]
    running = [r for r in active if r["position"] == 0]
    return (mine or running or [newest])[0]


def refresh(last, view, owner, models_value, follow, notice_for):
    """Timer tick: redraw only what changed (gr.Plot rebuilds its figure on every new value)."""
    key = (lab.version(), view, owner, models_value, follow, notice_for)
    if last and last["key"] == key:
        return [gr.skip()] * (11 + FIDELITY_OUTPUTS) + [last]
    active, newest = lab.active(owner), lab.latest_finished()
    run = shown_run(view, active, newest)
    mine = bool(run) and lab.owns(run["id"], owner)
    table = lab.comparison(run["id"]) if run and run["state"] == "finished" else None
    # The drawing follows the visitor's own newest finished run until they pick models themselves.
    models, chosen, choices = gr.skip(), gr.skip(), last["choices"] if last else None
    if follow is not None:  # the page has loaded: on_load set the drawing's models first
        wanted = lab.default_models(owner) if follow else models_value
        choices = lab.drawing_choices(include=wanted)
        if wanted not in [value for _, value in choices]:  # pruned meanwhile: a value outside the
            wanted = lab_lib.SHIPPED                          # choices would make every tick fail
        if wanted != models_value or not last or last["choices"] != choices:
            models, chosen = gr.update(choices=choices, value=wanted), wanted
    # A "started"/"queued" notice is about one run: clear it once that run has ended.
    notice, notice_for = gr.skip(), notice_for
    if notice_for and not any(r["id"] == notice_for for r in active):
        notice, notice_for = "", None
    # The fidelity panel changes only when another run is shown or the shown one finishes.
    fidelity_key = (run["id"], run["state"]) if run else None
    fidelity = [gr.skip()] * FIDELITY_OUTPUTS if last and last.get("fidelity") == fidelity_key else fidelity_outputs(run)
    return (reports.status(run, mine, newest if run and newest and run["id"] != newest["id"] else None),
            reports.queue(active), plots.loss_figure(run), plots.accuracy_figure(run), reports.comparison_table(table),
            gr.update(interactive=any(r["mine"] for r in active)), models, chosen,
            reports.run_link(run["id"]) if run else "", notice, notice_for, *fidelity,
            {"key": key, "choices": choices, "fidelity": fidelity_key})


FIDELITY_OUTPUTS = 6  # fidelity_outputs()


def on_load(owner, request: gr.Request):
    """A new page: give the browser an owner token once, and apply the link's parameters."""
    owner = owner or secrets.token_urlsafe(16)
    params = dict(request.query_params) if request else {}
    settings, ignored = lab.settings_from_url(params)
    run_id = params.get("run")
    linked = lab.run(run_id) if run_id is not None else None
    view = linked["id"] if linked else None
    notice = reports.url_notice(run_id if run_id is not None and view is None else None, ignored)
    updates = [gr.update(value=settings[name]) if name in settings else gr.skip() for name in CONTROLS]
    if "alpha_end" in settings:  # a linked schedule is switched on, not just its end value
        updates[list(CONTROLS).index("alpha_schedule")] = gr.update(value=True)
    linked = bool(linked) and linked["has_checkpoints"]  # a linked run's models stay put
    models = view if linked else lab.default_models(owner)
    return [owner, view, notice, gr.update(choices=lab.drawing_choices(include=models), value=models), models,
            not linked, *updates]


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
            return {"unreadable": f"{type(e).__name__}: {e}"}


def predict(sketch, temperature=DEFAULTS.temperature, models=lab_lib.SHIPPED):
    """/predict, for scripts: teacher, KD student and baseline on a drawing: top-3 labels,
    softmaxes at T=1 and T, the 28x28 input. The first two outputs stay the teacher and the KD
    student. The page computes the same in the browser (kdapp.ui.drawing)."""
    try:
        if isinstance(sketch, dict) and "unreadable" in sketch:
            raise CanvasError(f"{sketch['unreadable']}; send a PNG or JPEG of at most "
                              f"{MAX_SIDE}x{MAX_SIDE} pixels")
        result = lab.predict(sketch, temperature, models or lab_lib.SHIPPED)
    except BlankCanvas:
        return clear()
    except CanvasError as e:
        return None, None, None, plots.distribution_figure(None), None, reports.hint(f"Could not read that image: {e}")
    teacher, student, baseline = (reports.top_labels(result[role]["p1"]) if role in result else None
                                  for role in ("teacher", "student", "baseline"))
    return (teacher, student, baseline,
            plots.distribution_figure(result), result["image"], reports.prediction_note(result))


def clear():
    """/predict's outputs for a blank canvas."""
    return None, None, None, plots.distribution_figure(None), None, DRAW_HINT


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
    return (text, plots.confusion_figure(fidelity), lab.gallery(fidelity, "fixed"), lab.gallery(fidelity, "broken"),
            plots.example_figure(None, None, None), run["id"] if fidelity else None)


def show_example(kind):
    def handler(shown, evt: gr.SelectData):
        return plots.example_figure(lab.fidelity(shown), kind, evt.index)
    return handler


# ---- the Runs tab ----
def runs_table(pair, chosen):
    teacher, student = (pair.split(" → ") + [None])[:2] if pair and pair != "all" else (None, None)
    records = lab.runs(teacher, student)
    pairs = ["all"] + sorted({f"{r['config']['teacher']} → {r['config']['student']}" for r in lab.runs()})
    ids = [r["id"] for r in records]
    return (reports.runs_rows(records), gr.update(choices=pairs),
            gr.update(choices=ids, value=[i for i in chosen or [] if i in ids]))


def compare(selected, pair):
    records = [r for r in (lab.run(i) for i in (selected or [])[:4]) if r]
    group = [r for r in lab.runs() if r["state"] == "finished"]
    if records:
        c = records[0]["config"]
        group = [r for r in group if r["config"]["teacher"] == c["teacher"] and r["config"]["student"] == c["student"]
                 and r["config"].get("self_distill", "born-again") == c.get("self_distill", "born-again")
                 and r["config"]["data"] == c["data"] and r["config"]["train_fraction"] == c["train_fraction"]]
    return (plots.compare_figure(records), reports.config_diff(records), plots.gain_map(group),
            reports.run_link(records[0]["id"]) if records else "")


def downloads(selected):
    files, notes = [], []
    for run_id in (selected or [])[:1]:
        for kind in ("pt", "onnx"):
            try:
                files.append(str(lab.export(run_id, kind)))
            except (LookupError, OSError, RuntimeError) as e:
                notes.append(str(e))
    return files or None, reports.notice(" ".join(notes) or ("Select a finished run first." if not files else ""))


def open_run(selected):
    return (selected or [None])[0], gr.Tabs(selected="distill")


def api_runs() -> list[dict]:
    """Every run as JSON: id, state, config, metrics, created time (owners are never included)."""
    return [{k: r[k] for k in ("id", "state", "config", "metrics", "created", "started", "ended", "data", "device")}
            for r in lab.runs()]


CSS = """
#fixed-gallery img, #broken-gallery img { image-rendering: pixelated; }
#status { min-height: 3em; }
/* break table cells between words only (Gradio's default split "architecture" mid-word) */
#comparison th, #comparison td, #queue th, #queue td { white-space: normal; word-break: normal; overflow-wrap: normal; }
#comparison { overflow-x: auto; }
@media (max-width: 700px) {
  .modebar-container { display: none !important; }  /* plotly's toolbar covers the titles on a phone */
}
.control-choice input { padding-right: 2.2em !important; text-overflow: ellipsis; }
"""
with gr.Blocks(title="kdapp: knowledge distillation lab") as demo:
    gr.Markdown(INTRO)
    # The visitor's owner token: encrypted in the browser's localStorage, so it survives reloads,
    # new tabs and server restarts (the secret is kept beside the runs); never shown to anyone.
    owner = gr.BrowserState(None, storage_key="kdapp-owner", secret=lab.browser_secret())
    view = gr.State(None)         # run id chosen by Start, a link or the Runs tab; None = follow the lab
    notice_for = gr.State(None)   # the run the notice speaks of
    follow = gr.State(None)       # the drawing follows the visitor's newest run until they pick models;
                                  # None until on_load has run, so a first tick cannot undo a link
    last = gr.State(None)
    # The drawing's models as session state, not an API input: /predict keeps (sketch, T).
    drawing_models = gr.State(lab_lib.SHIPPED)
    with gr.Tabs() as tabs:
        with gr.Tab("Distill", id="distill"):
            with gr.Row():
                with gr.Column(scale=2, min_width=320):
                    teacher_choices = lab.teacher_choices()
                    CONTROLS = {
                        "teacher": gr.Dropdown(teacher_choices, value=DEFAULTS.teacher, label="Teacher",
                                               elem_classes="control-choice"),
                        "student": gr.Dropdown(lab.student_choices(), value=DEFAULTS.student, label="Student",
                                               elem_classes="control-choice"),
                        "temperature": slider("temperature", "Temperature T",
                                              "softens the teacher's softmax; 3–5 works best on MNIST"),
                        "alpha": slider("alpha", "α: weight of the soft targets", "0 = labels only (no KD), 1 = teacher only"),
                    }
                    with gr.Row():
                        CONTROLS["epochs"] = slider("epochs", "Epochs")
                        CONTROLS["batch_size"] = slider("batch_size", "Batch size", high=512)
                    with gr.Row():
                        CONTROLS["lr"] = slider("lr", "Learning rate (Adam, cosine decay)")
                        CONTROLS["train_fraction"] = slider("train_fraction", "Train fraction",
                                                            "KD helps most with little data")
                    with gr.Accordion("More methods, data and device", open=False):
                        CONTROLS["loss"] = gr.Radio(
                            LOSS_CHOICES, value=DEFAULTS.loss, label="Logit loss (the soft term)",
                            info="KD: Hinton's KL at T. DKD: the KL split into the target class (TCKD) and the "
                                 "others (NCKD, weighted ×8): dark knowledge no longer muted by a confident "
                                 "teacher. DIST: match the ranking of classes and of examples (Pearson), not the "
                                 "probabilities. LS-KD: KD on z-scored logits, so the student matches their "
                                 "shape, not their scale.", elem_id="control-loss")
                        CONTROLS["omit_class"] = gr.Dropdown(
                            [("none", "")] + [(str(d), str(d)) for d in range(10)], value="",
                            label="Leave out a digit", elem_id="control-omit_class",
                            info="no example of it in either student's data (Hinton's missing 3)")
                        with gr.Row():
                            CONTROLS["self_distill"] = gr.Radio(
                                [("born-again generations", "born-again"), ("deep supervision", "deep")],
                                value=DEFAULTS.self_distill, label="With teacher = self", elem_id="control-self_distill",
                                info="born-again: a copy of the student trained on labels teaches the next. Deep "
                                     "supervision: heads on the student's shallower layers learn from its deepest "
                                     "layer (features, via adapters, and softmax at T); no teacher at all")
                            CONTROLS["generations"] = slider(
                                "generations", "Born-again generations", "generation k learns from generation "
                                "k−1; generation 0, labels only, is the baseline")
                        CONTROLS["feature_loss"] = gr.Radio(
                            ["none", "hint", "attention", "gram"], value=DEFAULTS.feature_loss, label="Feature loss",
                            elem_id="control-feature_loss",
                            info="hint: FitNets MSE through a learned adapter; attention: attention transfer; "
                                 "gram: match channel Gram matrices after the adapter (attention and gram: CNNs "
                                 f"only, {cnn_names()}). With a second teacher the target is the two teachers' "
                                 "features averaged.")
                        CONTROLS["feature_weight"] = slider("feature_weight", "Feature loss weight",
                                                            "also the hint's weight in deep supervision")
                        CONTROLS["second_teacher"] = gr.Dropdown(
                            [("none", "")] + [c for c in teacher_choices if c[1] != "self"], value="",
                            label="Second teacher (multi-teacher KD: probabilities averaged)")
                        with gr.Row():
                            CONTROLS["alpha_schedule"] = gr.Checkbox(False, label="Linear α schedule")
                            CONTROLS["alpha_end"] = gr.Slider(0, 1, value=0.3, step=RANGES["alpha_end"].step,
                                                              label="α at the end")
                        CONTROLS["clip_grad_norm"] = gr.Number(0, label="Gradient-norm clip (0 = off)")
                        CONTROLS["augment"] = gr.Checkbox(
                            DEFAULTS.augment, label="Shift augmentation (±2 px)",
                            info="move every training digit by up to 2 px, for both students; the soft targets "
                                 "stay the teacher's cached answers. Free, and +0.4 points on the sample.")
                        CONTROLS["consistent"] = gr.Checkbox(
                            DEFAULTS.consistent, label="Consistent teaching",
                            info="rotate, scale, slant and re-stroke every batch and ask the teacher about exactly "
                                 "those digits (Beyer et al. 2022): students that read other people's handwriting. "
                                 "The baseline gets the same batches. Slower: the teacher runs on every batch.")
                        data_choices, device_choices = lab.data_choices(), lab.device_choices()
                        CONTROLS["data"] = gr.Dropdown(data_choices, value=DEFAULTS.data, label="Data",
                                                       interactive=len(data_choices) > 1)
                        CONTROLS["device"] = gr.Dropdown(device_choices, value=device_choices[0], label="Device",
                                                         interactive=len(device_choices) > 1)
                    with gr.Row():
                        start_btn = gr.Button("Start distillation", variant="primary", elem_id="start")
                        stop_btn = gr.Button("Stop my run", variant="stop", elem_id="stop", interactive=False)
                    with gr.Row():
                        sweep_t_btn = gr.Button("Sweep T (1, 2, 4, 8, 16)", size="sm", elem_id="sweep-t")
                        sweep_a_btn = gr.Button("Sweep α (0.1 … 0.9)", size="sm", elem_id="sweep-alpha")
                    with gr.Row():
                        missing_btn = gr.Button("Preset: Hinton's missing 3", size="sm", elem_id="preset-missing-3")
                        link_btn = gr.Button("Link to these settings", size="sm", elem_id="settings-link")
                    notice = gr.Markdown(elem_id="notice")
                    queue_md = gr.Markdown(elem_id="queue")
                with gr.Column(scale=3):
                    status = gr.Markdown(reports.status(None, False), elem_id="status")
                    link_md = gr.Markdown(elem_id="status-link")
                    loss_plot = gr.Plot(plots.loss_figure(None), elem_id="loss-plot", show_label=False)
                    acc_plot = gr.Plot(plots.accuracy_figure(None), elem_id="acc-plot", show_label=False)
                    table = gr.Markdown(reports.comparison_table(None), elem_id="comparison")
            gr.Markdown("## Draw a digit and compare")
            models_dd = gr.Dropdown(lab.drawing_choices(), value=lab_lib.SHIPPED, label="Models for the drawing",
                                    elem_id="drawing-models", info="the shipped ones, or any finished run's")
            # The canvas, the three models' answers, the 28x28 input and the softmax chart: all
            # computed in the visitor's browser (kdapp/ui/drawing.py, static/drawing.js).
            drawing.panel(lambda: lab, DEFAULTS.temperature, lab_lib.SHIPPED, roles=lab.shipped_roles())
            # /predict, for scripts (gradio_client), with the same inputs and outputs as ever; hidden.
            with gr.Column(visible=False):
                sketch = Sketchpad(type="numpy", image_mode="RGBA", canvas_size=(drawing.CANVAS, drawing.CANVAS),
                                   layers=False, transforms=())
                predict_outputs = [gr.Label(num_top_classes=3), gr.Label(num_top_classes=3),
                                   gr.Label(num_top_classes=3), gr.Plot(), gr.Image(), gr.Markdown()]
            gr.Markdown("## What the student learned")
            fidelity_md = gr.Markdown(FIDELITY_WAIT, elem_id="fidelity")
            confusion_plot = gr.Plot(plots.confusion_figure(None), elem_id="confusion-plot", show_label=False)
            with gr.Row():
                fixed_gallery = gr.Gallery(label="KD right, baseline wrong (up to 32)", elem_id="fixed-gallery",
                                           columns=8, height=260, allow_preview=False, object_fit="contain")
                broken_gallery = gr.Gallery(label="Baseline right, KD wrong (up to 32)", elem_id="broken-gallery",
                                            columns=8, height=260, allow_preview=False, object_fit="contain")
            example_plot = gr.Plot(plots.example_figure(None, None, None), elem_id="example-plot", show_label=False)
            fidelity_shown = gr.State(None)  # the run whose galleries are on show
        with gr.Tab("Runs", id="runs-tab"):
            with gr.Row():
                pair_dd = gr.Dropdown(["all"], value="all", label="Teacher → student", elem_id="runs-filter")
                refresh_runs_btn = gr.Button("Refresh", size="sm")
            runs_df = gr.Dataframe(reports.runs_rows([]), elem_id="runs", interactive=False, wrap=False)
            selected = gr.Dropdown([], multiselect=True, max_choices=4, label="Select up to 4 runs to compare",
                                   elem_id="runs-select")
            with gr.Row():
                open_btn = gr.Button("Show the first in the Distill tab", size="sm")
                download_btn = gr.Button("Download the first run's student (.pt and .onnx)", size="sm")
            run_link = gr.Markdown(elem_id="run-link")
            files = gr.File(label="Student files", file_count="multiple", elem_id="downloads", height=110)
            runs_note = gr.Markdown()
            compare_plot = gr.Plot(plots.compare_figure([]), elem_id="runs-compare", show_label=False)
            diff_md = gr.Markdown(elem_id="runs-diff")
            gain_plot = gr.Plot(plots.gain_map([]), elem_id="gain-map", show_label=False)
        with gr.Tab("Reproduction"):
            gr.Markdown(reports.reproduction_markdown(reports.RESULTS_MNIST_PATH), elem_id="reproduce-mnist")
            with gr.Accordion("The same tables on the bundled 8,000 / 2,000 sample", open=False):
                gr.Markdown(reports.reproduction_markdown(), elem_id="reproduce-sample")
            with gr.Accordion("The methods since 2015, side by side (full MNIST, then the sample)", open=False):
                gr.Markdown(reports.reproduction_markdown(reports.METHODS_PATHS["mnist"]), elem_id="methods-mnist")
                gr.Markdown(reports.reproduction_markdown(reports.METHODS_PATHS["sample"]), elem_id="methods-sample")

    controls = list(CONTROLS.values())
    private = dict(api_visibility="private", show_progress="hidden")
    start_btn.click(start, [owner, *controls], [notice, view, notice_for], concurrency_limit=None, **private)
    sweep_t_btn.click(sweep("temperature"), [owner, *controls], notice, concurrency_limit=None, **private)
    sweep_a_btn.click(sweep("alpha"), [owner, *controls], notice, concurrency_limit=None, **private)
    stop_btn.click(stop, [owner, view], [notice, view], concurrency_limit=None, **private)
    link_btn.click(settings_link, controls, notice, **private)
    missing_btn.click(missing_three, None, [notice, CONTROLS["omit_class"], CONTROLS["temperature"],
                                            CONTROLS["alpha"], CONTROLS["augment"]], **private)
    timer = gr.Timer(1.0)
    timer.tick(refresh, [last, view, owner, drawing_models, follow, notice_for],
               [status, queue_md, loss_plot, acc_plot, table, stop_btn, models_dd, drawing_models, link_md, notice,
                notice_for, fidelity_md, confusion_plot, fixed_gallery, broken_gallery, example_plot, fidelity_shown,
                last],
               concurrency_limit=None, queue=False, **private)
    # /predict skips the queue (queue=False): one POST to gradio_api/run/predict, answered in its reply.
    sketch.change(predict, [sketch, CONTROLS["temperature"], drawing_models], predict_outputs, api_name="predict",
                  show_progress="hidden", queue=False)
    # The drawing's models live in session state, set in the same answer that shows them in the
    # dropdown (a link, a finished run) or by the visitor's own pick. The panel follows the
    # dropdown in the browser and reads the digit again (no server call).
    models_dd.input(lambda choice: (choice, False), models_dd, [drawing_models, follow], **private)
    models_dd.change(None, models_dd, None, js="(choice) => { window.kdappDrawing?.setModels(choice); }", **private)
    fixed_gallery.select(show_example("fixed"), fidelity_shown, example_plot, **private)
    broken_gallery.select(show_example("broken"), fidelity_shown, example_plot, **private)
    demo.load(on_load, [owner], [owner, view, notice, models_dd, drawing_models, follow, *controls], **private)

    for event in (refresh_runs_btn.click, pair_dd.input):
        event(runs_table, [pair_dd, selected], [runs_df, pair_dd, selected], **private)
    demo.load(runs_table, [pair_dd, selected], [runs_df, pair_dd, selected], **private)
    selected.change(compare, [selected, pair_dd], [compare_plot, diff_md, gain_plot, run_link], **private)
    open_btn.click(open_run, selected, [view, tabs], **private)
    download_btn.click(downloads, selected, [files, runs_note], **private)
    gr.api(api_runs, api_name="runs")

demo.queue(max_size=64, default_concurrency_limit=2)
# Tests launch with these too. show_error=False: visitors get our messages, never tracebacks.
# No "runs" footer link: it is Gradio's own /predict history, easy to mistake for the lab's runs.
LAUNCH = dict(css=CSS, max_file_size="5mb", show_error=False, footer_links=["api", "gradio", "settings"],
              run_history=False,
              allowed_paths=[str(lab.store.root / "runs")],
              # the drawing panel's files: its JS, the in-browser runtime and the models' ONNX, compressed
              app_kwargs={"middleware": [Middleware(drawing.DrawingFiles, get_lab=lambda: lab)]})

if __name__ == "__main__":
    demo.launch(**LAUNCH)  # honours GRADIO_SERVER_NAME / GRADIO_SERVER_PORT
