"""kdapp: a knowledge-distillation lab. UI only; every computation comes from kdapp.lab."""
import logging
import os

import gradio as gr
from PIL import Image

from kdapp import lab as lab_lib, plots, reports
from kdapp.inference import MAX_SIDE, BlankCanvas, CanvasError

# Decompression bombs: a tiny PNG can claim 20000x20000 pixels. Refuse past ~2x our largest canvas.
Image.MAX_IMAGE_PIXELS = MAX_SIDE * MAX_SIDE

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
# One torch thread here: batch-1 predictions gain nothing from more, and training runs in its
# own worker process with all the cores (measured under load: no loss, slightly more req/s).
lab_lib.configure_threads(int(os.environ.get("KDAPP_THREADS", lab_lib.SERVER_THREADS)))
lab = lab_lib.Lab(runs_dir=os.environ.get("KDAPP_RUNS_DIR", "runs"),
                  data_dir=os.environ.get("KDAPP_DATA_DIR", "data"))

DEFAULT = lab_lib.DEFAULT_RUN
CANVAS = 280  # px; 10x MNIST, so a stroke of ~20 px matches MNIST's pen width after scaling
INTRO = """# Knowledge distillation lab
A big **teacher** network teaches a small **student** with its *soft* predictions: its full
softmax at a raised temperature **T**, not just the right label. Pick the two networks, set
**T** and **α** (the weight of the teacher's soft targets against the true labels), and start a
run. A **baseline** student, same network, same start and same batches but trained on labels
alone, runs beside it, so the gain from distillation is measured, not assumed.
"""


def start(teacher, student, temperature, alpha, epochs, lr, batch_size, train_fraction, feature_loss,
          feature_weight, second_teacher, alpha_schedule, alpha_end, clip_grad_norm, data, device,
          request: gr.Request):
    settings = dict(teacher=teacher, student=student, temperature=temperature, alpha=alpha,
                    epochs=epochs, lr=lr, batch_size=batch_size, train_fraction=train_fraction,
                    feature_loss=feature_loss, feature_weight=feature_weight if feature_loss != "none" else 0.0,
                    extra_teachers=second_teacher or "", alpha_end=alpha_end if alpha_schedule else None,
                    clip_grad_norm=clip_grad_norm or None, data=data, device=device)
    started, message = lab.start(settings, owner=request.session_hash)
    return reports.notice(message, ok=started)


def stop(request: gr.Request):
    return reports.notice(lab.stop(owner=request.session_hash))


def refresh(last_key, request: gr.Request):
    """Timer tick: redraw only when the run changed (gr.Plot rebuilds on every new value)."""
    key = lab.runs.version_key()
    if key == last_key:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), last_key
    snap = lab.runs.snapshot()
    table = lab.comparison() if snap and snap["state"] == "finished" else None
    mine = bool(snap) and snap["owner"] == request.session_hash
    return (reports.status(snap, mine), plots.loss_figure(snap), plots.accuracy_figure(snap),
            reports.comparison_table(table), gr.update(interactive=not lab.runs.busy() or mine), key)


class Sketchpad(gr.Sketchpad):
    """Gradio decodes an uploaded image before our handler runs, so a truncated or oversized file
    would reach the visitor as a bare "Error". Hand the reason to `predict` instead."""

    def get_block_name(self):
        return "imageeditor"  # a subclass of a template must name the frontend itself

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except Exception as e:  # PIL's UnidentifiedImageError, OSError, DecompressionBombError, ...
            logging.getLogger("app").info("unreadable canvas: %s", e)
            return {"unreadable": f"{type(e).__name__}: {e}"}


def predict(sketch, temperature=4.0):
    """Teacher and student on a drawing: top-3 labels, both softmaxes at T=1 and T, the 28x28 input."""
    try:
        if isinstance(sketch, dict) and "unreadable" in sketch:
            raise CanvasError(f"{sketch['unreadable']}; send a PNG or JPEG of at most "
                              f"{MAX_SIDE}x{MAX_SIDE} pixels")
        result = lab.predict(sketch, temperature)
    except BlankCanvas:
        return None, None, plots.distribution_figure(None), None, reports.hint("Draw a digit (0–9) on the canvas.")
    except CanvasError as e:
        return None, None, plots.distribution_figure(None), None, reports.hint(f"Could not read that image: {e}")
    return (reports.top_labels(result["teacher"]["p1"]), reports.top_labels(result["student"]["p1"]),
            plots.distribution_figure(result), result["image"], reports.prediction_note(result))


def clear():
    return None, None, None, plots.distribution_figure(None), None, reports.hint("Draw a digit (0–9) on the canvas.")


CSS = """
#digit-28 img { image-rendering: pixelated; }
#status { min-height: 3em; }
"""
# Gradio 6's Sketchpad starts with no tool selected (it says "select the draw tool to start"),
# so a visitor's first stroke would do nothing: click its Brush button for them.
SELECT_BRUSH = """() => { const pick = () => { const b = document.querySelector('#sketch button[aria-label="Brush"]');
  if (b) { b.click(); return true; } return false; };
  if (!pick()) { let n = 0; const t = setInterval(() => { if (pick() || ++n > 50) clearInterval(t); }, 100); } }"""

