"""The real app as its own process, and re-drawn held-out digits: shared by the bench, the load
test and the tests, so each measures the same thing the same way."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from kdapp import data as data_lib
from kdapp.evaluation.redraw import redraw

ROOT = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(runs_dir, port=None, log=subprocess.DEVNULL, env=None, args=("app.py",)):
    """`python app.py` (or `python *args`) as its own process on a free local port. Returns (process, url)."""
    port = port or free_port()
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_ANALYTICS_ENABLED="False", KDAPP_RUNS_DIR=str(runs_dir), **(env or {}))
    process = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=log, stderr=log)
    return process, f"http://127.0.0.1:{port}/"


def wait_for_http(url, process, timeout=60):
    """Poll `url` until it answers 200; raise if `process` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
        if process.poll() is not None:
            raise RuntimeError("app.py exited during start-up")
    raise RuntimeError(f"app.py did not answer within {timeout} s")


def start_event_data(url, owner, **settings):
    """The data list a page sends with Start, for a served app at `url`, read from its /config:
    each input in the event's order, the visitor's owner token for the browser state and, for the
    controls (elem_id control-<name>), `settings[name]` or the control's default. Scripts and the
    load test drive the real event this way without importing app.py."""
    with urllib.request.urlopen(url.rstrip("/") + "/config", timeout=30) as r:
        config = json.load(r)
    components = {c["id"]: c for c in config["components"]}
    event = next(d for d in config["dependencies"] if d.get("api_name") == "start")
    data = []
    for component_id in event["inputs"]:
        props = components[component_id].get("props", {})
        name = (props.get("elem_id") or "").removeprefix("control-")
        data.append(settings.get(name, props.get("value")) if props.get("elem_id", "").startswith("control-")
                    else owner)
    return data


def wait_until(predicate, timeout=180, every=0.1):
    """Poll `predicate` until it is true (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def redrawn_canvases(count, seed=0):
    """`count` held-out sample digits re-drawn as a visitor's canvases, and their labels."""
    _, _, test_images, test_labels = data_lib.sample_split()
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(test_labels), size=min(count, len(test_labels)), replace=False)
    return [redraw(test_images[i], rng) for i in pick], test_labels[pick]
