"""Nothing accepted is lost: the queue lives in the store, one server per runs folder, sweeps
all or none, and "Run again". Real worker processes, real SQLite; the server-level kills are in
test_restart.py."""
import sys
from pathlib import Path

import pytest

from kdapp.config import RunConfig
from kdapp.lab.facade import Lab
from kdapp.lab.folder_lock import RunsFolderBusy
from kdapp.lab.jobs import QueueFull, RunQueue
from kdapp.lab.store import RunStore
from kdapp.tools.serving import wait_until

SHORT = RunConfig(epochs=1, train_fraction=0.05)


@pytest.mark.slow
def test_a_restart_keeps_the_queue_in_order_with_its_owners_and_caps(tmp_path):
    """The rows a killed server left: one run training, three waiting from two visitors."""
    store = RunStore(tmp_path / "runs")
    running = store.create(SHORT.to_dict(), owner="alice", state="running")["id"]
    waiting = [store.create(SHORT.replace(seed=i).to_dict(), owner=owner)["id"]
               for i, owner in enumerate(("bob", "carol", "bob"))]
    queue = RunQueue(RunStore(tmp_path / "runs"), data_dir=tmp_path / "data", per_owner=2, total=3)
    try:
        mine = [r for r in queue.active(owner="bob") if r["mine"]]
        assert [r["id"] for r in mine] == [waiting[0], waiting[2]]
        with pytest.raises(QueueFull, match="cancel one or wait"):  # bob's two survived the restart
            queue.submit(SHORT, owner="bob")
        with pytest.raises(QueueFull, match="queue is full"):  # so did the three waiting (the cap counts those)
            queue.submit(SHORT, owner="dave")
        for run_id in [running, *waiting]:
            assert queue.wait(run_id, timeout=300)
        records = [queue.store.get(i) for i in [running, *waiting]]
        assert [r["state"] for r in records] == ["finished"] * 4, [r["message"] for r in records]
        starts = [r["started"] for r in records]
        assert starts == sorted(starts)  # the one that was training first, then the queue in order
        assert [queue.store.owner_of(i) for i in waiting] == ["bob", "carol", "bob"]
    finally:
        queue.close()


def test_one_server_per_runs_folder(tmp_path):
    first = RunQueue(RunStore(tmp_path / "runs"), data_dir=tmp_path / "data")
    try:
        with pytest.raises(RunsFolderBusy, match="another kdapp server .* is already using the runs folder") as e:
            RunQueue(RunStore(tmp_path / "runs"), data_dir=tmp_path / "data")
        assert "KDAPP_RUNS_DIR" in str(e.value)
        RunQueue(RunStore(tmp_path / "other"), data_dir=tmp_path / "data").close()  # another folder is fine
    finally:
        first.close()
    RunQueue(RunStore(tmp_path / "runs"), data_dir=tmp_path / "data").close()  # released on close


def test_a_sweep_that_cannot_be_queued_leaves_no_rows(tmp_path):
    queue = RunQueue(RunStore(tmp_path / "runs"), data_dir=tmp_path / "data", total=4)
    try:
        with pytest.raises(QueueFull):
            queue.submit([SHORT] * 5, owner="eve", group="sweep-x")
        assert queue.store.list() == [] and not queue.busy()
    finally:
        queue.close()


def test_run_again_queues_the_same_settings_for_this_visitor(tmp_path):
    lab = Lab(runs_dir=tmp_path / "runs", data_dir=tmp_path / "data")
    try:
        first, _ = lab.start(dict(SHORT.to_dict(), temperature=8.0), owner="alice")
        message = lab.run_again(first["id"], owner="bob")[1]
        assert "is queued" in message or "is running" in message  # not ended yet: refused
        assert lab.queue.wait(first["id"], timeout=300)
        again, message = lab.run_again(first["id"], owner="bob")
        assert again is not None and again["id"] != first["id"], message
        assert again["config"] == lab.run(first["id"])["config"]
        assert lab.owns(again["id"], "bob") and not lab.owns(again["id"], "alice")
        assert lab.run_again("0000beef", owner="bob") == (None, "Not started: there is no run 0000beef")
        lab.cancel(again["id"], "bob")
        assert lab.queue.wait(again["id"], timeout=60)
        assert lab.run(again["id"])["state"] == "cancelled"
        assert lab.run_again(again["id"], owner="bob")[0] is not None  # a cancelled run can run again too
    finally:
        lab.close()


