"""Nothing accepted is lost when the server dies: SIGKILL with a run training and two waiting,
a restart that finishes all three (the one training resumes), two servers on one folder, and a
corrupt database."""
import json
import re
import signal
import subprocess

import httpx
import pytest

from kdapp.lab.store import RunStore
from kdapp.tools.serving import start_app, start_event_data, wait_for_http, wait_until

pytestmark = pytest.mark.slow  # each test serves the real app, trains, kills and restarts it


def call(url, name, data):
    """An event over raw HTTP, as the page (or any script) sends it: the final SSE data."""
    with httpx.Client(base_url=url, timeout=60) as http:
        r = http.post(f"gradio_api/call/{name}", json={"data": data})
        r.raise_for_status()
        text = http.get(f"gradio_api/call/{name}/{r.json()['event_id']}").text
    return json.loads([ln[6:] for ln in text.splitlines() if ln.startswith("data: ")][-1])


def start(url, owner="me", **settings):
    """Press Start over raw HTTP; the run id comes back in the notice (state stays on the server)."""
    notice = call(url, "start", start_event_data(url, owner, **settings))[0]
    return re.search(r"Run ([0-9a-f]{8})", notice).group(1)


def runs(url):
    out = call(url, "runs", [])[0]
    return {r["id"]: r for r in (json.loads(out) if isinstance(out, str) else out)}


@pytest.fixture
def serve(tmp_path):
    processes = []

    def serve_once():
        process, url = start_app(tmp_path / "runs", log=open(tmp_path / f"app{len(processes)}.log", "w"))
        processes.append(process)
        wait_for_http(url, process)
        return process, url
    yield serve_once
    for p in processes:
        if p.poll() is None:
            p.terminate()
            p.wait(10)


@pytest.mark.slow
def test_a_killed_server_loses_nothing_and_the_run_it_was_training_resumes(serve, tmp_path, figures):
    """SIGKILL with one run training and two waiting, from two visitors: after a restart all
    three finish, and the one that was training carries on from its last finished epoch."""
    server, url = serve()
    done = start(url, owner="alice", epochs=1, train_fraction=0.1)
    assert wait_until(lambda: runs(url)[done]["state"] == "finished")
    training = start(url, owner="alice", epochs=5, train_fraction=0.3)
    waiting = [start(url, owner=owner, epochs=1, train_fraction=0.05) for owner in ("bob", "carol")]
    point = tmp_path / "runs" / "runs" / training / "resume.pt"
    assert wait_until(point.exists, timeout=300)
    server.send_signal(signal.SIGKILL)
    server.wait(10)
    before = RunStore(tmp_path / "runs").get(training)

    _, url = serve()  # the same runs directory
    assert wait_until(lambda: all(runs(url)[i]["state"] == "finished" for i in [training, *waiting]), timeout=600)
    after = runs(url)
    assert after[done]["state"] == "finished" and after[done]["metrics"]["student_acc"] > 0.5
    resumed = after[training]["resumed_from_epoch"]
    assert resumed >= 1 and all(after[i]["resumed_from_epoch"] is None for i in waiting)
    store = RunStore(tmp_path / "runs")
    record = store.get(training)
    assert record["accuracy"]["epoch"] == [1, 2, 3, 4, 5]  # every epoch once: none lost, none twice
    assert record["curves"]["step"] == sorted(set(record["curves"]["step"]))
    assert [store.owner_of(i) for i in waiting] == ["bob", "carol"]
    assert store.get(done)["curves"]["step"] and store.get(done)["accuracy"]["epoch"] == [1]
    assert store.get(waiting[0])["started"] < store.get(waiting[1])["started"]  # still in their order
    assert store.get(training)["started"] < store.get(waiting[0])["started"]  # the resumed run went first
    figures(restart={"epochs": 5, "epochs_before_kill": len(before["accuracy"]["epoch"]),
                     "resumed_from_epoch": resumed, "epochs_trained_after_restart": 5 - resumed,
                     "runs_finished": 3, "runs_accepted": 3})


def test_a_second_server_on_the_same_runs_folder_refuses_to_start(serve, tmp_path):
    first, url = serve()
    second, _ = start_app(tmp_path / "runs", log=subprocess.PIPE)
    _, err = second.communicate(timeout=120)
    assert second.returncode != 0
    message = err.decode().strip().splitlines()[-1]
    assert message.startswith("kdapp did not start: another kdapp server (pid ") and "KDAPP_RUNS_DIR" in message
    assert "Traceback" not in err.decode()
    run_id = start(url, epochs=1, train_fraction=0.05)  # the first one still serves and runs
    assert wait_until(lambda: runs(url)[run_id]["state"] == "finished")


def test_a_corrupt_database_is_moved_aside_and_the_app_serves(serve, tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "kdapp.sqlite3").write_bytes(b"this is not a database" * 100)
    _, url = serve()
    assert runs(url) == {}
    aside = list((tmp_path / "runs").glob("kdapp.sqlite3.corrupt-*"))
    assert aside and aside[0].read_bytes().startswith(b"this is not a database")
    assert "moved it to" in (tmp_path / "app0.log").read_text()
    run_id = start(url, epochs=1, train_fraction=0.05)
    assert wait_until(lambda: runs(url)[run_id]["state"] == "finished")
