"""The Runs tab's figures, from plain run records (no tensors): up to four runs compared
(distillation runs' curves, or continual runs' accuracy and forgetting) and the KD gain map over
T x alpha. Built on kdapp.ui.plots' unvalidated figures; words in the language spoken now.
"""
from kdapp import aggregate
from kdapp.ui import plots, reports
from kdapp.ui.i18n import _, ngettext

PALETTE = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"]  # one colour per compared run


def run_name(run):
    """A run as a legend reads it: its id, pair, T and α."""
    c = run["config"]
    return f"{run['id']}: {c['teacher']}→{c['student']} T={c['temperature']:g} α={c['alpha']:g}"


def compare_figure(runs):
    """Up to 4 runs overlaid: test accuracy per epoch (KD solid, baseline dotted) on the left, the
    KD student's soft and hard losses per step on the right. One colour per run."""
    if not runs:
        return plots.empty(_("plot.compare.title_empty"), _("plot.compare.empty"))
    data = []
    for run, color in zip(runs, PALETTE):
        name, a, c = run_name(run), run["accuracy"], run["curves"]
        group = dict(legendgroup=run["id"])
        data.append(dict(plots.line(a.get("epoch", []), [100 * v for v in a.get("student", [])], name, color,
                                    mode="lines+markers"), **group))
        if any(v is not None for v in a.get("baseline", [])):
            data.append(dict(plots.line(a["epoch"], [None if v is None else 100 * v for v in a["baseline"]],
                                        _("curve.run_baseline").format(id=run["id"]), color, "dot", 1.5,
                                        mode="lines+markers"),
                             showlegend=False, **group))
        for key, dash in (("soft", "dash"), ("hard", "dot")):
            if c.get(key):
                data.append(dict(plots.line(c["step"], c[key], _(f"curve.run_{key}").format(id=run["id"]), color,
                                            dash, 1.5), xaxis="x2", yaxis="y2", showlegend=False, **group))
    return plots.figure(data, dict(
        title=dict(text=_("plot.compare.title")),
        height=380, uirevision="compare", legend=dict(orientation="h", y=-0.25),
        xaxis=dict(domain=[0, 0.46], title=dict(text=_("axis.epoch"))), yaxis=dict(title=dict(text=_("axis.accuracy"))),
        xaxis2=dict(domain=[0.56, 1], title=dict(text=_("axis.student_step"))),
        yaxis2=dict(anchor="x2", type="log", title=dict(text=_("axis.loss")))))


def gain_map(runs):
    """KD gain (student - baseline, points) over T x alpha for finished runs that differ only in T,
    alpha and the seed (kdapp.aggregate.comparable). Identical runs count once; each cell
    shows its mean over distinct seeds ± its 95% interval and n, in bold when the interval
    excludes 0. Hinton's temperature question, answered by the lab's own runs."""
    runs = [r for r in runs if aggregate.gain(r) is not None]
    if not runs:
        return plots.empty(_("plot.gain.title_empty"), _("plot.gain.empty"))
    cells = aggregate.cells(runs, ("temperature", "alpha"))
    ts = sorted({t for t, _ in cells})
    alphas = sorted({a for _, a in cells})
    z = [[None] * len(ts) for _ in alphas]
    text = [[""] * len(ts) for _ in alphas]
    for (t, a), c in cells.items():
        z[alphas.index(a)][ts.index(t)] = c.mean
        label = f"{c.mean:+.2f} ± {c.half_width:.2f}<br>n={c.n}" + (_("plot.gain.seed") if c.n == 1
                                                                    else _("plot.gain.seeds"))
        text[alphas.index(a)][ts.index(t)] = f"<b>{label}</b>" if c.clears else label
    c = runs[0]["config"]
    limit = max(abs(v) for row in z for v in row if v is not None) or 1.0
    heat = dict(type="heatmap", x=[f"T={t:g}" for t in ts], y=[f"α={a:g}" for a in alphas], z=z, text=text,
                texttemplate="%{text}", colorscale="RdBu", zmid=0, zmin=-limit, zmax=limit, showscale=False,
                hovertemplate=_("plot.gain.hover"))  # each cell says its gain: a colour bar only took a phone's width
    seeds, n_runs = len({r["config"]["seed"] for r in runs}), len(aggregate.distinct(runs))
    return plots.figure([heat], dict(
        title=dict(text=_("plot.gain.title").format(
            pair=f"{c['teacher']} → {c['student']}", data=reports.data_name(c["data"]),
            fraction=f"{c['train_fraction']:.0%}",
            seeds=ngettext("plot.gain.n_seed", "plot.gain.n_seeds", seeds).format(n=seeds),
            runs=ngettext("plot.gain.n_run", "plot.gain.n_runs", n_runs).format(n=n_runs))),
        # three short title lines, not one long one that a phone cut after "± 95% interval: seed_t"
        height=390, margin=dict(plots.LAYOUT["margin"], t=100), uirevision="gain",
        xaxis=dict(type="category", title=dict(text=_("axis.temperature_plain"))),
        yaxis=dict(type="category", title=dict(text=_("axis.alpha")))))


def continual_compare_figure(runs):
    """Up to 4 continual runs side by side: each strategy's average accuracy after the last task
    (left) and its forgetting (right), one colour per run."""
    from kdapp.ui import continual  # its strategies' words; imported here, as it builds a tab (gradio)
    runs = [r for r in runs if (r.get("metrics") or {}).get("strategies")]
    if not runs:
        return plots.empty(_("continual.compare.empty"), _("continual.compare.empty_hint"))
    data = []
    for run, color in zip(runs, PALETTE):
        results = run["metrics"]["strategies"]
        names = [s for s in continual.STRATEGIES if s in results]  # the same order in every run
        label = _("continual.compare.run").format(
            id=run["id"], scenario=continual.scenario_name(run["config"]["scenario"]), n=run["config"]["tasks"])
        for key, axis in (("average_acc", ""), ("forgetting", "2")):
            data.append(dict(type="bar", x=[continual.short(s) for s in names],
                             y=[100 * results[s][key] for s in names], name=label, marker=dict(color=color),
                             legendgroup=run["id"], showlegend=not axis, xaxis=f"x{axis}", yaxis=f"y{axis}"))
    return plots.figure(data, dict(
        title=dict(text=_("continual.compare.title")), barmode="group",
        height=380, uirevision="compare-continual", legend=dict(orientation="h", y=-0.25),
        xaxis=dict(domain=[0, 0.46]), yaxis=dict(range=[0, 100], title=dict(text=_("continual.compare.average"))),
        xaxis2=dict(domain=[0.56, 1]),
        yaxis2=dict(anchor="x2", range=[0, 100], title=dict(text=_("continual.compare.forgetting")))))
