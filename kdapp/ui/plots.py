"""Plotly figures from plain run snapshots and prediction dicts (no tensors, no gradio).

Figures are built as plain dicts and wrapped without plotly's validation: the validated
path (make_subplots, add_bar, update_layout) costs ~26 ms per figure, pure Python under the
GIL, 15x the prediction itself; this one costs ~2 ms. Every figure sets `uirevision`, so a
refresh with new points keeps the visitor's zoom. Titles, axes and legends are in the language
spoken now (kdapp.ui.i18n); numbers are formatted here, the same in every language.
"""
import math

import plotly.graph_objects as go
import plotly.io as pio

from kdapp.losses import LOGIT_LOSSES
from kdapp.ui.i18n import _

COLORS = {"teacher": "#7f7f7f", "student": "#d62728", "baseline": "#1f77b4",
          "soft": "#ff9896", "hard": "#9467bd", "feature": "#2ca02c", "temperature": "#ff7f0e"}
PART_COLORS = ("#e377c2", "#17becf")
PARTS = {part: label for entry in LOGIT_LOSSES.values() for part, label in entry.parts.items()}


def soft_label(loss):
    """The soft term's curve: "soft: KL·T²" (the loss's own formula after the word)."""
    curve = LOGIT_LOSSES[loss].curve if loss in LOGIT_LOSSES else "soft"
    return _("curve.soft").format(formula=curve.removeprefix("soft: ")) if curve.startswith("soft: ") else curve


def part_label(part):
    if part == "collapse":
        return _("curve.feature").format(formula="‖Cov(F_S) − I‖²")
    if part == "adversarial":
        return _("curve.feature").format(formula=_("curve.adversarial_bce"))
    return _("curve.soft_part").format(part=PARTS[part]) if part in PARTS else part


TEMPLATE = pio.templates["plotly_white"].to_plotly_json()  # resolved once, not per figure
LAYOUT = dict(template=TEMPLATE, height=320, margin=dict(l=50, r=10, t=40, b=40),
              legend=dict(orientation="h", y=-0.2))


def figure(data, layout):
    """A figure from plain dicts, unvalidated (see above), on the page's layout."""
    return go.Figure(dict(data=data, layout=dict(LAYOUT, **layout)), _validate=False)


def line(x, y, name, color, dash=None, width=2, mode="lines"):
    """One curve's trace."""
    return dict(type="scatter", x=x, y=y, name=name, mode=mode, line=dict(color=color, dash=dash, width=width))


def empty(title, hint):
    """A figure with nothing to show yet: its title, and a grey line saying what will come."""
    return figure([], dict(title=dict(text=title), xaxis=dict(visible=False), yaxis=dict(visible=False),
                           annotations=[dict(text=hint, showarrow=False, x=0.5, y=0.5, xref="paper",
                                             yref="paper", font=dict(color="#888"))]))


EMA_WEIGHT = 0.9  # TensorBoard's smoothing: each point is 0.9 of the last smoothed value and 0.1 of itself


def ema(values, weight=EMA_WEIGHT):
    """TensorBoard's smoothing: an exponential moving average, debiased so the curve starts at the
    first value and not at 0. Gaps (None) stay gaps."""
    out, last, seen = [], 0.0, 0
    for v in values:
        if v is None:
            out.append(None)
            continue
        last, seen = weight * last + (1 - weight) * v, seen + 1
        out.append(last / (1 - weight ** seen))
    return out


def log_ticks(values, most=6):
    """Clean ticks for a log axis: 1-2-5 steps in the data's range, or powers of ten alone when
    those would be more than `most` (Plotly's own gives cluttered "5 2 10 5 2 1")."""
    positive = [v for v in values if v is not None and v > 0]
    if not positive:
        return None
    lo, hi = min(positive), max(positive)
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    ticks = [m * 10.0 ** e for e in range(first, last + 1) for m in (1, 2, 5) if lo <= m * 10.0 ** e <= hi]
    if len(ticks) > most:
        ticks = [t for t in ticks if math.log10(t) == round(math.log10(t))]
    if len(ticks) < 2:  # less than a step of the 1-2-5 ladder: the ends, rounded
        ticks = sorted({float(f"{lo:.2g}"), float(f"{hi:.2g}")})
    return dict(tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])


