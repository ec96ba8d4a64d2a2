"""The Continual tab: split MNIST learnt task after task by fine-tuning, LwF, the memory bank and
joint training, with one live chart panel per strategy and one line per task, and a drawing read
by each strategy's model after the last task. `build(get_lab, owner)` makes the tab's contents
inside the caller's `gr.Tab` and returns the components the page wires to (a link's run, the Runs
tab's "show"); the figures, tables and text are plain functions of run records.

The drawing is the Distill tab's canvas (drawing.js's pen and in-browser preprocessing, with
static/continual.js): at each pen-up the browser sends the prepared 28x28 digit to `read_digit`,
and the server reads it with every strategy's model.

Words come from the catalogs (kdapp.ui.i18n): labels are gr.I18n keys, the choices come again in
the page's language from on_load (`choices`), the handlers speak the page's language (`lang`), and
continual.js picks its words (`continual.draw.*`, the strategies' names) as drawing.js does.
"""
import html
import json
from types import SimpleNamespace

import gradio as gr

from kdapp.evaluation.inference import BlankCanvas, CanvasError
from kdapp.lab import continual as lab_continual
from kdapp.training.continual import STRATEGIES, TASK_SPLITS
from kdapp.ui import drawing, i18n, plots, reports
from kdapp.ui.controls import PRIVATE
from kdapp.ui.i18n import _, ngettext
from kdapp.ui.sentences import known

TASK_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")
SCENARIOS = ("class", "task")
# The catalogs' entries continual.js speaks, in every language: it picks one from navigator.language.
CATALOG_PREFIXES = ("continual.draw.", "continual.strategy.", "draw.clear", "draw.seen")
PANEL = """
<div class="kd-draw kd-continual">
  <div class="kd-pad">
    <div id="continual-sketch"><canvas width="{canvas}" height="{canvas}" aria-label="{canvas_label}"
      data-t-aria="continual.draw.canvas"></canvas></div>
    <button id="continual-clear" class="lg secondary" type="button" data-t="draw.clear">{clear}</button>
  </div>
  <div class="kd-answers">
    <div class="kd-boxes kd-strategies">{boxes}</div>
    <div class="kd-seen">
      <figure class="kd-seen28"><canvas width="28" height="28"></canvas><figcaption data-t="draw.seen">{seen}</figcaption></figure>
      <div id="continual-draw-note" aria-live="polite"></div>
    </div>
  </div>
</div>
"""
TAB_ID = "continual-tab"  # the page's gr.Tab id: a link or the Runs tab selects it
BOX = ('<div class="kd-box" data-strategy="{name}"><div class="kd-label" data-t="continual.strategy.{name}">{title}'
       '</div><div class="kd-pred"></div></div>')


def title(name):
    """A strategy's name with its note, in the language spoken now: "memory bank (replay + KD)"."""
    return _(f"continual.strategy.{name}") if name in STRATEGIES else name


def short(name):
    """A strategy's name without its note: "memory bank"."""
    return _(f"continual.short.{name}") if name in STRATEGIES else name


def scenario_name(scenario):
    """"class-incremental", "类增量"."""
    return _(f"continual.scenario.{scenario}") if scenario in SCENARIOS else scenario


def figure(run):
    """One panel per strategy: x = after task i, y = test accuracy on task j (one line each, from
    the task it is learnt in), built from the run's continual_task rows as they arrive."""
    if not run or not run.get("config", {}).get("strategies"):
        return plots.empty(_("continual.chart.empty"), _("continual.chart.empty_hint"))
    c = run["config"]
    tasks, strategies = TASK_SPLITS[c["tasks"]], c["strategies"]
    rows = {(r["strategy"], r["task"]): r["accuracies"] for r in (run.get("accuracy") or {}).get("continual", [])}
    width, gap = 1 / len(strategies), 0.04
    data, layout = [], {"annotations": []}
    for k, name in enumerate(strategies):
        axis = "" if k == 0 else str(k + 1)
        done = [i for i in range(len(tasks)) if (name, i) in rows]
        for j, digits in enumerate(tasks):
            after = [i for i in done if i >= j]
            data.append(dict(type="scatter", x=[i + 1 for i in after], y=[100 * rows[(name, i)][j] for i in after],
                             mode="lines+markers", name=_("continual.chart.task").format(n=j + 1, digits="/".join(map(str, digits))),
                             legendgroup=f"task{j}", showlegend=k == 0, xaxis=f"x{axis}", yaxis=f"y{axis}",
                             line=dict(color=TASK_COLORS[j % len(TASK_COLORS)], width=2)))
        domain = [k * width + (gap / 2 if k else 0), (k + 1) * width - (gap / 2 if k < len(strategies) - 1 else 0)]
        layout[f"xaxis{axis}"] = dict(domain=domain, range=[0.7, len(tasks) + 0.3], dtick=1, anchor=f"y{axis}",
                                      title=dict(text=_("continual.chart.after")) if k == 0 else None)
        layout[f"yaxis{axis}"] = dict(range=[-3, 103], anchor=f"x{axis}", showticklabels=k == 0,
                                      title=dict(text=_("continual.chart.accuracy")) if k == 0 else None)
        # The short name, and the axes' titles on the first panel only: four panels side by side are
        # ~65 px each on a phone (the table says the bounds).
        layout["annotations"].append(dict(text=short(name), x=sum(domain) / 2, xanchor="center", y=1.02,
                                          yanchor="bottom", xref="paper", yref="paper", showarrow=False,
                                          font=dict(size=12)))
    layout.update(title=dict(text=_("continual.chart.title").format(scenario=scenario_name(c["scenario"]),
                                                                    n=len(tasks)),
                             y=0.97, yanchor="top", font=dict(size=14)),
                  uirevision=run["id"], height=380, margin=dict(l=50, r=10, t=85, b=40))
    return plots.figure(data, layout)


