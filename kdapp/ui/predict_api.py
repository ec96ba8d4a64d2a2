"""/predict, for scripts (gradio_client): teacher, KD student and baseline on a drawing, computed on
the server. The page itself computes the same in the visitor's browser (kdapp.ui.drawing), so these
components are hidden; they keep the API's inputs and outputs as they have always been.

`PredictAPI(get_lab, temperature, models, shipped)` makes the hidden components inside the caller's
layout; `temperature` and `models` are the page's components the API reads besides the sketch, and
`shipped` is the value of `models` that means the shipped checkpoints.
"""
import logging

import gradio as gr

from kdapp.config import DEFAULTS
from kdapp.evaluation.inference import BlankCanvas, CanvasError, unreadable
from kdapp.ui import drawing, plots, reports
from kdapp.ui.i18n import _


class Sketchpad(gr.Sketchpad):
    """/predict's input. Gradio decodes an uploaded image before our handler runs, so a truncated
    or oversized file would reach the caller as a bare "Error". Hand the reason to `predict` instead."""

    def get_block_name(self):
        return "imageeditor"  # a subclass of a template must name the frontend itself

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except Exception as e:  # PIL's UnidentifiedImageError, OSError, DecompressionBombError, ...
            logging.getLogger("app").info("unreadable canvas: %s", e)
            return {"unreadable": unreadable(e)}  # the reason in words: no server path, no class name


class PredictAPI:
    def __init__(self, get_lab, temperature, models, shipped):
        self.get_lab, self.shipped = get_lab, shipped
        with gr.Column(visible=False):
            self.sketch = Sketchpad(type="numpy", image_mode="RGBA", canvas_size=(drawing.CANVAS, drawing.CANVAS),
                                    layers=False, transforms=())
            self.teacher_pred, self.student_pred, self.baseline_pred = (gr.Label(num_top_classes=3) for _ in range(3))
            self.dist_plot, self.digit28, self.draw_note = gr.Plot(), gr.Image(), gr.Markdown()
        outputs = [self.teacher_pred, self.student_pred, self.baseline_pred, self.dist_plot, self.digit28,
                   self.draw_note]
        # queue=False: one POST to gradio_api/run/predict, answered in its reply. Not an MCP tool.
        self.sketch.change(self.predict, [self.sketch, temperature, models], outputs, api_name="predict",
                           show_progress="hidden", queue=False, api_visibility="undocumented")

    def predict(self, sketch, temperature=DEFAULTS.temperature, models=None):
        """/predict: teacher, KD student and baseline on a drawing: top-3 labels, softmaxes at T=1 and
        T, the 28x28 input. Outputs, in order: teacher, KD student, baseline, chart, image, note."""
        try:
            if isinstance(sketch, dict) and "unreadable" in sketch:
                raise CanvasError(sketch["unreadable"])
            result = self.get_lab().predict(sketch, temperature, models or self.shipped)
        except BlankCanvas:
            return self.clear()
        except CanvasError as e:
            return self.clear() | {self.draw_note: reports.hint(_("notice.unreadable").format(reason=e))}
        teacher, student, baseline = (reports.top_labels(result[role]["p1"]) if role in result else None
                                      for role in ("teacher", "student", "baseline"))
        return {self.teacher_pred: teacher, self.student_pred: student, self.baseline_pred: baseline,
                self.dist_plot: plots.distribution_figure(result), self.digit28: result["image"],
                self.draw_note: reports.prediction_note(result)}

    def clear(self):
        """/predict's outputs for a blank canvas."""
        return {self.teacher_pred: None, self.student_pred: None, self.baseline_pred: None,
                self.dist_plot: plots.distribution_figure(None), self.digit28: None,
                self.draw_note: reports.hint(_("draw.hint"))}