def _smoothing_toggle(raw, smoothed):
    """Buttons on the figure itself, as TensorBoard's slider: raw curves, or EMA-smoothed over faint raw ones."""
    n = raw + smoothed
    return [dict(type="buttons", direction="right", x=1, xanchor="right", y=1.02, yanchor="bottom",
                 showactive=True, active=0, pad=dict(r=0, t=0), font=dict(size=11), buttons=[
                     dict(label=_("plot.smoothed").format(weight=f"{EMA_WEIGHT:g}"), method="restyle",
                          args=[{"visible": [True] * n, "opacity": [0.25] * raw + [1.0] * smoothed}]),
                     dict(label=_("plot.raw"), method="restyle",
                          args=[{"visible": [True] * raw + [False] * smoothed, "opacity": [1.0] * n}])])]


def loss_figure(snapshot):
    """Step losses: KD total, soft (KL*T^2) and hard (CE) parts, and the baseline's CE."""
    if not snapshot or not (snapshot["curves"].get("step") or snapshot["curves"].get("teacher_loss")):
        return empty(_("plot.loss.title_empty"), _("plot.loss.empty"))
    c = snapshot["curves"]
    if c["step"]:
        x = c["step"]
        data = [line(x, c["loss"], _("curve.total"), COLORS["student"]),
                line(x, c["soft"], soft_label(snapshot.get("config", {}).get("loss", "kd")), COLORS["soft"], "dot", 1.5),
                line(x, c["hard"], _("curve.hard"), COLORS["hard"], "dot", 1.5)]
        if any(v is not None for v in c["feature"]):
            data.append(line(x, c["feature"], _("curve.feature_total"), COLORS["feature"], "dash", 1.5))
        for i, name in enumerate(k for k in c if k.startswith("part:")):  # the soft loss's own terms
            data.append(line(x, c[name], part_label(name[5:]), PART_COLORS[i % 2], "dashdot", 1.5))
        if any(v is not None for v in c["baseline"]):
            data.append(line(x, c["baseline"], _("curve.baseline"), COLORS["baseline"]))
        data += _temperature_line(x, c.get("temperature", []))
        xaxis = dict(title=dict(text=_("axis.student_step")))
    else:
        data = [line(list(range(1, len(c["teacher_loss"]) + 1)), c["teacher_loss"], _("curve.teacher"),
                     COLORS["teacher"])]
        xaxis = dict(title=dict(text=_("axis.teacher_log_point")))
    # Smoothed copies on top, raw ones faint beneath; the buttons switch to raw alone. T (its own
    # right-hand axis) is drawn as it was, never smoothed.
    t_lines = [d for d in data if d.get("yaxis") == "y2"]
    data = [d for d in data if d.get("yaxis") != "y2"]
    for trace in data:
        trace.update(opacity=0.25, legendgroup=trace["name"])  # one legend entry toggles both copies
    smoothed = [dict(trace, y=ema(trace["y"]), showlegend=False, hoverinfo="skip", opacity=1.0) for trace in data]
    ticks = log_ticks([v for trace in data for v in trace["y"]]) or {}
    # Smoothed on every point, drawn with at most MAX_POINTS each: the page redraws this figure every
    # second while a run trains, and a long redraw delays the drawing panel's answer (docs/drawing.md).
    data, smoothed, t_lines = ([_thin(trace) for trace in group] for group in (data, smoothed, t_lines))
    # The title on a line of its own above the buttons, and the legend clear of the axis title: on a
    # phone (390 px) the title ran under the buttons ("Training loss per") and the legend's two rows
    # over "student step".
    return figure(data + smoothed + t_lines, dict(
        title=dict(text=_("plot.loss.title"), yref="container", y=0.98, yanchor="top"), uirevision=snapshot["id"],
        xaxis=xaxis, height=350, margin=dict(LAYOUT["margin"], t=72, b=50), legend=dict(LAYOUT["legend"], y=-0.25),
        yaxis=dict(title=dict(text=_("axis.loss")), type="log", **ticks),
        updatemenus=_smoothing_toggle(len(data), len(smoothed)),
        **({"yaxis2": dict(title=dict(text=_("axis.temperature")), overlaying="y", side="right", showgrid=False,
                           rangemode="tozero")} if t_lines else {})))