with gr.Blocks(title="kdapp: knowledge distillation lab") as demo:
    gr.Markdown(INTRO)
    last_key = gr.State(None)
    with gr.Tab("Distill"):
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                teacher = gr.Dropdown(lab.teacher_choices(), value=DEFAULT["teacher"], label="Teacher")
                student = gr.Dropdown(lab.architecture_choices(), value=DEFAULT["student"], label="Student")
                temperature = gr.Slider(1, 20, value=DEFAULT["temperature"], step=0.5, label="Temperature T",
                                        info="softens the teacher's softmax; 3–5 works best on MNIST")
                alpha = gr.Slider(0, 1, value=DEFAULT["alpha"], step=0.05, label="α: weight of the soft targets",
                                  info="0 = labels only (no KD), 1 = teacher only")
                with gr.Row():
                    epochs = gr.Slider(1, lab.limits["epochs"], value=DEFAULT["epochs"], step=1, label="Epochs")
                    batch_size = gr.Slider(16, 512, value=DEFAULT["batch_size"], step=16, label="Batch size")
                with gr.Row():
                    lr = gr.Slider(0.0001, 0.01, value=DEFAULT["lr"], step=0.0001, label="Learning rate (Adam, cosine decay)")
                    train_fraction = gr.Slider(0.05, 1, value=DEFAULT["train_fraction"], step=0.05, label="Train fraction",
                                               info="KD helps most with little data")
                with gr.Accordion("More methods, data and device", open=False):
                    feature_loss = gr.Radio(["none", "hint", "attention"], value="none", label="Feature loss",
                                            info="hint: FitNets MSE through a learned adapter; "
                                                 "attention: attention transfer (CNNs only)")
                    feature_weight = gr.Slider(0, 1000, value=1, step=0.5, label="Feature loss weight")
                    second_teacher = gr.Dropdown([("none", "")] + lab.teacher_choices(), value="",
                                                 label="Second teacher (multi-teacher KD: probabilities averaged)")
                    with gr.Row():
                        alpha_schedule = gr.Checkbox(False, label="Linear α schedule")
                        alpha_end = gr.Slider(0, 1, value=0.3, step=0.05, label="α at the end")
                    clip_grad_norm = gr.Number(0, minimum=0, label="Gradient-norm clip (0 = off)")
                    data_choices, device_choices = lab.data_choices(), lab.device_choices()
                    data = gr.Dropdown(data_choices, value="sample", label="Data",
                                       interactive=len(data_choices) > 1)
                    device = gr.Dropdown(device_choices, value=device_choices[0], label="Device",
                                         interactive=len(device_choices) > 1)
                with gr.Row():
                    start_btn = gr.Button("Start distillation", variant="primary", elem_id="start")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                notice = gr.Markdown(elem_id="notice")
            with gr.Column(scale=3):
                status = gr.Markdown(reports.status(None, False), elem_id="status")
                loss_plot = gr.Plot(plots.loss_figure(None), elem_id="loss-plot", show_label=False)
                acc_plot = gr.Plot(plots.accuracy_figure(None), elem_id="acc-plot", show_label=False)
                table = gr.Markdown(reports.comparison_table(None), elem_id="comparison")
        gr.Markdown("## Draw a digit and compare")
        with gr.Row():
            with gr.Column(scale=2, min_width=300):
                sketch = Sketchpad(label="Draw a digit", elem_id="sketch", type="numpy", image_mode="RGBA",
                                      canvas_size=(CANVAS, CANVAS), brush=gr.Brush(colors=["#000000"],
                                      color_mode="fixed", default_size=9), layers=False, transforms=())
                clear_btn = gr.Button("Clear", elem_id="clear")
            with gr.Column(scale=3):
                with gr.Row():
                    teacher_pred = gr.Label(num_top_classes=3, label="Teacher", elem_id="teacher-pred")
                    student_pred = gr.Label(num_top_classes=3, label="Student", elem_id="student-pred")
                    digit28 = gr.Image(label="What the models see (28×28)", elem_id="digit-28",
                                       interactive=False, height=140, width=140, buttons=[])
                dist_plot = gr.Plot(plots.distribution_figure(None), elem_id="dist-plot", show_label=False)
                draw_note = gr.Markdown(reports.hint("Draw a digit (0–9) on the canvas."), elem_id="draw-note")
    with gr.Tab("Reproduction"):
        gr.Markdown(reports.reproduction_markdown())

    run_inputs = [teacher, student, temperature, alpha, epochs, lr, batch_size, train_fraction, feature_loss,
                  feature_weight, second_teacher, alpha_schedule, alpha_end, clip_grad_norm, data, device]
    start_btn.click(start, run_inputs, notice, api_visibility="private", concurrency_limit=None)
    stop_btn.click(stop, None, notice, api_visibility="private", concurrency_limit=None)
    timer = gr.Timer(1.0)
    timer.tick(refresh, last_key, [status, loss_plot, acc_plot, table, stop_btn, last_key],
               api_visibility="private", show_progress="hidden", concurrency_limit=None, queue=False)
    predict_outputs = [teacher_pred, student_pred, dist_plot, digit28, draw_note]
    sketch.change(predict, [sketch, temperature], predict_outputs, api_name="predict",
                  show_progress="hidden", concurrency_limit=4)
    temperature.release(predict, [sketch, temperature], predict_outputs, api_visibility="private",
                        show_progress="hidden")
    # Setting the Sketchpad to None from the server also deselects its brush: select it again.
    clear_btn.click(clear, None, [sketch, *predict_outputs], api_visibility="private").then(
        None, js=SELECT_BRUSH, api_visibility="private")
    demo.load(None, js=SELECT_BRUSH)

demo.queue(max_size=64, default_concurrency_limit=2)
# Tests launch with these too. show_error=False: visitors get our messages, never tracebacks.
LAUNCH = dict(css=CSS, max_file_size="5mb", show_error=False)

if __name__ == "__main__":
    demo.launch(**LAUNCH)  # honours GRADIO_SERVER_NAME / GRADIO_SERVER_PORT