@pytest.mark.slow
def test_a_killed_worker_resumes_once_and_a_second_death_fails_the_run(tmp_path):
    queue = RunQueue(RunStore(tmp_path / "runs"), data_dir=tmp_path / "data")
    try:
        run_id = queue.submit(RunConfig(epochs=6, train_fraction=0.3), owner="alice")[0]["id"]
        point = queue.store.run_dir(run_id) / "resume.pt"
        assert wait_until(point.exists, timeout=300)
        queue._processes[run_id].kill()  # mid-epoch 2, as the OOM killer would
        assert wait_until(lambda: queue.get(run_id)["resumed_from_epoch"] is not None, timeout=300)
        assert queue.get(run_id)["resumed_from_epoch"] >= 1
        assert queue.store.get(run_id)["resumed_from_epoch"] == queue.get(run_id)["resumed_from_epoch"]
        queue._processes[run_id].kill()  # the resumed worker dies too: no second resume
        assert queue.wait(run_id, timeout=60)
        record = queue.store.get(run_id)
        assert record["state"] == "failed" and "ended unexpectedly" in record["message"]
        assert not point.exists()  # an ended run keeps no resume point
    finally:
        queue.close()


@pytest.mark.slow
def test_a_killed_worker_that_resumes_finishes_with_its_epochs_counted_once(tmp_path):
    queue = RunQueue(RunStore(tmp_path / "runs"), data_dir=tmp_path / "data")
    try:
        run_id = queue.submit(RunConfig(epochs=4, train_fraction=0.3), owner="alice")[0]["id"]
        assert wait_until((queue.store.run_dir(run_id) / "resume.pt").exists, timeout=300)
        queue._processes[run_id].kill()
        assert queue.wait(run_id, timeout=300)
        record = queue.store.get(run_id)
        assert record["state"] == "finished", record["message"]
        assert record["resumed_from_epoch"] >= 1
        assert record["accuracy"]["epoch"] == [1, 2, 3, 4]  # each epoch once, none redrawn twice
        steps = record["curves"]["step"]
        assert steps == sorted(set(steps))
    finally:
        queue.close()


def test_a_full_disk_at_a_resume_point_fails_the_run_and_the_store_stays_readable(tmp_path):
    worker = [sys.executable, str(Path(__file__).with_name("full_disk_worker.py"))]
    queue = RunQueue(RunStore(tmp_path / "runs"), data_dir=tmp_path / "data", worker_command=worker)
    try:
        run_id = queue.submit(SHORT, owner="alice")[0]["id"]
        assert queue.wait(run_id, timeout=300)
    finally:
        queue.close()
    record = RunStore(tmp_path / "runs").get(run_id)  # a fresh reader: the file is whole
    assert record["state"] == "failed"
    assert record["message"] == ("failed: could not save the resume point after epoch 1: no space left on device; "
                                 "free some disk space on the server, then press Run again")
    assert [p for p in RunStore(tmp_path / "runs").run_dir(run_id).iterdir() if p.suffix in (".tmp", ".pt")] == []
    again = RunQueue(RunStore(tmp_path / "runs"), data_dir=tmp_path / "data")  # and the next run works
    try:
        ok = again.submit(SHORT, owner="alice")[0]["id"]
        assert again.wait(ok, timeout=300) and again.store.get(ok)["state"] == "finished"
    finally:
        again.close()


@pytest.mark.slow
def test_a_server_that_stops_cleanly_leaves_its_run_to_resume(tmp_path):
    """A hosted Space stops its server (SIGTERM, the lifespan closes the lab): a stop is a
    restart, not a cancel, so the next server resumes the run."""
    queue = RunQueue(RunStore(tmp_path / "runs"), data_dir=tmp_path / "data")
    run_id = queue.submit(RunConfig(epochs=4, train_fraction=0.3), owner="alice")[0]["id"]
    waiting = queue.submit(SHORT, owner="bob")[0]["id"]
    point = queue.store.run_dir(run_id) / "resume.pt"
    assert wait_until(point.exists, timeout=300)
    queue.close()
    store = RunStore(tmp_path / "runs")
    assert (store.get(run_id)["state"], store.get(waiting)["state"]) == ("running", "queued") and point.exists()
    again = RunQueue(RunStore(tmp_path / "runs"), data_dir=tmp_path / "data")
    try:
        assert again.wait(run_id, timeout=300) and again.wait(waiting, timeout=300)
        record = again.store.get(run_id)
        assert record["state"] == "finished" and record["resumed_from_epoch"] >= 1, record["message"]
        assert again.store.get(waiting)["state"] == "finished"
    finally:
        again.close()
