"""Plotly figures from plain run snapshots and prediction dicts (no tensors, no gradio).

Figures are built as plain dicts and wrapped without plotly's validation: the validated
path (make_subplots, add_bar, update_layout) costs ~26 ms per figure, pure Python under the
GIL, 15x the prediction itself; this one costs ~2 ms. Every figure sets `uirevision`, so a
refresh with new points keeps the visitor's zoom.
"""
import plotly.graph_objects as go
import plotly.io as pio

COLORS = {"teacher": "#7f7f7f", "student": "#d62728", "baseline": "#1f77b4",
          "soft": "#ff9896", "hard": "#9467bd", "feature": "#2ca02c"}
TEMPLATE = pio.templates["plotly_white"].to_plotly_json()  # resolved once, not per figure
LAYOUT = dict(template=TEMPLATE, height=320, margin=dict(l=50, r=10, t=40, b=40),
              legend=dict(orientation="h", y=-0.2))


def _figure(data, layout):
    return go.Figure(dict(data=data, layout=dict(LAYOUT, **layout)), _validate=False)


def _line(x, y, name, color, dash=None, width=2, mode="lines"):
    return dict(type="scatter", x=x, y=y, name=name, mode=mode, line=dict(color=color, dash=dash, width=width))


def _empty(title, hint):
    return _figure([], dict(title=dict(text=title), xaxis=dict(visible=False), yaxis=dict(visible=False),
                            annotations=[dict(text=hint, showarrow=False, x=0.5, y=0.5, xref="paper",
                                              yref="paper", font=dict(color="#888"))]))


def loss_figure(snapshot):
    """Step losses: KD total, soft (KL*T^2) and hard (CE) parts, and the baseline's CE."""
    if not snapshot or not (snapshot["curves"]["step"] or snapshot["curves"]["teacher_loss"]):
        return _empty("Training loss", "start a run to see its losses here")
    c = snapshot["curves"]
    if c["step"]:
        x = c["step"]
        data = [_line(x, c["loss"], "KD total", COLORS["student"]),
                _line(x, c["soft"], "soft: KL·T²", COLORS["soft"], "dot", 1.5),
                _line(x, c["hard"], "hard: CE", COLORS["hard"], "dot", 1.5)]
        if any(v is not None for v in c["feature"]):
            data.append(_line(x, c["feature"], "feature", COLORS["feature"], "dash", 1.5))
        if any(v is not None for v in c["baseline"]):
            data.append(_line(x, c["baseline"], "baseline CE", COLORS["baseline"]))
        xaxis = dict(title=dict(text="student step"))
    else:
        data = [_line(list(range(1, len(c["teacher_loss"]) + 1)), c["teacher_loss"], "teacher CE", COLORS["teacher"])]
        xaxis = dict(title=dict(text="teacher log point"))
    return _figure(data, dict(title=dict(text="Training loss per step"), uirevision=snapshot["id"],
                              xaxis=xaxis, yaxis=dict(title=dict(text="loss"), type="log")))


def accuracy_figure(snapshot):
    """Test accuracy per epoch for teacher, KD student and baseline."""
    if not snapshot or not snapshot["accuracy"]["epoch"]:
        return _empty("Test accuracy", "accuracies appear after the first epoch")
    a = snapshot["accuracy"]
    pct = [None if v is None else 100 * v for v in a["baseline"]]
    data = [_line(a["epoch"], [100 * v for v in a["teacher"]], "teacher", COLORS["teacher"], "dash"),
            _line(a["epoch"], [100 * v for v in a["student"]], "KD student", COLORS["student"], mode="lines+markers")]
    if any(v is not None for v in pct):
        data.append(_line(a["epoch"], pct, "baseline (no KD)", COLORS["baseline"], mode="lines+markers"))
    return _figure(data, dict(title=dict(text="Test accuracy per epoch"), uirevision=snapshot["id"],
                              xaxis=dict(title=dict(text="epoch"), dtick=1),
                              yaxis=dict(title=dict(text="accuracy (%)"))))


def distribution_figure(prediction):
    """Teacher and student softmax side by side, at T=1 and at the chosen T (dark knowledge)."""
    if not prediction:
        return _empty("Softmax distributions", "draw a digit to compare the two models")
    T = prediction["temperature"]
    digits = [str(d) for d in range(10)]
    data = []
    for axis, key in (("", "p1"), ("2", "pT")):
        for name in ("teacher", "student"):
            data.append(dict(type="bar", x=digits, y=prediction[name][key], name=name, legendgroup=name,
                             marker=dict(color=COLORS[name]), showlegend=not axis,
                             xaxis="x" + axis, yaxis="y" + axis))
    subtitle = dict(showarrow=False, xref="paper", yref="paper", y=1.02, yanchor="bottom", font=dict(size=13))
    return _figure(data, dict(
        barmode="group", uirevision="distribution", margin=dict(l=50, r=10, t=80, b=40),
        title=dict(text=f"Softmax of both models · KL(teacher‖student) at T={T:g}: {prediction['kl_T']:.4f}", y=0.97),
        xaxis=dict(domain=[0, 0.46], title=dict(text="digit")), xaxis2=dict(domain=[0.54, 1], title=dict(text="digit")),
        yaxis=dict(range=[0, 1], title=dict(text="probability")), yaxis2=dict(range=[0, 1], anchor="x2"),
        annotations=[dict(subtitle, text="T = 1 (what the label sees)", x=0.23, xanchor="center"),
                     dict(subtitle, text=f"T = {T:g} (what the student learns from)", x=0.77, xanchor="center")]))
