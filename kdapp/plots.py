"""Plotly figures from plain run snapshots and prediction dicts (no tensors, no gradio).

Every figure sets `uirevision`, so a refresh with new points keeps the visitor's zoom.
"""
import plotly.graph_objects as go
from plotly.subplots import make_subplots

COLORS = {"teacher": "#7f7f7f", "student": "#d62728", "baseline": "#1f77b4",
          "soft": "#ff9896", "hard": "#9467bd", "feature": "#2ca02c"}
LAYOUT = dict(template="plotly_white", height=320, margin=dict(l=50, r=10, t=40, b=40),
              legend=dict(orientation="h", y=-0.2))


def _empty(title, hint):
    fig = go.Figure(layout=dict(LAYOUT, title=title))
    fig.add_annotation(text=hint, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(color="#888"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def loss_figure(snapshot):
    """Step losses: KD total, soft (KL*T^2) and hard (CE) parts, and the baseline's CE."""
    if not snapshot or not (snapshot["curves"]["step"] or snapshot["curves"]["teacher_loss"]):
        return _empty("Training loss", "start a run to see its losses here")
    c = snapshot["curves"]
    fig = go.Figure(layout=dict(LAYOUT, title="Training loss per step", uirevision=snapshot["id"]))
    if c["step"]:
        x = c["step"]
        fig.add_scatter(x=x, y=c["loss"], name="KD total", line=dict(color=COLORS["student"], width=2))
        fig.add_scatter(x=x, y=c["soft"], name="soft: KL·T²", line=dict(color=COLORS["soft"], dash="dot"))
        fig.add_scatter(x=x, y=c["hard"], name="hard: CE", line=dict(color=COLORS["hard"], dash="dot"))
        if any(v is not None for v in c["feature"]):
            fig.add_scatter(x=x, y=c["feature"], name="feature", line=dict(color=COLORS["feature"], dash="dash"))
        if any(v is not None for v in c["baseline"]):
            fig.add_scatter(x=x, y=c["baseline"], name="baseline CE", line=dict(color=COLORS["baseline"], width=2))
        fig.update_xaxes(title="student step")
    else:
        fig.add_scatter(y=c["teacher_loss"], name="teacher CE", line=dict(color=COLORS["teacher"]))
        fig.update_xaxes(title="teacher log point")
    fig.update_yaxes(title="loss", type="log")
    return fig


def accuracy_figure(snapshot):
    """Test accuracy per epoch for teacher, KD student and baseline."""
    if not snapshot or not snapshot["accuracy"]["epoch"]:
        return _empty("Test accuracy", "accuracies appear after the first epoch")
    a = snapshot["accuracy"]
    fig = go.Figure(layout=dict(LAYOUT, title="Test accuracy per epoch", uirevision=snapshot["id"]))
    fig.add_scatter(x=a["epoch"], y=[100 * v for v in a["teacher"]], name="teacher",
                    line=dict(color=COLORS["teacher"], dash="dash"))
    fig.add_scatter(x=a["epoch"], y=[100 * v for v in a["student"]], name="KD student",
                    mode="lines+markers", line=dict(color=COLORS["student"]))
    if any(v is not None for v in a["baseline"]):
        fig.add_scatter(x=a["epoch"], y=[None if v is None else 100 * v for v in a["baseline"]],
                        name="baseline (no KD)", mode="lines+markers", line=dict(color=COLORS["baseline"]))
    fig.update_xaxes(title="epoch", dtick=1)
    fig.update_yaxes(title="accuracy (%)")
    return fig


def distribution_figure(prediction):
    """Teacher and student softmax side by side, at T=1 and at the chosen T (dark knowledge)."""
    if not prediction:
        return _empty("Softmax distributions", "draw a digit to compare the two models")
    T = prediction["temperature"]
    fig = make_subplots(rows=1, cols=2, shared_yaxes=False,
                        subplot_titles=("T = 1 (what the label sees)", f"T = {T:g} (what the student learns from)"))
    digits = [str(d) for d in range(10)]
    for col, key in ((1, "p1"), (2, "pT")):
        for name, label in (("teacher", "teacher"), ("student", "student")):
            fig.add_bar(x=digits, y=prediction[name][key], name=label, marker_color=COLORS[name],
                        showlegend=(col == 1), legendgroup=name, row=1, col=col)
    fig.update_layout(LAYOUT, barmode="group", uirevision="distribution", margin=dict(l=50, r=10, t=80, b=40),
                      title=dict(text=f"Softmax of both models · KL(teacher‖student) at T={T:g}: "
                                      f"{prediction['kl_T']:.4f}", y=0.97))
    fig.update_yaxes(range=[0, 1], title_text="probability", row=1, col=1)
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    fig.update_xaxes(title_text="digit")
    return fig
