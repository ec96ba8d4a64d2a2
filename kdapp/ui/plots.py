"""Plotly figures from plain run snapshots and prediction dicts (no tensors, no gradio).

Figures are built as plain dicts and wrapped without plotly's validation: the validated
path (make_subplots, add_bar, update_layout) costs ~26 ms per figure, pure Python under the
GIL, 15x the prediction itself; this one costs ~2 ms. Every figure sets `uirevision`, so a
refresh with new points keeps the visitor's zoom.
"""
import math

import plotly.graph_objects as go
import plotly.io as pio

from kdapp import aggregate
from kdapp.losses import LOGIT_LOSSES

COLORS = {"teacher": "#7f7f7f", "student": "#d62728", "baseline": "#1f77b4",
          "soft": "#ff9896", "hard": "#9467bd", "feature": "#2ca02c", "temperature": "#ff7f0e"}
PART_COLORS = ("#e377c2", "#17becf")
SOFT_LABELS = {name: entry.curve for name, entry in LOGIT_LOSSES.items()}
PART_LABELS = {part: f"soft part: {label}" for entry in LOGIT_LOSSES.values() for part, label in entry.parts.items()}
PART_LABELS.update(collapse="feature: ‖Cov(F_S) − I‖²", adversarial="feature: adversarial BCE")
PALETTE = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"]  # one colour per compared run
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
    return [dict(type="buttons", direction="right", x=1, xanchor="right", y=1.12, yanchor="bottom",
                 showactive=True, active=0, pad=dict(r=0, t=0), font=dict(size=11), buttons=[
                     dict(label=f"smoothed (EMA {EMA_WEIGHT:g})", method="restyle",
                          args=[{"visible": [True] * n, "opacity": [0.25] * raw + [1.0] * smoothed}]),
                     dict(label="raw", method="restyle",
                          args=[{"visible": [True] * raw + [False] * smoothed, "opacity": [1.0] * n}])])]


def loss_figure(snapshot):
    """Step losses: KD total, soft (KL*T^2) and hard (CE) parts, and the baseline's CE."""
    if not snapshot or not (snapshot["curves"].get("step") or snapshot["curves"].get("teacher_loss")):
        return _empty("Training loss", "start a run to see its losses here")
    c = snapshot["curves"]
    if c["step"]:
        x = c["step"]
        data = [_line(x, c["loss"], "KD total", COLORS["student"]),
                _line(x, c["soft"], SOFT_LABELS.get(snapshot.get("config", {}).get("loss", "kd"), "soft"),
                      COLORS["soft"], "dot", 1.5),
                _line(x, c["hard"], "hard: CE", COLORS["hard"], "dot", 1.5)]
        if any(v is not None for v in c["feature"]):
            data.append(_line(x, c["feature"], "feature", COLORS["feature"], "dash", 1.5))
        for i, name in enumerate(k for k in c if k.startswith("part:")):  # the soft loss's own terms
            data.append(_line(x, c[name], PART_LABELS.get(name[5:], name[5:]), PART_COLORS[i % 2], "dashdot", 1.5))
        if any(v is not None for v in c["baseline"]):
            data.append(_line(x, c["baseline"], "baseline CE", COLORS["baseline"]))
        data += _temperature_line(x, c.get("temperature", []))
        xaxis = dict(title=dict(text="student step"))
    else:
        data = [_line(list(range(1, len(c["teacher_loss"]) + 1)), c["teacher_loss"], "teacher CE", COLORS["teacher"])]
        xaxis = dict(title=dict(text="teacher log point"))
    # Smoothed copies on top, raw ones faint beneath; the buttons switch to raw alone. T (its own
    # right-hand axis) is drawn as it was, never smoothed.
    t_lines = [d for d in data if d.get("yaxis") == "y2"]
    data = [d for d in data if d.get("yaxis") != "y2"]
    for trace in data:
        trace.update(opacity=0.25, legendgroup=trace["name"])  # one legend entry toggles both copies
    smoothed = [dict(trace, y=ema(trace["y"]), showlegend=False, hoverinfo="skip", opacity=1.0) for trace in data]
    ticks = log_ticks([v for trace in data for v in trace["y"]]) or {}
    return _figure(data + smoothed + t_lines, dict(
        title=dict(text="Training loss per step"), uirevision=snapshot["id"], xaxis=xaxis,
        yaxis=dict(title=dict(text="loss"), type="log", **ticks), updatemenus=_smoothing_toggle(len(data), len(smoothed)),
        **({"yaxis2": T_AXIS} if t_lines else {})))


