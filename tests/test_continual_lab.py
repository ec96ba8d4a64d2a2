"""Continual runs as first-class runs of the lab: the same queue (FIFO across kinds, the same
allowance per visitor), the same store (kept across a restart), listed and compared in the Runs
tab, linked by `?run=<id>`, and drawn on with the lab's own canvas (the browser prepares the
28x28, the server reads it with every strategy's model). The browser side is
test_continual_browser.py."""
import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from kdapp.config import RunConfig
from kdapp.evaluation import inference
from kdapp.lab import continual as lab_continual
from kdapp.lab.facade import Lab
from kdapp.lab.jobs import QueueFull, RunQueue
from kdapp.lab.store import RunStore
from kdapp.ui import i18n, sentences
from kdapp.tools.serving import wait_until
from kdapp.training.continual import ContinualConfig

CONTINUAL = ContinualConfig(tasks=2, epochs=1, data="sample")
DISTILL = RunConfig(epochs=1, train_fraction=0.05)
# A worker that takes its job and holds it until told to stop: the queue's order and caps without training.
HOLD = [sys.executable, "-c", "import sys; sys.stdin.readline(); sys.stdin.readline()"]


def held_queue(root):
    return RunQueue(RunStore(root), data_dir=root.parent / "data", per_owner=2, total=10, worker_command=HOLD)


def test_continual_runs_queue_fairly_with_distillation_runs_and_survive_a_restart(tmp_path):
    root = tmp_path / "runs"
    queue = held_queue(root)
    try:
        first = queue.submit(DISTILL, owner="alice")[0]["id"]
        assert wait_until(lambda: queue.get(first)["state"] == "running")
        mine = queue.submit(CONTINUAL, owner="alice")[0]["id"]
        with pytest.raises(QueueFull, match="cancel one or wait"):  # a continual run counts as a run
            queue.submit(CONTINUAL, owner="alice")
        theirs = queue.submit(CONTINUAL.__class__(tasks=5, epochs=1, data="sample"), owner="bob")[0]["id"]
        active = queue.active(owner="bob")
        assert [(r["id"], r["position"], r["mine"]) for r in active] == [(first, 0, False), (mine, 1, False),
                                                                         (theirs, 2, True)]
        assert 0 < active[1]["eta_s"] < active[2]["eta_s"]  # each continual run costs its strategies' epochs
    finally:
        queue.close()  # a server's stop: the rows stay as they are for the next server
    store = RunStore(root)
    assert [store.get(i)["state"] for i in (first, mine, theirs)] == ["running", "queued", "queued"]
    queue = held_queue(root)
    try:
        active = queue.active(owner="alice")
        # The one that was training first, then the queue in its order; alice is still at her allowance.
        assert [r["id"] for r in active] == [first, mine, theirs]
        assert [r["mine"] for r in active] == [True, True, False]
        with pytest.raises(QueueFull, match="cancel one or wait"):
            queue.submit(CONTINUAL, owner="alice")
        assert queue.get(mine)["config"] == CONTINUAL.to_dict()
        assert [r["id"] for r in queue.store.list(kind="continual")] == [theirs, mine]
        assert [r["id"] for r in queue.store.list(kind=None)] == [theirs, mine, first]
        assert "cancelled" in queue.cancel(mine, owner="alice")
    finally:
        queue.close()


def test_a_restart_tells_a_continual_run_it_resumes_after_a_task_not_an_epoch(tmp_path):
    store = RunStore(tmp_path / "runs")
    continual = store.create(CONTINUAL.to_dict(), owner="alice", state="running")["id"]
    distill = store.create(DISTILL.to_dict(), owner="alice", state="running")["id"]
    assert sorted(store.recover()[0]) == sorted([continual, distill])
    assert store.get(continual)["message"].endswith("it resumes after its last finished task")
    assert store.get(distill)["message"].endswith("it resumes from its last finished epoch")
    with i18n.speaking("zh"):
        assert sentences.known(store.get(continual)["message"]) == "服务器重启后已重新排队；将从最后完成的任务之后继续"


def digit_pixels(sample, digit):
    """A test digit of the sample as the browser sends it: 784 integers 0..255, white on black."""
    x = sample.test_x[sample.test_y == digit][0, 0] * 0.3081 + 0.1307
    return [int(v) for v in (x.clamp(0, 1) * 255).round().flatten().tolist()]


