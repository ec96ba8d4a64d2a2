"""The Continual tab: split MNIST learnt task after task by fine-tuning, LwF, the memory bank and
joint training, with one live chart panel per strategy and one line per task, and a drawing read
by each strategy's model after the last task. `build(get_lab, owner)` makes the tab's contents
inside the caller's `gr.Tab` and returns the components the page wires to (a link's run, the Runs
tab's "show"); the figures, tables and text are plain functions of run records.

The drawing is the Distill tab's canvas (drawing.js's pen and in-browser preprocessing, with
static/continual.js): at each pen-up the browser sends the prepared 28x28 digit to `read_digit`,
and the server reads it with every strategy's model.
"""
import html
import json
from types import SimpleNamespace

import gradio as gr

from kdapp.evaluation.inference import BlankCanvas, CanvasError
from kdapp.lab import continual as lab_continual
from kdapp.training.continual import STRATEGIES, TASK_SPLITS
from kdapp.ui import drawing, plots, reports

TASK_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")
TITLES = {"finetune": "fine-tuning (lower bound)", "lwf": "LwF (old model teaches)",
          "replay": "memory bank (replay + KD)", "joint": "joint (upper bound)"}
INTRO = (
    "**Learning without forgetting.** One network learns MNIST in tasks: 0/1, then 2/3, … 8/9 (or 0–4, then "
    "5–9), never seeing an earlier task's digits again. *Fine-tuning* forgets each task as the next arrives. "
    "*LwF* lets the model from before the task teach the new one at temperature T (Li & Hoiem 2016). The "
    "*memory bank* keeps a fixed budget of digits with the logits they had, and replays them with CE + KD "
    "(iCaRL-style). *Joint* trains on every task so far: the upper bound. Class-incremental: one 10-way answer, "
    "no task label; task-incremental: the answer is picked among the task's digits. Each panel below is one "
    "strategy; each line one task's test accuracy, after each task. "
    "Then draw a 0 and see which models still know it. Details: docs/continual.md.")
DRAW_HINT = ("Draw a digit: each strategy's model after the last task reads it. After 0–4 then 5–9, draw a 0: "
             "fine-tuning has forgotten it, the memory bank has not.")
PANEL = """
<div class="kd-draw kd-continual">
  <div class="kd-pad">
    <div id="continual-sketch"><canvas width="{canvas}" height="{canvas}" aria-label="Drawing canvas: draw a digit for the continual models"></canvas></div>
    <button id="continual-clear" class="lg secondary" type="button">Clear</button>
  </div>
  <div class="kd-answers">
    <div class="kd-boxes kd-strategies">{boxes}</div>
    <div class="kd-seen">
      <figure class="kd-seen28"><canvas width="28" height="28"></canvas><figcaption>What the models see (28×28)</figcaption></figure>
      <div id="continual-draw-note" aria-live="polite"></div>
    </div>
  </div>
</div>
"""
TAB_ID = "continual-tab"  # the page's gr.Tab id: a link or the Runs tab selects it
BOX = '<div class="kd-box" data-strategy="{name}"><div class="kd-label">{title}</div><div class="kd-pred"></div></div>'


def short(name):
    """A strategy's name without its note: "memory bank" for "memory bank (replay + KD)"."""
    return TITLES.get(name, name).split(" (")[0]