T_AXIS = dict(title=dict(text="temperature T"), overlaying="y", side="right", showgrid=False, rangemode="tozero")


def _temperature_line(x, temperatures):
    """The run's T per step on the right-hand axis, when it changed (a schedule or CTKD)."""
    values = [t for t in temperatures if t is not None]
    if len(temperatures) != len(x) or not values or max(values) - min(values) < 1e-6:
        return []
    return [dict(_line(x, temperatures, "temperature T (right axis)", COLORS["temperature"], "longdash", 1.5),
                 yaxis="y2")]


def accuracy_figure(snapshot):
    """Test accuracy per epoch for teacher, KD student and baseline."""
    if not snapshot or not snapshot["accuracy"].get("epoch"):
        return _empty("Test accuracy", "accuracies appear after the first epoch")
    a = snapshot["accuracy"]
    pct = {role: [None if v is None else 100 * v for v in a[role]] for role in ("teacher", "student", "baseline")}
    data = [_line(a["epoch"], pct["student"], "KD student", COLORS["student"], mode="lines+markers")]
    if any(v is not None for v in pct["teacher"]):  # deep supervision has no teacher
        data.insert(0, _line(a["epoch"], pct["teacher"], "teacher", COLORS["teacher"], "dash"))
    if any(v is not None for v in pct["baseline"]):
        data.append(_line(a["epoch"], pct["baseline"], "baseline (no KD)", COLORS["baseline"], mode="lines+markers"))
    return _figure(data, dict(title=dict(text="Test accuracy per epoch"), uirevision=snapshot["id"],
                              xaxis=dict(title=dict(text="epoch"), dtick=1),
                              yaxis=dict(title=dict(text="accuracy (%)"))))


NAMES = {"teacher": "teacher", "student": "KD student", "baseline": "baseline (no KD)"}


def distribution_figure(prediction):
    """Teacher, KD student and (when there is one) baseline softmaxes side by side, at T=1 and at
    the chosen T (dark knowledge)."""
    if not prediction:
        return _empty("Softmax distributions", "draw a digit to compare the models")
    T = prediction["temperature"]
    digits = [str(d) for d in range(10)]
    data = []
    for axis, key in (("", "p1"), ("2", "pT")):
        for name in ("teacher", "student", "baseline"):
            if name in prediction:
                data.append(dict(type="bar", x=digits, y=prediction[name][key], name=NAMES[name], legendgroup=name,
                                 marker=dict(color=COLORS[name]), showlegend=not axis,
                                 xaxis="x" + axis, yaxis="y" + axis))
    subtitle = dict(showarrow=False, xref="paper", yref="paper", y=1.02, yanchor="bottom", font=dict(size=13))
    return _figure(data, dict(
        barmode="group", uirevision="distribution", margin=dict(l=50, r=10, t=80, b=40),
        title=dict(text=f"Softmax · KL at T={T:g}: {prediction['kl_T']:.4f}" if prediction["kl_T"] is not None
                   else "Softmax (this run has no teacher)", y=0.97),
        xaxis=dict(domain=[0, 0.46], title=dict(text="digit")), xaxis2=dict(domain=[0.54, 1], title=dict(text="digit")),
        yaxis=dict(range=[0, 1], title=dict(text="probability")), yaxis2=dict(range=[0, 1], anchor="x2"),
        annotations=[dict(subtitle, text="T = 1: the answer", x=0.23, xanchor="center"),
                     dict(subtitle, text=f"T = {T:g}: KD's targets", x=0.77, xanchor="center")]))