@pytest.mark.slow
def test_a_continual_run_left_running_by_a_killed_server_runs_again_and_reads_a_drawing(tmp_path, sample):
    # The row a killed server left: a continual run in the middle of training.
    root = tmp_path / "runs"
    config = ContinualConfig(tasks=2, epochs=1, data="sample", strategies=("finetune", "replay"))
    run_id = RunStore(root).create(config.to_dict(), owner="alice", state="running")["id"]
    lab = Lab(runs_dir=root, data_dir=tmp_path / "data").open()
    try:
        assert lab.queue.wait(run_id, timeout=300)
        run = lab.run(run_id)
        assert run["state"] == "finished", run["message"]
        rows = run["accuracy"]["continual"]  # trained afresh: each row once
        assert [(r["strategy"], r["task"]) for r in rows] == [("finetune", 0), ("finetune", 1), ("replay", 0),
                                                               ("replay", 1)]
        from kdapp.ui import continual as ui
        zero = digit_pixels(sample, 0)
        answer = ui.answer(lab, run_id, zero)
        assert answer["run"] == run_id and set(answer["probs"]) == {"finetune", "replay"}
        assert "after its last task (digits 5–9)" in answer["description"]
        finetune, replay = answer["probs"]["finetune"], answer["probs"]["replay"]
        assert max(range(10), key=finetune.__getitem__) >= 5  # fine-tuning on 5-9 forgot 0-4
        assert replay[0] > finetune[0]  # the memory bank kept some of the 0s
        # No run named: the newest finished one; the same digit prepared on the server reads the same.
        assert ui.answer(lab, None, zero)["probs"] == answer["probs"]
        canvas = np.asarray(zero, np.uint8).reshape(28, 28).repeat(10, 0).repeat(10, 1)
        served = lab_continual.predict(lab, run_id, 255 - canvas)["probs"]
        assert served["replay"] == pytest.approx(answer["probs"]["replay"], abs=0.05)
    finally:
        lab.close()


@pytest.mark.slow
def test_a_continual_run_killed_mid_way_resumes_after_its_last_saved_task(tmp_path, sample):
    from kdapp.lab.jobs import RESUME_NAME
    from kdapp.training import continual as cl, resume as resume_lib
    from kdapp.training.teachers import Cancelled
    root = tmp_path / "runs"
    config = ContinualConfig(tasks=2, epochs=1, data="sample", strategies=("finetune", "replay"))
    store = RunStore(root)
    run_id = store.create(config.to_dict(), owner="alice", state="running")["id"]
    # What a server killed during replay's second task can leave: the point after replay's first task, the
    # rows the server had stored, less the last one before the point (sent, not stored yet), and a row sent
    # after the point (replay, task 1) just before the kill.
    point = resume_lib.ResumePoint(store.run_dir(run_id) / RESUME_NAME)
    rows = []
    emit = lambda e: rows.append({k: e[k] for k in ("strategy", "task", "accuracies")}) \
        if e["type"] == "continual_task" else None
    with pytest.raises(Cancelled):
        cl.run(config, sample, emit=emit, should_stop=lambda: point.saves >= 3, resume=point)
    stale = {"strategy": "replay", "task": 1, "accuracies": [0.5, 0.5]}
    store.update(run_id, accuracy={"continual": [*rows[:2], stale]})
    lab = Lab(runs_dir=root, data_dir=tmp_path / "data").open()
    try:
        assert lab.queue.wait(run_id, timeout=300)
        run = lab.run(run_id)
        assert run["state"] == "finished", run["message"]
        assert run["resumed_from_epoch"] == 3  # tasks learnt before the kill: finetune's two, replay's first
        learnt = run["accuracy"]["continual"]  # each row once: the point's three, then replay's task 1 learnt again
        assert [(r["strategy"], r["task"]) for r in learnt] == [("finetune", 0), ("finetune", 1), ("replay", 0),
                                                                 ("replay", 1)]
        assert learnt[:3] == rows and learnt[3] != stale
        whole, _ = cl.run(config, sample)  # uninterrupted, in this process (another thread count: not bit for bit)
        for name, result in whole["strategies"].items():
            for got, expected in zip(run["metrics"]["strategies"][name]["acc_matrix"], result["acc_matrix"]):
                assert got == pytest.approx(expected, abs=0.01), name
        assert not (store.run_dir(run_id) / RESUME_NAME).exists()  # ended: its point is gone
        from kdapp.ui import continual as ui
        assert "resumed after a restart, with 3 tasks already learnt" in ui.summary(run)
    finally:
        lab.close()


