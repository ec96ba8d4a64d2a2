"""python -m kdapp.tools.noop_app: the drawing's inputs and outputs with a handler that does no
work, served as app.py serves /predict. The load test's floor: what Gradio itself costs per
request on this machine."""
import gradio as gr
import numpy as np

from kdapp.ui import plots

LABEL = {"label": "1", "confidences": [{"label": str(d), "confidence": 0.1} for d in range(3)]}
OUTPUTS = (LABEL, LABEL, LABEL, plots.distribution_figure(None), np.zeros((28, 28), np.uint8), "a note")


def predict(sketch, temperature, models):
    return OUTPUTS


with gr.Blocks() as demo:
    sketch = gr.Sketchpad(type="numpy", image_mode="RGBA")
    temperature = gr.Slider(0.5, 20, value=4.0)
    models = gr.State("shipped")
    outputs = [gr.Label(), gr.Label(), gr.Label(), gr.Plot(), gr.Image(), gr.Markdown()]
    sketch.change(predict, [sketch, temperature, models], outputs, api_name="predict", queue=False)

if __name__ == "__main__":
    demo.launch()