def summary(run):
    """The run's status and its link, then average accuracy and forgetting per strategy once
    there is a matrix."""
    if not run:
        return _("continual.status.none")
    state = run["state"]
    head = _("continual.status.head").format(id=html.escape(run["id"]), state=reports.state_name(state),
                                             settings=reports.settings_line(run["config"]),
                                             link=reports.run_link(run["id"]))
    if state == "queued" and run.get("position"):
        head += " · " + _("continual.status.position").format(position=run["position"])
    elif state != "finished":
        head += f" · {html.escape(known(run.get('message') or ''))}"
    if run.get("resumed_from_epoch") is not None:  # a restart in between: the tasks learnt before it were kept
        n = run["resumed_from_epoch"]
        head += " · " + ngettext("continual.status.resumed_1", "continual.status.resumed", n).format(n=n)
    results = ((run.get("metrics") or {}).get("strategies")) or {}
    if not results:
        return head
    columns = [_(f"continual.column.{name}") for name in ("strategy", "average", "forgetting", "first")]
    lines = [head, "", "| " + " | ".join(columns) + " |", "|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {title(name)} | {r['average_acc']:.1%} | {r['forgetting']:.1%} | "
                     f"{r['acc_matrix'][-1][0]:.1%} |")
    return "\n".join(lines)


def answer(lab, run_id, pixels):
    """The drawing's answer for continual.js, in the language spoken now: {"run", "probs":
    {strategy: [p_0..p_9]}, "description", "notes"} from the run's models after its last task (no
    run: the newest finished one), or {"error": sentence}; {"blank": True} for no ink."""
    run_id = run_id if isinstance(run_id, str) and run_id else None
    if run_id is None:
        run_id = next((r["id"] for r in lab_continual.runs(lab, limit=1, states=("finished",))), None)
        if run_id is None:
            return {"error": _("continual.draw.finish_first")}
    try:
        result = lab_continual.read(lab, run_id, pixels)
    except BlankCanvas:
        return {"blank": True}
    except (CanvasError, LookupError) as e:
        return {"error": _("continual.draw.error").format(reason=known(str(e).strip("'\"")))}
    c = lab.run(run_id)["config"]
    last = TASK_SPLITS[c["tasks"]][-1]
    return {"run": run_id, "probs": result["probs"], "notes": [known(n) for n in result["notes"]],
            "description": _("continual.draw.description").format(id=run_id, first=last[0], last=last[-1],
                                                                   scenario=scenario_name(c["scenario"]))}


def again(lab, owner, run_id):
    """The Run again button: the run on show's settings queued again as a new run of this
    visitor's. Returns (notice, the new run's id or gr.skip())."""
    if not run_id:
        return reports.notice(_("notice.nothing_to_run_again"), ok=False), gr.skip()
    record, message = lab.run_again(run_id, owner)
    return reports.notice(known(message), ok=None if record else False), (record["id"] if record else gr.skip())