def test_the_drawing_answer_says_why_it_cannot_read(tmp_path):
    lab = Lab(runs_dir=tmp_path / "runs", data_dir=tmp_path / "data")
    from kdapp.ui import continual as ui
    try:
        ink = [0] * 700 + [255] * 84
        assert "Finish a continual run first" in ui.answer(lab, None, ink)["error"]
        running = lab.store.create(CONTINUAL.to_dict(), owner=None, state="running")["id"]
        assert "is running: its models read the drawing once it has finished" in ui.answer(lab, running, ink)["error"]
        distill = lab.store.create(DISTILL.to_dict(), owner=None, state="finished")["id"]
        assert f"there is no continual run {distill}" in ui.answer(lab, distill, ink)["error"]
        assert ui.answer(lab, running, [0] * 784) == {"blank": True}
        for bad in (None, [0] * 783, [256] * 784, ["9"] * 784, [True] * 784):
            assert "784 integers from 0 to 255" in ui.answer(lab, running, bad)["error"]
    finally:
        lab.close()


def test_a_browser_prepared_digit_is_what_preprocess_makes():
    from kdapp.tools.serving import redrawn_canvases
    canvases, _ = redrawn_canvases(1, seed=0)
    prepared = inference.preprocess(canvases[0])
    again = inference.prepared_digit(prepared.image.flatten().tolist())
    assert np.array_equal(again.image, prepared.image)
    assert (again.tensor == prepared.tensor).all()
    with pytest.raises(inference.BlankCanvas):
        inference.prepared_digit([0] * 784)


FINISHED_METRICS = {"scenario": "class", "tasks": [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]], "seconds": 12.3, "strategies": {
    "finetune": {"acc_matrix": [[0.99, 0.0], [0.0, 0.98]], "average_acc": 0.49, "forgetting": 0.99},
    "replay": {"acc_matrix": [[0.99, 0.0], [0.85, 0.9]], "average_acc": 0.875, "forgetting": 0.14}}}


@pytest.fixture
def app_lab(tmp_path, monkeypatch):
    """app.py's handlers on a lab of their own, with a finished continual run and a finished distillation run."""
    import app
    lab = Lab(runs_dir=tmp_path / "runs", data_dir=tmp_path / "data")
    lab._store = RunStore(tmp_path / "runs")
    lab._queue = RunQueue(lab._store, tmp_path / "data", worker_command=HOLD)
    monkeypatch.setattr(app, "lab", lab)
    config = ContinualConfig(tasks=2, epochs=1, data="sample", strategies=("finetune", "replay"))
    continual = lab.store.create(config.to_dict(), owner="alice", state="finished")["id"]
    lab.store.update(continual, metrics=FINISHED_METRICS)
    distill = lab.store.create(DISTILL.to_dict(), owner="bob", state="finished")["id"]
    lab.store.update(distill, metrics={"student_acc": 0.9, "baseline_acc": 0.89, "teacher_acc": 0.98,
                                       "test_samples": 2000, "seconds": 5})
    yield SimpleNamespace(app=app, lab=lab, continual=continual, distill=distill)
    lab.close()


def test_the_runs_tab_lists_and_compares_continual_runs(app_lab):
    runs = app_lab.app.ui.runs  # the Runs tab (kdapp.ui.runs_tab)
    out = runs.table("all", [app_lab.continual])
    table = out[runs.continual_runs_df]
    assert [row[0] for row in table["data"]] == [app_lab.continual]
    row = dict(zip(table["headers"], table["data"][0]))
    assert row["fine-tuning avg / forgetting"] == "49.0% / 99.0%" and row["LwF avg / forgetting"] == ""
    assert row["memory bank avg / forgetting"] == "87.5% / 14.0%" and row["state"] == "finished"
    assert [row[0] for row in out[runs.runs_df]["data"]] == [app_lab.distill]  # the distillation table is its own
    choices = out[runs.selected]["choices"]
    assert (f"{app_lab.continual} (continual)", app_lab.continual) in choices and app_lab.distill in choices
    assert out[runs.selected]["value"] == [app_lab.continual]
    compared = runs.compare([app_lab.continual], "all")
    fig = compared[runs.compare_plot]
    assert [t.name for t in fig.data] == [f"{app_lab.continual} (class-incremental, 2 tasks)"] * 2
    assert list(fig.data[0].y) == pytest.approx([49.0, 87.5]) and list(fig.data[1].y) == pytest.approx([99.0, 14.0])
    assert f"/?run={app_lab.continual}" in compared[runs.run_link]
    mixed = runs.compare([app_lab.distill, app_lab.continual], "all")  # each kind with its own: distillation first
    assert "KD solid" in mixed[runs.compare_plot].layout.title.text
    note = runs.downloads([app_lab.continual])[runs.note]
    assert "is a continual run: it has no distilled student" in note


