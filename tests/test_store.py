import json
import logging
import random
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from kdapp.lab import schema, store
from kdapp.lab.store import MAX_CURVE_POINTS, RunStore, downsample

RECORD_KEYS = {"id", "created", "started", "ended", "state", "config", "data", "device", "metrics", "accuracy",
               "curves", "warnings", "error", "message", "has_checkpoints", "extra", "fidelity", "resumed_from_epoch"}
SECRET = "session-7f3a-secret"


def config(teacher="seed_teacher", student="seed_student", **more):
    return {"teacher": teacher, "student": student, "epochs": 2, **more}


def test_store_needs_neither_torch_nor_gradio():
    # conftest has imported torch here already, so look from a fresh interpreter
    code = "import sys, kdapp.lab.store; assert not {'torch', 'gradio'} & set(sys.modules), sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(store.__file__).parents[2])


def test_create_get_and_list_newest_first(tmp_path):
    runs = RunStore(tmp_path / "lab")
    created = [runs.create(config(seed=i), owner=SECRET) for i in range(20)]  # many share one second
    assert (tmp_path / "lab" / "kdapp.sqlite3").exists()
    assert [r["id"] for r in runs.list()] == [r["id"] for r in reversed(created)]
    assert [r["id"] for r in runs.list(limit=3)] == [r["id"] for r in created[:-4:-1]]
    assert len({r["id"] for r in created}) == 20

    record = runs.get(created[0]["id"])
    assert set(record) == RECORD_KEYS
    assert record == created[0]
    assert record["config"] == config(seed=0)
    assert record["state"] == "queued" and record["started"] is None and record["ended"] is None
    assert record["accuracy"] == {"epoch": [], "teacher": [], "student": [], "baseline": []}
    assert (record["curves"], record["warnings"], record["extra"], record["metrics"]) == ({}, [], {}, None)
    assert record["has_checkpoints"] is False
    assert runs.get("00000000") is None
    assert runs.create(config(), owner=None, state="running")["started"] is not None


def test_owner_is_never_shown(tmp_path):
    runs = RunStore(tmp_path)
    run = runs.create(config(), owner=SECRET)
    runs.update(run["id"], message="training")
    assert "owner" not in run and "owner" not in runs.get(run["id"])
    assert all("owner" not in r for r in runs.list())
    assert SECRET not in json.dumps(runs.list()) + json.dumps(runs.get(run["id"]))
    assert runs.owner_of(run["id"]) == SECRET
    assert runs.owner_of("00000000") is None
    assert runs.active()[0]["owner"] == SECRET  # the queue's internal view


def test_update_stores_json_fields(tmp_path):
    runs = RunStore(tmp_path)
    run_id = runs.create(config(), owner=SECRET)["id"]
    accuracy = {"epoch": [1, 2], "teacher": [0.99, 0.99], "student": [0.9, 0.95], "baseline": [0.88, 0.93]}
    runs.update(run_id, state="finished", started=10.0, ended=12.5, data="sample", device="cpu",
                metrics={"student_acc": 0.95, "gap": None}, accuracy=accuracy, warnings=["teacher is weak"],
                extra={"tags": ["kd"]}, message="done", has_checkpoints=True)
    record = runs.get(run_id)
    assert record["metrics"] == {"student_acc": 0.95, "gap": None}
    assert record["accuracy"] == accuracy
    assert record["warnings"] == ["teacher is weak"]
    assert record["extra"] == {"tags": ["kd"]}
    assert (record["state"], record["started"], record["ended"]) == ("finished", 10.0, 12.5)
    assert (record["data"], record["device"], record["message"]) == ("sample", "cpu", "done")
    assert record["has_checkpoints"] is True
    assert record["config"] == config()  # untouched


@pytest.mark.parametrize("fields", [{"owner": "thief"}, {"id": "abcd0123"}, {"seq": 1}, {"lr": 0.1},
                                    {"state": "paused"}])
def test_update_refuses_unknown_fields_and_states(tmp_path, fields):
    runs = RunStore(tmp_path)
    run_id = runs.create(config(), owner=SECRET)["id"]
    with pytest.raises(ValueError):
        runs.update(run_id, **fields)
    assert runs.owner_of(run_id) == SECRET and runs.get(run_id)["state"] == "queued"


def test_update_of_a_missing_run_is_an_error(tmp_path):
    with pytest.raises(KeyError):
        RunStore(tmp_path).update("00000000", message="hello")