def figure(run):
    """One panel per strategy: x = after task i, y = test accuracy on task j (one line each, from
    the task it is learnt in), built from the run's continual_task rows as they arrive."""
    if not run or not run.get("config", {}).get("strategies"):
        return plots._empty("Accuracy per task", "start a continual run to see each task's accuracy here")
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
                             mode="lines+markers", name=f"task {j + 1}: {'/'.join(map(str, digits))}",
                             legendgroup=f"task{j}", showlegend=k == 0, xaxis=f"x{axis}", yaxis=f"y{axis}",
                             line=dict(color=TASK_COLORS[j % len(TASK_COLORS)], width=2)))
        domain = [k * width + (gap / 2 if k else 0), (k + 1) * width - (gap / 2 if k < len(strategies) - 1 else 0)]
        layout[f"xaxis{axis}"] = dict(domain=domain, range=[0.7, len(tasks) + 0.3], dtick=1, anchor=f"y{axis}",
                                      title=dict(text="after task"))
        layout[f"yaxis{axis}"] = dict(range=[-3, 103], anchor=f"x{axis}", showticklabels=k == 0,
                                      title=dict(text="test accuracy (%)") if k == 0 else None)
        # The short name: four panels side by side are ~65 px each on a phone (the table says the bounds).
        layout["annotations"].append(dict(text=short(name), x=sum(domain) / 2, xanchor="center", y=1.02,
                                          yanchor="bottom", xref="paper", yref="paper", showarrow=False,
                                          font=dict(size=12)))
    layout.update(title=dict(text=f"Accuracy on each task, after each task<br>{c['scenario']}-incremental, "
                                  f"{len(tasks)} tasks", y=0.97, yanchor="top", font=dict(size=14)),
                  uirevision=run["id"], height=380, margin=dict(l=50, r=10, t=85, b=40))
    return plots._figure(data, layout)


def summary(run):
    """The run's status and its link, then average accuracy and forgetting per strategy once
    there is a matrix."""
    if not run:
        return "No continual run yet: choose the settings and press **Start**."
    rid, state = html.escape(run["id"]), run["state"]
    head = f"**Run {rid}**: {state} · {reports.settings_line(run['config'])} · {reports.run_link(run['id'])}"
    if state == "running":
        head += f" · {html.escape(run.get('message') or '')}"
    elif state == "queued" and run.get("position"):
        head += f" · position {run['position']} in the queue"
    elif state not in ("finished",):
        head += f" · {html.escape(run.get('message') or '')}"
    results = ((run.get("metrics") or {}).get("strategies")) or {}
    if not results:
        return head
    lines = [head, "", "| strategy | average accuracy | forgetting | task 1 after the last |", "|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {TITLES.get(name, name)} | {r['average_acc']:.1%} | {r['forgetting']:.1%} | "
                     f"{r['acc_matrix'][-1][0]:.1%} |")
    return "\n".join(lines)


def answer(lab, run_id, pixels):
    """The drawing's answer for continual.js: {"run", "probs": {strategy: [p_0..p_9]}, "description",
    "notes"} from the run's models after its last task (no run: the newest finished one), or
    {"error": sentence}; {"blank": True} for no ink."""
    run_id = run_id if isinstance(run_id, str) and run_id else None
    if run_id is None:
        run_id = next((r["id"] for r in lab_continual.runs(lab, limit=1, states=("finished",))), None)
        if run_id is None:
            return {"error": "Finish a continual run first: its models read the drawing."}
    try:
        result = lab_continual.read(lab, run_id, pixels)
    except BlankCanvas:
        return {"blank": True}
    except (CanvasError, LookupError) as e:
        return {"error": f"Could not read the drawing: {e}."}
    c = lab.run(run_id)["config"]
    last = TASK_SPLITS[c["tasks"]][-1]
    return {"run": run_id, "probs": result["probs"], "notes": result["notes"],
            "description": f"Run {run_id}'s models after its last task (digits {last[0]}–{last[-1]}), "
                           f"{c['scenario']}-incremental, each answering with all ten outputs."}