def panel(get_lab):
    """The drawing: the canvas, one answer box per strategy, the 28x28 the models see."""
    def read_digit(request):  # gradio hands a server function the page's one argument
        request = request if isinstance(request, dict) else {}
        with i18n.speaking(request.get("lang")):  # continual.js's language, picked as drawing.js's
            return answer(get_lab(), request.get("run"), request.get("image"))

    # The markup in English; continual.js puts it in the page's language as it mounts.
    markup = PANEL.format(canvas=drawing.CANVAS, canvas_label=_("continual.draw.canvas"), clear=_("draw.clear"),
                          seen=_("draw.seen"), boxes="".join(BOX.format(name=name, title=html.escape(title(name)))
                                                             for name in STRATEGIES))
    cfg = {"constants": drawing.constants(), "brush_radius": drawing.BRUSH_RADIUS, "strategies": list(STRATEGIES),
           "run_selector": "#continual-drawing-run",
           "catalogs": {lang: {k: v for k, v in catalog.items() if k.startswith(CATALOG_PREFIXES)}
                        for lang, catalog in i18n.CATALOGS.items()}}
    mount = f"const cfg = {json.dumps(cfg)};\ncfg.server = server;\nwindow.kdappContinual.mount(element, cfg);"
    static = f"{drawing.PREFIX}/static"
    head = (f'<link rel="stylesheet" href="{static}/drawing.css"><script src="{static}/drawing.js"></script>'
            f'<link rel="stylesheet" href="{static}/continual.css"><script src="{static}/continual.js"></script>')
    return gr.HTML(markup, html_template="${value}", js_on_load=mount, head=head, elem_id="continual-drawing",
                   server_functions=[read_digit], apply_default_css=False)


# ---- the Runs tab's view of continual runs ----
RUN_COLUMNS = ["id", "state", "scenario", "tasks", "memory", "T", "epochs", *STRATEGIES, "time"]


def run_headers():
    """RUN_COLUMNS in the language spoken now: a strategy's column is "<its name> avg / forgetting"."""
    return [_("continual.column.strategy_avg").format(strategy=short(c)) if c in STRATEGIES
            else c if c == "T" else _(f"continual.column.{c}") for c in RUN_COLUMNS]


def runs_rows(records):
    """The Runs tab's table of continual runs, newest first: average accuracy and forgetting per strategy."""
    rows = []
    for r in records:
        c, results = r["config"], ((r["metrics"] or {}).get("strategies") or {})
        cells = [f"{results[s]['average_acc']:.1%} / {results[s]['forgetting']:.1%}" if s in results
                 else ("·" if s in c["strategies"] else "") for s in STRATEGIES]
        seconds = (r["metrics"] or {}).get("seconds")
        rows.append([r["id"], reports.state_name(r["state"]), scenario_name(c["scenario"]), c["tasks"], c["memory"],
                     c["temperature"], c["epochs"], *cells, f"{seconds:.0f} s" if seconds else ""])
    return {"headers": run_headers(), "data": rows or [[""] * len(RUN_COLUMNS)]}


def choices():
    """The choice controls' (words, value) pairs in the language spoken now, by control name."""
    return {"scenario": [(scenario_name(s), s) for s in SCENARIOS],
            "strategies": [(short(s), s) for s in STRATEGIES],
            "data": [(_(f"continual.data.{d}"), d) for d in ("sample", "mnist")]}