def confusion_figure(fidelity):
    """The teacher's, KD student's and baseline's confusion matrices side by side (rows = true
    class), off-diagonal counts only in colour so the mistakes stand out."""
    if not fidelity:
        return _empty("Confusion matrices", "a finished run shows where each model errs")
    roles = [r for r in ("teacher", "student", "baseline") if r in fidelity["confusion"]]
    width = 1.0 / len(roles)
    digits = [str(d) for d in range(10)]
    peak = max(max(v for i, row in enumerate(fidelity["confusion"][r]) for j, v in enumerate(row) if i != j)
               for r in roles) or 1
    data, layout = [], {}
    for k, role in enumerate(roles):
        counts = fidelity["confusion"][role]
        z = [[None if i == j else v for j, v in enumerate(row)] for i, row in enumerate(counts)]
        text = [[str(v) if v else "" for v in row] for row in counts]
        suffix = "" if k == 0 else str(k + 1)
        data.append(dict(type="heatmap", x=digits, y=digits, z=z, text=text, texttemplate="%{text}",
                         textfont=dict(size=9), colorscale="Reds", zmin=0, zmax=peak, showscale=False,
                         xaxis="x" + suffix, yaxis="y" + suffix,
                         hovertemplate=f"{NAMES[role]}: true %{{y}}, said %{{x}}: %{{text}}<extra></extra>"))
        errors = sum(v for i, row in enumerate(counts) for j, v in enumerate(row) if i != j)
        layout["xaxis" + suffix] = dict(domain=[k * width + 0.02, (k + 1) * width - 0.02], type="category",
                                        title=dict(text=f"{NAMES[role]}: predicted ({errors} wrong)"))
        layout["yaxis" + suffix] = dict(type="category", autorange="reversed", anchor="x" + suffix,
                                        title=dict(text="true digit") if k == 0 else None, scaleanchor="x" + suffix)
    return _figure(data, dict(title=dict(text="Confusion matrices on the test digits (rows = true class; "
                                              "the diagonal, right answers, is counted but not coloured)"),
                              height=340, uirevision="confusion", margin=dict(l=50, r=10, t=50, b=50), **layout))


def example_figure(fidelity, kind, index):
    """The three models' softmaxes (T=1) for one digit of a "where KD changed the answer" gallery."""
    group = (fidelity or {}).get(kind)
    if not group or index is None or not 0 <= index < len(group["index"]):
        return _empty("One digit, three models", "click a digit above to see what each model said")
    digits = [str(d) for d in range(10)]
    data = [dict(type="bar", x=digits, y=group["probs"][role][index], name=NAMES[role],
                 marker=dict(color=COLORS[role])) for role in ("teacher", "student", "baseline")
            if role in group["probs"]]
    said = ", ".join(f"{NAMES[r]} {group['predicted'][r][index]}" for r in ("teacher", "student", "baseline")
                     if r in group["predicted"])
    return _figure(data, dict(barmode="group", uirevision=f"example-{kind}-{index}",
                              title=dict(text=f"Test digit #{group['index'][index]}, a {group['label'][index]}: {said}"),
                              xaxis=dict(title=dict(text="digit")),
                              yaxis=dict(range=[0, 1], title=dict(text="probability (T = 1)"))))


def _run_name(run):
    c = run["config"]
    return f"{run['id']}: {c['teacher']}→{c['student']} T={c['temperature']:g} α={c['alpha']:g}"


