"""The lab notebook survives its server: SIGKILL mid-run, restart, and a corrupt database."""
import json
import re
import signal

import httpx
import pytest

from kdapp.lab.store import RunStore
from kdapp.tools.serving import start_app, start_event_data, wait_for_http, wait_until


def call(url, name, data):
    """An event over raw HTTP, as the page (or any script) sends it: the final SSE data."""
    with httpx.Client(base_url=url, timeout=60) as http:
        r = http.post(f"gradio_api/call/{name}", json={"data": data})
        r.raise_for_status()
        text = http.get(f"gradio_api/call/{name}/{r.json()['event_id']}").text
    return json.loads([ln[6:] for ln in text.splitlines() if ln.startswith("data: ")][-1])


def start(url, **settings):
    """Press Start over raw HTTP; the run id comes back in the notice (state stays on the server)."""
    notice = call(url, "start", start_event_data(url, "me", **settings))[0]
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


def test_a_killed_server_keeps_its_finished_runs_and_marks_the_killed_one_interrupted(serve, tmp_path):
    server, url = serve()
    done = start(url, epochs=1, train_fraction=0.1)
    assert wait_until(lambda: runs(url)[done]["state"] == "finished")
    killed = start(url, epochs=30)
    assert wait_until(lambda: runs(url)[killed]["state"] == "running")
    server.send_signal(signal.SIGKILL)
    server.wait(10)

    _, url = serve()  # the same runs directory
    after = runs(url)
    assert after[done]["state"] == "finished" and after[done]["metrics"]["student_acc"] > 0.5
    assert after[killed]["state"] == "interrupted"
    record = RunStore(tmp_path / "runs").get(done)
    assert record["curves"]["step"] and record["accuracy"]["epoch"] == [1]  # curves, not just a row


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