def build(get_lab, owner, lang, I18N):
    """The tab's components and handlers. `get_lab()` returns the server's Lab; `owner` is the
    page's owner-token state (the same one the Distill tab uses), `lang` its language state (on_load
    sets it), `I18N` the page's gr.I18n. Returns the run on show and the choice controls, which
    on_load fills with `choices()` in the page's language."""
    gr.Markdown(I18N("continual.intro"), elem_id="continual-intro")
    words = choices()  # English until on_load
    with gr.Row():
        tasks = gr.Radio([5, 2], value=5, label=I18N("continual.tasks"), info=I18N("continual.tasks.info"),
                         elem_id="continual-tasks")
        scenario = gr.Radio(words["scenario"], value="class", label=I18N("continual.scenario"),
                            elem_id="continual-scenario")
        strategies = gr.CheckboxGroup(words["strategies"], value=list(STRATEGIES), label=I18N("continual.strategies"),
                                      elem_id="continual-strategies")
    with gr.Row():
        memory = gr.Slider(20, 2000, value=200, step=10, label=I18N("continual.memory"))
        epochs = gr.Slider(1, 10, value=5, step=1, label=I18N("continual.epochs"), info=I18N("continual.epochs.info"),
                           elem_id="continual-epochs")
        temperature = gr.Slider(1, 10, value=2, step=0.5, label=I18N("continual.temperature"))
        data = gr.Dropdown(words["data"], value="sample", label=I18N("continual.data"), elem_id="continual-data")
    with gr.Row():
        start_btn = gr.Button(I18N("continual.start"), variant="primary", elem_id="continual-start", scale=3)
        again_btn = gr.Button(I18N("button.run_again"), elem_id="continual-run-again", scale=1)
    notice = gr.Markdown(elem_id="continual-notice")
    shown = gr.State(None)  # the run on show: the visitor's last started, or one picked below
    status = gr.Markdown(I18N("continual.status.none"), elem_id="continual-status")
    chart = gr.Plot(figure(None), elem_id="continual-chart", show_label=False)
    picker = gr.Dropdown([], label=I18N("continual.runs"), elem_id="continual-runs")
    gr.Markdown(I18N("continual.draw.heading"), elem_id="continual-draw-head")
    panel(get_lab)
    # The run whose models read the drawing ("<id> <state>"): in the page, so continual.js reads it
    # again when the run on show changes or finishes.
    drawing_run = gr.Textbox("", visible="hidden", elem_id="continual-drawing-run", show_label=False)
    last = gr.State(None)
    notice_for = gr.State(None)  # the run the notice announced: the notice goes when that run ends

    def start(owner_token, lang, *values):
        settings = dict(zip(("tasks", "scenario", "strategies", "memory", "epochs", "temperature", "data"), values))
        settings.update(tasks=int(settings["tasks"]), memory=int(settings["memory"]), epochs=int(settings["epochs"]),
                        strategies=tuple(s for s in STRATEGIES if s in (settings["strategies"] or ())))
        record, message = lab_continual.start(get_lab(), settings, owner_token)
        with i18n.speaking(lang):
            new = record["id"] if record else gr.skip()
            return reports.notice(known(message), ok=None if record else False), new, new

    def run_again(owner_token, lang, shown_id, picked):
        with i18n.speaking(lang):  # the run on show: the one started or picked here, else the picker's (the newest)
            text, new = again(get_lab(), owner_token, shown_id or picked)
            return text, new, new

    def notice_outputs(listed, announced):
        """Clear the notice ("Run X started ...") once the run it announced has ended, as the Distill tab does;
        a refusal's notice (no run announced) stays until the next click. Read from the tick's listing (the
        announced run is among the newest), not a record of its own every second."""
        state = next((r["state"] for r in listed if r["id"] == announced), None)
        if announced and state not in ("queued", "running"):
            return "", None
        return gr.skip(), gr.skip()

    def refresh(run_id, owner_token, previous, announced, lang, request: gr.Request = None):
        lang = lang or i18n.page_language(request)  # before the page's load set it
        lab = get_lab()
        listed = lab_continual.runs(lab)
        if run_id is None:  # the visitor's own newest continual run, else the newest anyone's
            mine = [r for r in listed if lab.owns(r["id"], owner_token)]
            run_id = (mine or listed or [{"id": None}])[0]["id"]
        key = (lab.version(), run_id, len(listed), lang)
        if previous and previous == key:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), previous, *notice_outputs(listed, announced)
        run = lab.run(run_id) if run_id else None
        if run and not lab_continual.is_continual(run):  # a distillation run's id: not this tab's to show
            run = None
        if run and all(r["id"] != run["id"] for r in listed):  # an older run, opened by a link
            listed = [*listed, run]
        with i18n.speaking(lang):
            picked = [(_("continual.pick").format(id=r["id"], scenario=scenario_name(r["config"]["scenario"]),
                                                  n=r["config"]["tasks"], state=reports.state_name(r["state"])),
                       r["id"]) for r in listed]
            return (summary(run), figure(run), gr.update(choices=picked, value=run["id"] if run else None),
                    f"{run['id']} {run['state']}" if run else "", key, *notice_outputs(listed, announced))

    controls = [tasks, scenario, strategies, memory, epochs, temperature, data]
    # Named apart: this tab is built before the Distill tab's events, and gradio would give its
    # `start` the name the Distill tab's Start has always had for scripts (/call/start).
    start_btn.click(start, [owner, lang, *controls], [notice, shown, notice_for], concurrency_limit=None,
                    api_name="continual_start", **PRIVATE)
    again_btn.click(run_again, [owner, lang, shown, picker], [notice, shown, notice_for], concurrency_limit=None,
                    api_name="continual_run_again", **PRIVATE)
    picker.input(lambda run_id: run_id, picker, shown, api_name="continual_pick", **PRIVATE)
    gr.Timer(1.0).tick(refresh, [shown, owner, last, notice_for, lang], [status, chart, picker, drawing_run, last,
                                                                          notice, notice_for],
                       concurrency_limit=None, api_name="continual_refresh", queue=False, **PRIVATE)
    drawing_run.change(None, drawing_run, None, js="(run) => { window.kdappContinual?.setRun(run); }", **PRIVATE)
    return SimpleNamespace(shown=shown, choice_controls={"scenario": scenario, "strategies": strategies, "data": data})
