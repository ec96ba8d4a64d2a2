"""Background runs: finish, busy, stop, failure, time limit, owners."""
import time

import pytest

from kdapp import jobs
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


def test_a_failing_run_ends_failed_and_the_next_one_works(tmp_path):
    """A real failure inside the worker: full MNIST asked for under a data dir that is a file."""
    runs = jobs.RunManager(runs_dir=tmp_path)
    runs.start(RunConfig(**SHORT))
    assert runs.wait(120)
    good = runs.latest
    not_a_dir = tmp_path / "not-a-directory"
    not_a_dir.write_text("x")
    broken = jobs.RunManager(runs_dir=tmp_path, data_dir=not_a_dir)
    broken.latest = good
    broken.start(RunConfig(data="mnist", epochs=1))
    assert broken.wait(60)
    snap = broken.snapshot()
    assert snap["state"] == "failed" and "MNIST" in snap["error"], snap
    assert broken.latest is good  # the last good run's models are untouched
    broken.data_dir = str(tmp_path)
    broken.start(RunConfig(**SHORT))
    assert broken.wait(120) and broken.snapshot()["state"] == "finished" and broken.latest is not good


def test_a_worker_that_dies_ends_failed_and_the_server_goes_on(tmp_path):
    runs = jobs.RunManager(runs_dir=tmp_path)
    runs.start(RunConfig(data="sample", epochs=20))
    assert wait_for(lambda: runs.snapshot()["step"] > 0)
    runs._process.kill()  # as the kernel's OOM killer would
    assert runs.wait(30)
    snap = runs.snapshot()
    assert snap["state"] == "failed" and "ended unexpectedly" in snap["message"]
    runs.start(RunConfig(**SHORT))
    assert runs.wait(120) and runs.snapshot()["state"] == "finished"


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
