"""The run queue: real runs in worker processes, FIFO order, caps, cancel rights, failures."""
import pytest

from kdapp.config import RunConfig
from kdapp.lab.jobs import QueueFull, RunQueue
from kdapp.lab.store import RunStore
from kdapp.tools.serving import wait_until

SHORT = RunConfig(epochs=1, train_fraction=0.1)
LONG = RunConfig(epochs=40)


@pytest.fixture
def queue(tmp_path):
    q = RunQueue(RunStore(tmp_path / "runs"), data_dir=tmp_path / "data")
    yield q
    q.close()


@pytest.mark.slow
def test_a_run_finishes_and_is_kept_with_its_curves_and_models(queue):
    run = queue.submit(SHORT, owner="a")[0]
    assert queue.wait(run["id"], timeout=180)
    record = queue.store.get(run["id"])
    assert record["state"] == "finished", record["message"]
    assert record["metrics"]["student_acc"] > 0.5 and record["data"] == "sample"
    assert record["curves"]["step"] and len(record["curves"]["loss"]) == len(record["curves"]["step"])
    assert record["accuracy"]["epoch"] == [1] and record["has_checkpoints"]
    paths = record["extra"]["paths"]
    assert {"teacher", "student", "baseline"} <= set(paths)
    assert all(str(queue.store.run_dir(run["id"])) in paths[k] for k in ("student", "baseline"))
    assert "owner" not in record and not queue.busy()


@pytest.mark.slow
def test_fifo_order_positions_caps_and_cancel_rights(queue):
    first = queue.submit(LONG, owner="alice")[0]
    assert wait_until(lambda: queue.get(first["id"])["state"] == "running")
    second = queue.submit(SHORT, owner="bob")[0]
    third = queue.submit(SHORT, owner="carol")[0]
    active = queue.active(owner="bob")
    assert [(r["id"], r["position"], r["mine"]) for r in active] == [
        (first["id"], 0, False), (second["id"], 1, True), (third["id"], 2, False)]
    assert active[1]["eta_s"] > 0 and active[2]["eta_s"] > active[1]["eta_s"]
    # Caps: two runs (or sweeps) per visitor, ten queued in all.
    queue.submit(SHORT, owner="bob")
    with pytest.raises(QueueFull, match="cancel one or wait"):
        queue.submit(SHORT, owner="bob")
    with pytest.raises(QueueFull, match="queue is full"):
        queue.submit([SHORT] * 8, owner="dave")
    # Only the owner (or the server, owner=None) may cancel.
    assert "only the visitor" in queue.cancel(first["id"], owner="bob")
    assert queue.get(first["id"])["state"] == "running"
    assert "had not started" in queue.cancel(third["id"], owner="carol")
    assert queue.store.get(third["id"])["state"] == "cancelled"
    assert "stop" in queue.cancel(first["id"], owner="alice")
    assert queue.wait(first["id"], timeout=10) and queue.store.get(first["id"])["state"] == "cancelled"
    assert queue.wait(second["id"], timeout=180)
    finished = queue.store.get(second["id"])
    assert finished["state"] == "finished" and finished["started"] >= queue.store.get(first["id"])["ended"]


def test_a_sweep_counts_once_against_the_visitors_allowance(queue):
    first = queue.submit(LONG, owner="x")[0]
    sweep = queue.submit([SHORT.replace(temperature=t) for t in (1.0, 2.0, 4.0, 8.0, 16.0)], owner="eve",
                         group="sweep-temperature")
    assert len(sweep) == 5
    queue.submit(SHORT, owner="eve")  # a sweep and one run: two of eve's two
    with pytest.raises(QueueFull):
        queue.submit(SHORT, owner="eve")
    for r in [first] + sweep:
        queue.cancel(r["id"])


@pytest.mark.slow
def test_a_failing_run_ends_failed_and_the_next_one_works(tmp_path):
    """A real failure inside the worker: full MNIST asked for under a data dir that is a file."""
    not_a_dir = tmp_path / "not-a-directory"
    not_a_dir.write_text("x")
    queue = RunQueue(RunStore(tmp_path / "runs"), data_dir=not_a_dir)
    try:
        broken = queue.submit(RunConfig(data="mnist", epochs=1), owner=None)[0]
        good = queue.submit(SHORT, owner=None)[0]
        assert queue.wait(good["id"], timeout=180)
        record = queue.store.get(broken["id"])
        assert record["state"] == "failed" and "MNIST" in record["error"], record
        assert queue.store.get(good["id"])["state"] == "finished"
    finally:
        queue.close()


@pytest.mark.slow
def test_a_worker_that_dies_ends_failed_and_the_queue_goes_on(queue):
    doomed = queue.submit(LONG, owner=None)[0]
    after = queue.submit(SHORT, owner=None)[0]
    assert wait_until(lambda: queue.get(doomed["id"])["progress"]["step"] > 0 if queue.get(doomed["id"])["state"]
                    == "running" else False)
    queue._processes[doomed["id"]].kill()  # as the kernel's OOM killer would
    assert queue.wait(after["id"], timeout=180)
    record = queue.store.get(doomed["id"])
    assert record["state"] == "failed" and "ended unexpectedly" in record["message"]
    assert queue.store.get(after["id"])["state"] == "finished"


@pytest.mark.slow
def test_time_limit_stops_a_run(queue):
    run = queue.submit(RunConfig(epochs=50, time_limit_s=3), owner=None)[0]
    assert queue.wait(run["id"], timeout=60)
    record = queue.store.get(run["id"])
    assert record["state"] == "cancelled" and "time limit" in record["message"]


def test_invalid_config_is_refused_before_anything_is_queued():
    with pytest.raises(ValueError, match="temperature"):
        RunConfig(temperature=-1)
    with pytest.raises(ValueError, match="attention transfer needs conv feature maps"):
        RunConfig(student="mlp_30", feature_loss="attention")


def test_a_run_process_yields_the_cpu_to_the_server():
    """The worker lowers its own priority first thing (nice +10), so a run that fills every core
    leaves the server (and a browser on the same host) the cycles they ask for."""
    import os
    import subprocess

    from kdapp.lab import jobs, worker
    process = subprocess.Popen(jobs.WORKER_COMMAND, cwd=jobs.PACKAGE_ROOT, stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        mine = os.getpriority(os.PRIO_PROCESS, 0)
        assert wait_until(lambda: os.getpriority(os.PRIO_PROCESS, process.pid) == min(mine + worker.NICENESS, 19),
                          timeout=60)
    finally:
        process.kill()
        process.wait()