def panel(get_lab):
    """The drawing: the canvas, one answer box per strategy, the 28x28 the models see."""
    def read_digit(request):  # gradio hands a server function the page's one argument
        request = request if isinstance(request, dict) else {}
        return answer(get_lab(), request.get("run"), request.get("image"))

    markup = PANEL.format(canvas=drawing.CANVAS, boxes="".join(BOX.format(name=name, title=html.escape(TITLES[name]))
                                                              for name in STRATEGIES))
    cfg = {"constants": drawing.constants(), "brush_radius": drawing.BRUSH_RADIUS, "strategies": list(STRATEGIES),
           "hint": DRAW_HINT, "run_selector": "#continual-drawing-run"}
    mount = f"const cfg = {json.dumps(cfg)};\ncfg.server = server;\nwindow.kdappContinual.mount(element, cfg);"
    static = f"{drawing.PREFIX}/static"
    head = (f'<link rel="stylesheet" href="{static}/drawing.css"><script src="{static}/drawing.js"></script>'
            f'<link rel="stylesheet" href="{static}/continual.css"><script src="{static}/continual.js"></script>')
    return gr.HTML(markup, html_template="${value}", js_on_load=mount, head=head, elem_id="continual-drawing",
                   server_functions=[read_digit], apply_default_css=False)


# ---- the Runs tab's view of continual runs ----
RUN_COLUMNS = ["id", "state", "scenario", "tasks", "memory", "T", "epochs per task",
               *(f"{short(s)} avg / forgetting" for s in STRATEGIES), "time"]


def runs_rows(records):
    """The Runs tab's table of continual runs, newest first: average accuracy and forgetting per strategy."""
    rows = []
    for r in records:
        c, results = r["config"], ((r["metrics"] or {}).get("strategies") or {})
        cells = [f"{results[s]['average_acc']:.1%} / {results[s]['forgetting']:.1%}" if s in results
                 else ("·" if s in c["strategies"] else "") for s in STRATEGIES]
        seconds = (r["metrics"] or {}).get("seconds")
        rows.append([r["id"], r["state"], c["scenario"], c["tasks"], c["memory"], c["temperature"], c["epochs"],
                     *cells, f"{seconds:.0f} s" if seconds else ""])
    return {"headers": RUN_COLUMNS, "data": rows or [[""] * len(RUN_COLUMNS)]}


def compare_figure(runs):
    """Up to 4 continual runs side by side: each strategy's average accuracy after the last task
    (left) and its forgetting (right), one colour per run."""
    runs = [r for r in runs if (r.get("metrics") or {}).get("strategies")]
    if not runs:
        return plots._empty("Compare continual runs", "select finished continual runs above")
    data = []
    for run, color in zip(runs, plots.PALETTE):
        results = run["metrics"]["strategies"]
        names = [s for s in STRATEGIES if s in results]
        label = f"{run['id']} ({run['config']['scenario']}, {run['config']['tasks']} tasks)"
        for key, axis in (("average_acc", ""), ("forgetting", "2")):
            data.append(dict(type="bar", x=[short(s) for s in names],
                             y=[100 * results[s][key] for s in names], name=label, marker=dict(color=color),
                             legendgroup=run["id"], showlegend=not axis, xaxis=f"x{axis}", yaxis=f"y{axis}"))
    return plots._figure(data, dict(
        title=dict(text="Continual runs: average accuracy after the last task · forgetting"), barmode="group",
        height=380, uirevision="compare-continual", legend=dict(orientation="h", y=-0.25),
        xaxis=dict(domain=[0, 0.46]), yaxis=dict(range=[0, 100], title=dict(text="average accuracy (%)")),
        xaxis2=dict(domain=[0.56, 1]),
        yaxis2=dict(anchor="x2", range=[0, 100], title=dict(text="forgetting (points)"))))