MAX_POINTS = 250  # per curve of the live loss chart


def _thin(trace, limit=MAX_POINTS):
    """The trace with every k-th point (the last one always) so that it has at most about `limit`."""
    n = len(trace["x"])
    if n <= limit:
        return trace
    keep = list(range(0, n, -(-n // limit)))
    if keep[-1] != n - 1:
        keep.append(n - 1)
    return dict(trace, x=[trace["x"][i] for i in keep], y=[trace["y"][i] for i in keep])


def _temperature_line(x, temperatures):
    """The run's T per step on the right-hand axis, when it changed (a schedule or CTKD)."""
    values = [t for t in temperatures if t is not None]
    if len(temperatures) != len(x) or not values or max(values) - min(values) < 1e-6:
        return []
    return [dict(line(x, temperatures, _("curve.temperature"), COLORS["temperature"], "longdash", 1.5),
                 yaxis="y2")]


def accuracy_figure(snapshot):
    """Test accuracy per epoch for teacher, KD student and baseline."""
    if not snapshot or not snapshot["accuracy"].get("epoch"):
        return empty(_("plot.accuracy.title_empty"), _("plot.accuracy.empty"))
    a = snapshot["accuracy"]
    pct = {role: [None if v is None else 100 * v for v in a[role]] for role in ("teacher", "student", "baseline")}
    data = [line(a["epoch"], pct["student"], _("role.student"), COLORS["student"], mode="lines+markers")]
    if any(v is not None for v in pct["teacher"]):  # deep supervision has no teacher
        data.insert(0, line(a["epoch"], pct["teacher"], _("role.teacher"), COLORS["teacher"], "dash"))
    if any(v is not None for v in pct["baseline"]):
        data.append(line(a["epoch"], pct["baseline"], _("role.baseline"), COLORS["baseline"], mode="lines+markers"))
    return figure(data, dict(title=dict(text=_("plot.accuracy.title")), uirevision=snapshot["id"],
                             xaxis=dict(title=dict(text=_("axis.epoch")), **epoch_ticks(a["epoch"])),
                             yaxis=dict(title=dict(text=_("axis.accuracy")))))


def epoch_ticks(epochs):
    """Whole epochs only, about ten ticks whatever the run's length (one per epoch made a 40-epoch
    run's axis an unreadable smear, on a phone worst), and no padding beyond the first and last."""
    low, high = min(epochs), max(epochs)
    step = next(s for s in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if (high - low) / s <= 10 or s == 1000)
    return dict(dtick=step, tick0=0, range=[low - 0.3, high + 0.3])


ROLE_KEYS = {"teacher": "role.teacher", "student": "role.student", "baseline": "role.baseline"}


def names():
    """The three models' names in the language spoken now."""
    return {role: _(key) for role, key in ROLE_KEYS.items()}


def distribution_figure(prediction):
    """Teacher, KD student and (when there is one) baseline softmaxes side by side, at T=1 and at
    the chosen T (dark knowledge)."""
    if not prediction:
        return empty(_("plot.softmax.title_empty"), _("plot.softmax.empty"))
    T, NAMES = prediction["temperature"], names()
    digits = [str(d) for d in range(10)]
    data = []
    for axis, key in (("", "p1"), ("2", "pT")):
        for name in ("teacher", "student", "baseline"):
            if name in prediction:
                data.append(dict(type="bar", x=digits, y=prediction[name][key], name=NAMES[name], legendgroup=name,
                                 marker=dict(color=COLORS[name]), showlegend=not axis,
                                 xaxis="x" + axis, yaxis="y" + axis))
    subtitle = dict(showarrow=False, xref="paper", yref="paper", y=1.02, yanchor="bottom", font=dict(size=13))
    return figure(data, dict(
        barmode="group", uirevision="distribution", margin=dict(l=50, r=10, t=80, b=40),
        title=dict(text=_("plot.softmax.title").format(T=f"{T:g}", kl=f"{prediction['kl_T']:.4f}")
                   if prediction["kl_T"] is not None else _("plot.softmax.no_teacher"), y=0.97),
        xaxis=dict(domain=[0, 0.46], title=dict(text=_("axis.digit"))),
        xaxis2=dict(domain=[0.54, 1], title=dict(text=_("axis.digit"))),
        yaxis=dict(range=[0, 1], title=dict(text=_("axis.probability"))), yaxis2=dict(range=[0, 1], anchor="x2"),
        annotations=[dict(subtitle, text=_("plot.softmax.t1"), x=0.23, xanchor="center"),
                     dict(subtitle, text=_("plot.softmax.t").format(T=f"{T:g}"), x=0.77, xanchor="center")]))


CONFUSION_ROLES = ("teacher", "student", "baseline")


def confusion_figure(fidelity, role):
    """One model's confusion matrix on the test digits (rows = true class), its mistakes in colour
    on a scale shared by the three models so that they compare; the diagonal, right answers, is
    counted but not coloured. One figure per model, so that a phone shows them one per row."""
    if not fidelity or role not in fidelity["confusion"]:
        return empty(_("plot.confusion.title_empty"), _("plot.confusion.empty"))
    confusion, digits = fidelity["confusion"], [str(d) for d in range(10)]
    peak = max(v for r in confusion for i, row in enumerate(confusion[r]) for j, v in enumerate(row) if i != j) or 1
    counts = confusion[role]
    z = [[None if i == j else v for j, v in enumerate(row)] for i, row in enumerate(counts)]
    text = [[str(v) if v else "" for v in row] for row in counts]
    errors = sum(v for i, row in enumerate(counts) for j, v in enumerate(row) if i != j)
    model = names()[role]
    data = [dict(type="heatmap", x=digits, y=digits, z=z, text=text, texttemplate="%{text}", textfont=dict(size=9),
                 colorscale="Reds", zmin=0, zmax=peak, showscale=False,
                 hovertemplate=_("plot.confusion.hover").format(model=model))]
    return figure(data, dict(title=dict(text=_("plot.confusion.one").format(model=model, errors=errors)),
                             xaxis=dict(type="category", title=dict(text=_("axis.predicted_digit"))),
                             yaxis=dict(type="category", autorange="reversed", scaleanchor="x",
                                        title=dict(text=_("axis.true_digit"))),
                             height=340, uirevision=f"confusion-{role}", margin=dict(l=50, r=10, t=50, b=50)))


def example_figure(fidelity, kind, index):
    """The three models' softmaxes (T=1) for one digit of a "where KD changed the answer" gallery."""
    group = (fidelity or {}).get(kind)
    if not group or index is None or not 0 <= index < len(group["index"]):
        return empty(_("plot.example.title_empty"), _("plot.example.empty"))
    NAMES = names()
    digits = [str(d) for d in range(10)]
    data = [dict(type="bar", x=digits, y=group["probs"][role][index], name=NAMES[role],
                 marker=dict(color=COLORS[role])) for role in ("teacher", "student", "baseline")
            if role in group["probs"]]
    said = _("list.sep").join(f"{NAMES[r]} {group['predicted'][r][index]}" for r in ("teacher", "student", "baseline")
                              if r in group["predicted"])
    return figure(data, dict(barmode="group", uirevision=f"example-{kind}-{index}",
                             title=dict(text=_("plot.example.title").format(index=group["index"][index],
                                                                           label=group["label"][index], said=said)),
                             xaxis=dict(title=dict(text=_("axis.digit"))),
                             yaxis=dict(range=[0, 1], title=dict(text=_("axis.probability_t1")))))