def compare_figure(runs):
    """Up to 4 runs overlaid: test accuracy per epoch (KD solid, baseline dotted) on the left, the
    KD student's soft and hard losses per step on the right. One colour per run."""
    if not runs:
        return _empty("Compare runs", "select up to 4 runs above")
    data = []
    for run, color in zip(runs, PALETTE):
        name, a, c = _run_name(run), run["accuracy"], run["curves"]
        group = dict(legendgroup=run["id"])
        data.append(dict(_line(a.get("epoch", []), [100 * v for v in a.get("student", [])], name, color,
                               mode="lines+markers"), **group))
        if any(v is not None for v in a.get("baseline", [])):
            data.append(dict(_line(a["epoch"], [None if v is None else 100 * v for v in a["baseline"]],
                                   f"{run['id']} baseline", color, "dot", 1.5, mode="lines+markers"),
                             showlegend=False, **group))
        for key, dash in (("soft", "dash"), ("hard", "dot")):
            if c.get(key):
                data.append(dict(_line(c["step"], c[key], f"{run['id']} {key}", color, dash, 1.5),
                                 xaxis="x2", yaxis="y2", showlegend=False, **group))
    return _figure(data, dict(
        title=dict(text="Test accuracy (KD solid, baseline dotted) · soft (dashed) and hard (dotted) loss"),
        height=380, uirevision="compare", legend=dict(orientation="h", y=-0.25),
        xaxis=dict(domain=[0, 0.46], title=dict(text="epoch")), yaxis=dict(title=dict(text="accuracy (%)")),
        xaxis2=dict(domain=[0.56, 1], title=dict(text="student step")),
        yaxis2=dict(anchor="x2", type="log", title=dict(text="loss"))))


def gain_map(runs):
    """KD gain (student - baseline, points) over T x alpha for finished runs that differ only in T,
    alpha and the seed (kdapp.aggregate.comparable). Identical runs count once; each cell
    shows its mean over distinct seeds ± its 95% interval and n, in bold when the interval
    excludes 0. Hinton's temperature question, answered by the lab's own runs."""
    runs = [r for r in runs if aggregate.gain(r) is not None]
    if not runs:
        return _empty("KD gain over T and α", "finished runs of the selected pair fill this map (try a sweep)")
    cells = aggregate.cells(runs, ("temperature", "alpha"))
    ts = sorted({t for t, _ in cells})
    alphas = sorted({a for _, a in cells})
    z = [[None] * len(ts) for _ in alphas]
    text = [[""] * len(ts) for _ in alphas]
    for (t, a), c in cells.items():
        z[alphas.index(a)][ts.index(t)] = c.mean
        label = f"{c.mean:+.2f} ± {c.half_width:.2f}<br>n={c.n}" + (" seed" if c.n == 1 else " seeds")
        text[alphas.index(a)][ts.index(t)] = f"<b>{label}</b>" if c.clears else label
    c = runs[0]["config"]
    limit = max(abs(v) for row in z for v in row if v is not None) or 1.0
    heat = dict(type="heatmap", x=[f"T={t:g}" for t in ts], y=[f"α={a:g}" for a in alphas], z=z, text=text,
                texttemplate="%{text}", colorscale="RdBu", zmid=0, zmin=-limit, zmax=limit,
                colorbar=dict(title=dict(text="gain (pts)")), hovertemplate="%{x} %{y}: %{text} pts<extra></extra>")
    seeds = len({r["config"]["seed"] for r in runs})
    return _figure([heat], dict(
        title=dict(text=f"KD gain (pts) ± 95% interval: {c['teacher']} → {c['student']}, {c['data']}, "
                        f"{c['train_fraction']:.0%} of the data · {len(aggregate.distinct(runs))} distinct runs, "
                        f"{seeds} seed{'s' if seeds > 1 else ''} · bold: beyond the noise"),
        height=360, uirevision="gain", xaxis=dict(type="category", title=dict(text="temperature")),
        yaxis=dict(type="category", title=dict(text="α (soft-target weight)"))))
