"""Background runs: finish, busy, stop, failure, time limit, owners."""
import time

import pytest

from kdapp import engine, jobs
from kdapp.config import RunConfig

SHORT = dict(data="sample", epochs=1, train_fraction=0.1)


def wait_for(predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_a_run_finishes_and_readers_see_it(tmp_path):
    runs = jobs.RunManager(runs_dir=tmp_path)
    runs.start(RunConfig(**SHORT), owner="a")
    assert runs.wait(timeout=120)
    snap = runs.snapshot()
    assert snap["state"] == "finished", snap["message"]
    assert snap["metrics"]["student_acc"] > 0.5 and snap["data"] == "sample"
    assert snap["curves"]["step"] and len(snap["curves"]["loss"]) == len(snap["curves"]["step"])
    assert snap["accuracy"]["epoch"] == [1]
    assert runs.latest is not None and runs.version_key() == snap["key"]


def test_second_start_is_busy_and_only_the_owner_can_stop(tmp_path):
    runs = jobs.RunManager(runs_dir=tmp_path)
    runs.start(RunConfig(data="sample", epochs=20), owner="alice")
    try:
        with pytest.raises(jobs.Busy, match="already in progress"):
            runs.start(RunConfig(**SHORT), owner="bob")
        assert wait_for(lambda: runs.snapshot()["step"] > 0)
        assert "only the visitor" in runs.stop(owner="bob")
        assert runs.snapshot()["state"] == "running"
        runs.stop(owner="alice")
        assert runs.wait(timeout=5)
        snap = runs.snapshot()
        assert snap["state"] == "cancelled" and runs.latest is None
    finally:
        runs.stop()
        runs.wait(10)
    # The next run starts and works.
    runs.start(RunConfig(**SHORT), owner="bob")
    assert runs.wait(120) and runs.snapshot()["state"] == "finished"


def test_a_failing_run_ends_failed_and_the_next_one_works(tmp_path, monkeypatch):
    runs = jobs.RunManager(runs_dir=tmp_path)
    runs.start(RunConfig(**SHORT))
    assert runs.wait(120)
    good = runs.latest

    def explode(*args, **kwargs):
        raise RuntimeError("injected failure")
    monkeypatch.setattr(engine, "distill", explode)
    runs.start(RunConfig(**SHORT))
    assert runs.wait(60)
    snap = runs.snapshot()
    assert snap["state"] == "failed" and "injected failure" in snap["error"]
    assert runs.latest is good  # the last good run's models are untouched
    monkeypatch.undo()
    runs.start(RunConfig(**SHORT))
    assert runs.wait(120) and runs.snapshot()["state"] == "finished" and runs.latest is not good


def test_time_limit_stops_a_run(tmp_path):
    runs = jobs.RunManager(runs_dir=tmp_path)
    runs.start(RunConfig(data="sample", epochs=50, time_limit_s=2))
    assert runs.wait(timeout=30)
    snap = runs.snapshot()
    assert snap["state"] == "cancelled" and "time limit" in snap["message"]


def test_invalid_config_is_refused_before_starting(tmp_path):
    runs = jobs.RunManager(runs_dir=tmp_path)
    with pytest.raises(ValueError, match="temperature"):
        runs.start(RunConfig(temperature=-1))
    assert runs.snapshot() is None and not runs.busy()