def build(get_lab, owner):
    """The tab's components and handlers. `get_lab()` returns the server's Lab; `owner` is the
    page's owner-token state (the same one the Distill tab uses)."""
    gr.Markdown(INTRO, elem_id="continual-intro")
    with gr.Row():
        tasks = gr.Radio([5, 2], value=5, label="Tasks", info="5 of two digits, or 2 of five",
                         elem_id="continual-tasks")
        scenario = gr.Radio(["class", "task"], value="class", label="Scenario")
        strategies = gr.CheckboxGroup(list(STRATEGIES), value=list(STRATEGIES), label="Strategies")
    with gr.Row():
        memory = gr.Slider(20, 2000, value=200, step=10, label="Memory bank (digits)")
        epochs = gr.Slider(1, 10, value=5, step=1, label="Epochs per task", info="5 on the sample, 2 on full MNIST",
                           elem_id="continual-epochs")
        temperature = gr.Slider(1, 10, value=2, step=0.5, label="T (LwF and the bank's KD)")
        data = gr.Dropdown(["sample", "mnist"], value="sample", label="Data")
    start_btn = gr.Button("Start continual run", variant="primary", elem_id="continual-start")
    notice = gr.Markdown(elem_id="continual-notice")
    shown = gr.State(None)  # the run on show: the visitor's last started, or one picked below
    status = gr.Markdown(summary(None), elem_id="continual-status")
    chart = gr.Plot(figure(None), elem_id="continual-chart", show_label=False)
    picker = gr.Dropdown([], label="Show a continual run", elem_id="continual-runs")
    gr.Markdown("### Draw a digit: each strategy's model after the last task reads it", elem_id="continual-draw-head")
    panel(get_lab)
    # The run whose models read the drawing ("<id> <state>"): in the page, so continual.js reads it
    # again when the run on show changes or finishes.
    drawing_run = gr.Textbox("", visible="hidden", elem_id="continual-drawing-run", show_label=False)
    last = gr.State(None)

    def start(owner_token, *values):
        settings = dict(zip(("tasks", "scenario", "strategies", "memory", "epochs", "temperature", "data"), values))
        settings.update(tasks=int(settings["tasks"]), memory=int(settings["memory"]), epochs=int(settings["epochs"]),
                        strategies=tuple(s for s in STRATEGIES if s in (settings["strategies"] or ())))
        record, message = lab_continual.start(get_lab(), settings, owner_token)
        return reports.notice(message), (record["id"] if record else gr.skip())

    def refresh(run_id, owner_token, previous):
        lab = get_lab()
        listed = lab_continual.runs(lab)
        if run_id is None:  # the visitor's own newest continual run, else the newest anyone's
            mine = [r for r in listed if lab.owns(r["id"], owner_token)]
            run_id = (mine or listed or [{"id": None}])[0]["id"]
        key = (lab.version(), run_id, len(listed))
        if previous and previous == key:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), previous
        run = lab.run(run_id) if run_id else None
        if run and not lab_continual.is_continual(run):  # a distillation run's id: not this tab's to show
            run = None
        choices = [(f"run {r['id']}: {r['config']['scenario']}, {r['config']['tasks']} tasks, {r['state']}", r["id"])
                   for r in listed]
        if run and all(r["id"] != run["id"] for r in listed):  # an older run, opened by a link
            choices.append((f"run {run['id']}: {run['config']['scenario']}, {run['config']['tasks']} tasks, "
                            f"{run['state']}", run["id"]))
        return (summary(run), figure(run), gr.update(choices=choices, value=run["id"] if run else None),
                f"{run['id']} {run['state']}" if run else "", key)

    private = dict(api_visibility="private", show_progress="hidden")
    controls = [tasks, scenario, strategies, memory, epochs, temperature, data]
    # Named apart: this tab is built before the Distill tab's events, and gradio would give its
    # `start` the name the Distill tab's Start has always had for scripts (/call/start).
    start_btn.click(start, [owner, *controls], [notice, shown], concurrency_limit=None, api_name="continual_start",
                    **private)
    picker.input(lambda run_id: run_id, picker, shown, api_name="continual_pick", **private)
    gr.Timer(1.0).tick(refresh, [shown, owner, last], [status, chart, picker, drawing_run, last],
                       concurrency_limit=None, api_name="continual_refresh", queue=False, **private)
    drawing_run.change(None, drawing_run, None, js="(run) => { window.kdappContinual?.setRun(run); }", **private)
    return SimpleNamespace(shown=shown)