def test_downsample_keeps_ends_and_alignment():
    n = 2001
    curves = {"step": list(range(n)), "loss": [2.0 * s for s in range(n)], "teacher_loss": [1.0] * 7}
    thin = downsample(curves, 500)
    assert len(thin["step"]) == len(thin["loss"]) == 500
    assert (thin["step"][0], thin["step"][-1]) == (0, n - 1)
    assert thin["loss"] == [2.0 * s for s in thin["step"]]  # each loss still sits at its own step
    assert thin["step"] == sorted(set(thin["step"]))
    assert thin["teacher_loss"] == [1.0] * 7
    assert downsample({"step": [1, 2, 3], "loss": [None, 0.5, 0.4]}, 3) == {"step": [1, 2, 3], "loss": [None, 0.5, 0.4]}
    assert len(downsample({"step": list(range(501))}, 500)["step"]) == 500
    with pytest.raises(ValueError):
        downsample(curves, 1)


def test_curves_are_thinned_on_write(tmp_path):
    runs = RunStore(tmp_path)
    run_id = runs.create(config(), owner=None)["id"]
    steps = list(range(1, 3001))
    runs.update(run_id, curves={"step": steps, "loss": [1 / s for s in steps], "soft": [None] * 3000})
    curves = runs.get(run_id)["curves"]
    assert {len(v) for v in curves.values()} == {MAX_CURVE_POINTS}
    assert (curves["step"][0], curves["step"][-1]) == (1, 3000)
    assert curves["loss"] == [1 / s for s in curves["step"]]