def test_run_again_queues_a_continual_runs_settings_for_this_visitor(app_lab):
    from kdapp.ui import continual as ui
    lab = app_lab.lab
    notice, shown = ui.again(lab, "bob", app_lab.continual)
    record = lab.run(shown)
    assert shown != app_lab.continual and "started" in notice
    assert record["config"] == lab.run(app_lab.continual)["config"] and lab_continual.is_continual(record)
    assert lab.owns(shown, "bob") and not lab.owns(shown, "alice")
    notice, _ = ui.again(lab, "bob", shown)  # still training: refused, and says why
    assert "it can run again once it has ended" in notice
    with i18n.speaking("zh"):
        assert "当前没有可以重新运行的实验" in ui.again(lab, "bob", None)[0]
    assert lab.run_again(app_lab.distill, "bob")[0]["config"].get("kind") is None  # a distillation run stays one


def test_the_mcp_tools_list_and_explain_continual_runs(app_lab):
    import gradio as gr
    from PIL import Image

    from kdapp.ui import mcp_tools
    read_digit, list_runs, get_run = mcp_tools.tools(lambda: app_lab.lab, "shipped")
    (listed,) = json.loads(list_runs(kind="continual"))
    assert listed["id"] == app_lab.continual and listed["kind"] == "continual" and listed["state"] == "finished"
    assert (listed["scenario"], listed["tasks"], listed["strategies"]) == ("class", 2, ["finetune", "replay"])
    assert listed["results"] == {"finetune": {"average_acc": 0.49, "forgetting": 0.99},
                                 "replay": {"average_acc": 0.875, "forgetting": 0.14}}
    assert [r["id"] for r in json.loads(list_runs())] == [app_lab.distill]  # the default: distillation runs
    assert [r["kind"] for r in json.loads(list_runs(kind="all"))] == ["distill", "continual"]  # newest first
    with pytest.raises(gr.Error, match="kind must be one of distill, continual, all"):
        list_runs(kind="everything")
    run = json.loads(get_run(app_lab.continual))
    assert run["settings"]["kind"] == "continual" and run["metrics"]["strategies"]["replay"]["forgetting"] == 0.14
    with pytest.raises(gr.Error, match="is a continual run: its models read digits in the Continual tab"):
        read_digit(Image.new("L", (28, 28)), models=app_lab.continual)


def test_a_link_or_the_runs_tab_opens_a_continual_run_in_its_tab(app_lab):
    app, ui = app_lab.app, app_lab.app.ui
    out = app.on_load("alice-token", SimpleNamespace(query_params={"run": app_lab.continual}, headers={}))
    assert out[ui.continual.shown] == app_lab.continual and out[ui.distill.view] is None
    assert out[ui.tabs].selected == "continual-tab" and out[ui.distill.notice] == ""
    out = app.on_load("alice-token", SimpleNamespace(query_params={"run": app_lab.distill}, headers={}))
    assert out[ui.distill.view] == app_lab.distill and ui.continual.shown not in out and ui.tabs not in out
    opened = app.open_run([app_lab.continual, app_lab.distill])
    assert opened[ui.continual.shown] == app_lab.continual and opened[ui.tabs].selected == "continual-tab"
    assert app.open_run([app_lab.distill])[ui.distill.view] == app_lab.distill


def test_the_continual_tab_shows_a_linked_run_with_its_link():
    from kdapp.ui import continual as ui
    run = {"id": "abc12345", "state": "finished", "config": ContinualConfig(tasks=2).to_dict(),
           "metrics": FINISHED_METRICS, "accuracy": {}}
    text = ui.summary(run)
    assert "[`/?run=abc12345`](/?run=abc12345)" in text and "| memory bank (replay + KD) | 87.5% |" in text
    assert ui.runs_rows([])["data"] == [[""] * len(ui.RUN_COLUMNS)]
