"""The Continual tab: split MNIST learnt task after task by fine-tuning, LwF, the memory bank and
joint training, with one live chart panel per strategy and one line per task, and a drawing read
by each strategy's model after the last task. `build(get_lab, owner)` makes the tab's contents
inside the caller's `gr.Tab`; the figures and text are plain functions of a run record.
"""
import html

import gradio as gr

from kdapp.evaluation.inference import BlankCanvas, CanvasError
from kdapp.lab import continual as lab_continual
from kdapp.training.continual import STRATEGIES, TASK_SPLITS
from kdapp.ui import plots, reports

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
        layout["annotations"].append(dict(text=TITLES.get(name, name), x=sum(domain) / 2, y=1.08, xref="paper",
                                          yref="paper", showarrow=False, font=dict(size=13)))
    layout.update(title=dict(text=f"{c['scenario']}-incremental, {len(tasks)} tasks: accuracy on each task "
                                  "after each task", y=0.98), uirevision=run["id"], height=360,
                  margin=dict(l=50, r=10, t=70, b=40))
    return plots._figure(data, layout)


def summary(run):
    """The run's status, then average accuracy and forgetting per strategy once there is a matrix."""
    if not run:
        return "No continual run yet: choose the settings and press **Start**."
    rid, state = html.escape(run["id"]), run["state"]
    head = f"**Run {rid}**: {state} · {reports.settings_line(run['config'])}"
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


def build(get_lab, owner):
    """The tab's components and handlers. `get_lab()` returns the server's Lab; `owner` is the
    page's owner-token state (the same one the Distill tab uses)."""
    gr.Markdown(INTRO, elem_id="continual-intro")
    with gr.Row():
        tasks = gr.Radio([5, 2], value=5, label="Tasks", info="5 of two digits, or 2 of five")
        scenario = gr.Radio(["class", "task"], value="class", label="Scenario")
        strategies = gr.CheckboxGroup(list(STRATEGIES), value=list(STRATEGIES), label="Strategies")
    with gr.Row():
        memory = gr.Slider(20, 2000, value=200, step=10, label="Memory bank (digits)")
        epochs = gr.Slider(1, 10, value=5, step=1, label="Epochs per task", info="5 on the sample, 2 on full MNIST")
        temperature = gr.Slider(1, 10, value=2, step=0.5, label="T (LwF and the bank's KD)")
        data = gr.Dropdown(["sample", "mnist"], value="sample", label="Data")
    start_btn = gr.Button("Start continual run", variant="primary", elem_id="continual-start")
    notice = gr.Markdown(elem_id="continual-notice")
    shown = gr.State(None)  # the run on show: the visitor's last started, or one picked below
    status = gr.Markdown(summary(None), elem_id="continual-status")
    chart = gr.Plot(figure(None), elem_id="continual-chart", show_label=False)
    picker = gr.Dropdown([], label="Show a continual run", elem_id="continual-runs")
    with gr.Row():
        with gr.Column(scale=1):
            sketch = gr.Sketchpad(label="Draw a digit: read by each strategy's model after the last task",
                                  elem_id="continual-sketch", type="numpy", image_mode="RGBA", canvas_size=(280, 280),
                                  brush=gr.Brush(colors=["#000000"], color_mode="fixed", default_size=9),
                                  layers=False, transforms=())
        with gr.Column(scale=2):
            draw_note = gr.Markdown(elem_id="continual-draw-note")
            with gr.Row():
                labels = [gr.Label(num_top_classes=3, label=TITLES[name], elem_id=f"continual-{name}")
                          for name in STRATEGIES]
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
            return gr.skip(), gr.skip(), gr.skip(), previous
        run = lab.run(run_id) if run_id else None
        choices = [(f"run {r['id']}: {r['config']['scenario']}, {r['config']['tasks']} tasks, {r['state']}", r["id"])
                   for r in listed]
        return summary(run), figure(run), gr.update(choices=choices, value=run_id), key

    def read(canvas, run_id, owner_token):
        lab = get_lab()
        listed = [r for r in lab_continual.runs(lab) if r["state"] == "finished"]
        run_id = run_id or next((r["id"] for r in listed), None)
        if run_id is None:
            return ["Finish a continual run first: its models read the drawing."] + [None] * len(STRATEGIES)
        try:
            result = lab_continual.predict(lab, run_id, canvas)
        except BlankCanvas:
            return [""] + [None] * len(STRATEGIES)
        except (CanvasError, LookupError) as e:
            return [reports.hint(str(e))] + [None] * len(STRATEGIES)
        note = f"Run {html.escape(run_id)}'s models after the last task. " + " ".join(map(html.escape, result["notes"]))
        return [note] + [reports.top_labels(result["probs"][s]) if s in result["probs"] else None for s in STRATEGIES]

    private = dict(api_visibility="private", show_progress="hidden")
    controls = [tasks, scenario, strategies, memory, epochs, temperature, data]
    # Named apart: this tab is built before the Distill tab's events, and gradio would give its
    # `start` the name the Distill tab's Start has always had for scripts (/call/start).
    start_btn.click(start, [owner, *controls], [notice, shown], concurrency_limit=None, api_name="continual_start",
                    **private)
    picker.input(lambda run_id: run_id, picker, shown, api_name="continual_pick", **private)
    gr.Timer(1.0).tick(refresh, [shown, owner, last], [status, chart, picker, last], concurrency_limit=None,
                       api_name="continual_refresh",
                       queue=False, **private)
    sketch.change(read, [sketch, shown, owner], [draw_note, *labels], queue=False, api_name="continual_read",
                  **private)