def test_a_read_only_store_reads_the_live_runs_and_never_writes(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run store at"):
        RunStore(tmp_path, read_only=True)
    owner = RunStore(tmp_path)
    running = owner.create(config(), owner=SECRET, state="running")["id"]
    reader = RunStore(tmp_path, read_only=True)  # a second process, e.g. `runs export`, while the server runs
    assert reader.get(running)["state"] == "running" and owner.get(running)["state"] == "running"
    owner.update(running, curves={"step": [1], "loss": [0.5]})
    assert reader.get(running)["curves"] == {"step": [1], "loss": [0.5]}  # it sees the owner's commits
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.update(running, state="finished")


def test_restart_keeps_every_run_and_queues_the_running_ones_again_first(tmp_path):
    before = RunStore(tmp_path)
    finished = before.create(config(), owner=SECRET, state="running")["id"]
    curves = {"step": [1, 2, 3], "loss": [0.9, 0.5, 0.3]}
    before.update(finished, state="finished", ended=100.0, curves=curves, metrics={"student_acc": 0.9})
    queued = before.create(config(), owner="alice")["id"]
    running = before.create(config(), owner=SECRET, state="running")["id"]
    later = before.create(config(), owner="bob")["id"]

    after = RunStore(tmp_path)  # the old store's connections are still open, as after a crash
    assert after.get(running)["state"] == "running"  # opening a store changes no run: recover() does
    kept = after.get(finished)
    assert (kept["state"], kept["curves"], kept["ended"]) == ("finished", curves, 100.0)
    assert kept["metrics"] == {"student_acc": 0.9}
    assert after.recover() == ([running], [])
    assert [(r["id"], r["state"], r["owner"]) for r in after.active()] == [
        (running, "queued", SECRET), (queued, "queued", "alice"), (later, "queued", "bob")]
    assert "resumes from its last finished epoch" in after.get(running)["message"]
    assert after.get(queued)["message"] is None and after.recover() == ([], [])
    assert [r["id"] for r in after.list()] == [later, running, queued, finished]


def test_a_run_is_queued_again_at_most_max_restarts_times(tmp_path):
    runs = RunStore(tmp_path)
    run_id = runs.create(config(), owner=None, state="running")["id"]
    for _ in range(store.MAX_RESTARTS):
        assert runs.recover() == ([run_id], [])
        runs.update(run_id, state="running")  # dispatched, and the server dies again
    assert runs.recover() == ([], [run_id])
    record = runs.get(run_id)
    assert record["state"] == "failed" and "restarted 2 times" in record["message"] and record["ended"]
    assert runs.active() == []


def test_a_dead_worker_requeues_once(tmp_path):
    runs = RunStore(tmp_path)
    run_id = runs.create(config(), owner=None, state="running")["id"]
    assert runs.requeue(run_id, "worker died", max_restarts=1)
    assert runs.get(run_id)["state"] == "queued"
    runs.update(run_id, state="running")
    assert not runs.requeue(run_id, "worker died", max_restarts=1)  # a failed resume is not tried again
    assert runs.get(run_id)["state"] == "running"


def test_a_sweep_is_created_all_or_none(tmp_path):
    runs = RunStore(tmp_path)
    good = [config(temperature=t) for t in (1.0, 2.0)]
    with pytest.raises(TypeError):  # the third row cannot be written: the first two must go too
        runs.create_many(good + [config(temperature=object())], owner="eve")
    assert runs.list() == []
    made = runs.create_many(good + [config(temperature=4.0)], owner="eve", extra={"group": "sweep"})
    assert [r["config"]["temperature"] for r in runs.active()] == [1.0, 2.0, 4.0]
    assert [r["id"] for r in runs.active()] == [r["id"] for r in made]
    assert {r["extra"]["group"] for r in made} == {"sweep"}


def test_active_is_fifo(tmp_path):
    runs = RunStore(tmp_path)
    first = runs.create(config(), owner="a")["id"]
    done = runs.create(config(), owner="b")["id"]
    runs.update(done, state="finished")
    second = runs.create(config(), owner="c")["id"]
    runs.update(first, state="running")
    assert [(r["id"], r["owner"]) for r in runs.active()] == [(first, "a"), (second, "c")]


def test_pruning_keeps_the_newest_checkpoints(tmp_path):
    runs = RunStore(tmp_path, keep_checkpoints=2)
    ids, pruned = [], []
    for i in range(4):
        run_id = runs.create(config(seed=i), owner=None, state="running")["id"]
        runs.run_dir(run_id).mkdir(parents=True)
        (runs.run_dir(run_id) / "student.pt").write_bytes(b"weights")
        runs.update(run_id, state="finished", curves={"step": [1], "loss": [0.5]})
        pruned.append(runs.finish_checkpoints(run_id))
        ids.append(run_id)
    assert pruned == [[], [], [ids[0]], [ids[1]]]
    for old in ids[:2]:
        assert not runs.run_dir(old).exists()
        assert runs.get(old)["has_checkpoints"] is False
        assert runs.get(old)["curves"] == {"step": [1], "loss": [0.5]}  # the notebook entry stays
    for new in ids[2:]:
        assert (runs.run_dir(new) / "student.pt").read_bytes() == b"weights"
        assert runs.get(new)["has_checkpoints"] is True
    assert runs.finish_checkpoints(ids[-1]) == []


def test_pruning_tolerates_missing_folders(tmp_path):
    runs = RunStore(tmp_path, keep_checkpoints=1)
    ids = [runs.create(config(), owner=None)["id"] for _ in range(2)]
    assert runs.finish_checkpoints(ids[0]) == []
    assert runs.finish_checkpoints(ids[1]) == [ids[0]]  # its folder was never made


def test_run_dir_refuses_paths(tmp_path):
    runs = RunStore(tmp_path)
    assert runs.run_dir("0a1b2c3d") == tmp_path / "runs" / "0a1b2c3d"
    with pytest.raises(ValueError):
        runs.run_dir("../../home")


def _assert_fresh_store_after_corruption(tmp_path, caplog, original):
    with caplog.at_level(logging.WARNING, logger="kdapp.lab.store"):
        runs = RunStore(tmp_path)
    aside = [p for p in tmp_path.glob("kdapp.sqlite3.corrupt-*") if not p.name.endswith(("-wal", "-shm"))]
    assert [p.read_bytes() for p in aside] == [original]
    assert f"moved it to {aside[0]} and started a fresh store" in caplog.text
    assert runs.list() == []
    run_id = runs.create(config(), owner=None)["id"]
    assert [r["id"] for r in runs.list()] == [run_id]
    assert RunStore(tmp_path).get(run_id)["state"] == "queued"  # and the fresh file reopens cleanly


def test_random_bytes_are_moved_aside(tmp_path, caplog):
    garbage = random.Random(0).randbytes(8192)
    (tmp_path / "kdapp.sqlite3").write_bytes(garbage)
    _assert_fresh_store_after_corruption(tmp_path, caplog, garbage)


def test_truncated_database_is_moved_aside(tmp_path, caplog):
    runs = RunStore(tmp_path)
    for i in range(40):
        run_id = runs.create(config(seed=i), owner=None)["id"]
        runs.update(run_id, curves={"step": list(range(400)), "loss": [0.5] * 400})
    runs.close()  # the last connection checkpoints the WAL into the file
    assert not (tmp_path / "kdapp.sqlite3-wal").exists()
    whole = (tmp_path / "kdapp.sqlite3").read_bytes()
    (tmp_path / "kdapp.sqlite3").write_bytes(whole[: len(whole) // 2])
    _assert_fresh_store_after_corruption(tmp_path, caplog, whole[: len(whole) // 2])


def test_a_version_1_store_gains_fidelity_and_keeps_its_runs(tmp_path):
    """A store written before fidelity existed (schema 1) migrates in place: old runs stay, with
    no fidelity, and new runs can store theirs."""
    db = sqlite3.connect(tmp_path / "kdapp.sqlite3")
    schema.MIGRATIONS[0](db)
    db.execute("INSERT INTO runs (id, created, state, config) VALUES ('0123abcd', 1.0, 'finished', '{}')")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    runs = RunStore(tmp_path)
    old = runs.get("0123abcd")
    assert old["state"] == "finished" and old["fidelity"] is None
    new = runs.create(config(), owner=None)["id"]
    runs.update(new, fidelity={"agreement": {"student": 0.99}})
    assert runs.get(new)["fidelity"] == {"agreement": {"student": 0.99}}
    assert runs.list(curves=False)[0]["fidelity"] is None  # listings leave the heavy columns out
    assert sqlite3.connect(tmp_path / "kdapp.sqlite3").execute("PRAGMA user_version").fetchone()[0] == \
        schema.SCHEMA_VERSION


def test_newer_schema_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "kdapp.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE runs (id TEXT, future TEXT)")
    db.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="upgrade kdapp"):
        RunStore(tmp_path)
    assert path.read_bytes() == before  # still in rollback-journal mode, no migration, no interruption
    assert not list(tmp_path.glob("*.corrupt-*"))


def test_readers_see_whole_records_during_writes(tmp_path):
    runs = RunStore(tmp_path)
    run_id = runs.create(config(), owner=SECRET, state="running")["id"]
    for _ in range(5):
        runs.create(config(), owner=SECRET)
    stop, errors, reads = threading.Event(), [], []

    def read():
        seen = 0
        try:
            while True:
                for record in runs.list() + [runs.get(run_id)]:
                    assert set(record) == RECORD_KEYS and isinstance(record["curves"], dict)
                record = runs.get(run_id)
                n = len(record["curves"].get("step", []))
                assert len(record["curves"].get("loss", [])) == n  # one update writes both or neither
                assert record["message"] == (f"step {n}" if n else None)
                assert n >= seen  # committed writes never go back
                seen = n
                reads.append(n)
                if stop.is_set():
                    return
        except Exception as e:  # the main thread reports it
            errors.append(e)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    steps, losses = [], []
    for step in range(1, 301):
        steps.append(step)
        losses.append(1 / step)
        runs.update(run_id, curves={"step": steps, "loss": losses}, message=f"step {step}")
    stop.set()
    for reader in readers:
        reader.join()
    assert errors == []
    assert reads and max(reads) <= 300
    assert runs.get(run_id)["curves"]["step"] == steps


def ids(records):
    return [r["id"] for r in records]


def test_filters_by_teacher_student_and_state(tmp_path):
    runs = RunStore(tmp_path)
    a = runs.create(config("seed_teacher", "seed_student"), owner=None)["id"]
    b = runs.create(config("wide_teacher", "seed_student"), owner=None)["id"]
    c = runs.create(config("wide_teacher", "tiny_mlp"), owner=None)["id"]
    runs.update(b, state="finished")
    assert ids(runs.list(teacher="wide_teacher")) == [c, b]
    assert ids(runs.list(student="seed_student")) == [b, a]
    assert ids(runs.list(teacher="wide_teacher", student="seed_student")) == [b]
    assert ids(runs.list(teacher="no_such_teacher")) == []
    assert ids(runs.list(states=["finished"])) == [b]
    assert ids(runs.list(states=["queued"], teacher="wide_teacher")) == [c]


def test_listing_by_owner_and_without_curves(tmp_path):
    store = RunStore(tmp_path)
    mine = store.create({"teacher": "a", "student": "b"}, "owner-1")
    store.create({"teacher": "a", "student": "b"}, "owner-2")
    store.update(mine["id"], curves={"step": [1, 2], "loss": [3.0, 2.0]}, accuracy={"epoch": [1]})
    assert [r["id"] for r in store.list(owner="owner-1")] == [mine["id"]]
    light = store.list(owner="owner-1", curves=False)[0]
    assert light["curves"] is None and light["accuracy"] is None and "owner" not in light
    assert store.list(owner="owner-1")[0]["curves"] == {"step": [1, 2], "loss": [3.0, 2.0]}
