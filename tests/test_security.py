"""What a stranger can send to the hosted demo: odd canvases, broken files, paths, big uploads."""
import io
import re
import json
import resource

import httpx
import numpy as np
import pytest
from PIL import Image

import app
from kdapp.tools.serving import start_event_data


def png(array, mode=None):
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def call_predict(url, composite, temperature=4.0):
    """Raw HTTP, as any script could: returns (event name, payload) of the final SSE event."""
    with httpx.Client(base_url=url, timeout=60) as http:
        r = http.post("gradio_api/call/predict", json={"data": [
            {"background": None, "layers": [], "composite": composite}, temperature]})
        assert r.status_code == 200, r.text
        event_id = r.json()["event_id"]
        text = http.get(f"gradio_api/call/predict/{event_id}").text
    events = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("event: ")]
    datas = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("data: ")]
    return events[-1], datas[-1]


def upload(url, content, name="canvas.png"):
    with httpx.Client(base_url=url, timeout=60) as http:
        r = http.post("gradio_api/upload", files={"files": (name, content, "image/png")})
    return r


def predict_file(url, content):
    r = upload(url, content)
    assert r.status_code == 200, r.text
    path = r.json()[0]
    return call_predict(url, {"path": path, "meta": {"_type": "gradio.FileData"}})


def note_of(payload):
    """The note is /predict's last output (teacher, student, baseline, plot, 28x28, note)."""
    return json.loads(payload)[-1]


def dot(size, r):
    c = np.zeros((size, size, 4), np.uint8)
    c[size // 2 - r:size // 2 + r + 1, size // 2 - r:size // 2 + r + 1, 3] = 255
    return c


@pytest.mark.parametrize("name,content,expect", [
    ("blank", png(np.zeros((280, 280, 4), np.uint8)), "Draw a digit"),
    ("fully inked", png(np.dstack([np.zeros((280, 280, 3), np.uint8), np.full((280, 280), 255, np.uint8)])),
     "most of the canvas"),
    ("single dot", png(dot(280, 1)), "very small"),
    ("3x3", png(dot(3, 0)), "Teacher says"),
    ("3000x3000", png(dot(3000, 300)), "Teacher says"),
    ("RGB", png(np.full((280, 280, 3), 255, np.uint8)), "Draw a digit"),
    ("greyscale", png(np.where(np.arange(280)[None, :] % 100 < 20, 0, 255).astype(np.uint8).repeat(280, 0)),
     "Teacher says"),
    ("truncated file", png(dot(280, 40))[:100], "Could not read that image"),
    ("not an image", b"hello, this is not a PNG at all", "Could not read that image"),
    ("decompression bomb", png(np.zeros((6000, 6000), np.uint8)), "Could not read that image"),
])
def test_odd_canvases_through_the_api_get_clear_answers(app_url, name, content, expect):
    event, payload = predict_file(app_url, content)
    assert event == "complete", (name, payload)
    assert expect in note_of(payload), (name, note_of(payload))
    assert "Traceback" not in payload


def test_the_worker_survives_and_still_reads_digits(app_url):
    for bad in (b"", b"\x89PNG\r\n\x1a\n", png(dot(280, 40))[:200]):
        predict_file(app_url, bad) if bad else None
    canvas = np.zeros((280, 280, 4), np.uint8)
    canvas[40:240, 130:150, 3] = 255  # a "1"
    event, payload = predict_file(app_url, png(canvas))
    assert event == "complete" and "Teacher says **1**" in note_of(payload)


def test_server_paths_are_not_readable_through_the_api(app_url):
    for path in ("/etc/passwd", "../../etc/passwd", str(app.__file__)):
        event, payload = call_predict(app_url, {"path": path, "meta": {"_type": "gradio.FileData"}})
        assert event == "error" or "Teacher says" not in payload
        assert "root:" not in payload and "import gradio" not in payload


def test_uploads_are_capped(app_url):
    big = np.random.default_rng(0).integers(0, 256, (1500, 1500, 4), dtype=np.uint8)  # ~9 MB as PNG
    content = png(big)
    assert len(content) > 5_000_000
    assert upload(app_url, content).status_code == 413


def call(url, name, data):
    with httpx.Client(base_url=url, timeout=60) as http:
        r = http.post(f"gradio_api/call/{name}", json={"data": data})
        if r.status_code != 200:
            return "http", r.text
        text = http.get(f"gradio_api/call/{name}/{r.json()['event_id']}").text
    lines = text.splitlines()
    return ([ln[7:] for ln in lines if ln.startswith("event: ")][-1],
            [ln[6:] for ln in lines if ln.startswith("data: ")][-1])


@pytest.mark.parametrize("name,bad", [("temperature", 0), ("temperature", -1), ("alpha", -0.5), ("alpha", 1.5),
                                      ("epochs", 10**9), ("temperature", "NaN"), ("lr", "inf"), ("epochs", "many"),
                                      ("teacher", "resnet152"), ("student", "../../etc"),
                                      ("second_teacher", "resnet152"), ("clip_grad_norm", -1),
                                      ("clip_grad_norm", "x"), ("feature_loss", "evil")])
def test_a_script_calling_start_directly_is_validated_like_the_ui(app_url, name, bad):
    """Any event the page can trigger, a script can too (the browser is an HTTP client), so the
    server validates every hyperparameter itself, with the UI's messages and caps."""
    event, payload = call(app_url, "start", start_event_data(app_url, "a-script", **{name: bad}))
    assert "Traceback" not in payload
    assert event != "complete" or "Not started" in payload, payload
    assert not app.lab.queue.busy()


@pytest.mark.slow
def test_a_script_cannot_stop_someone_elses_run(app_url):
    record, _ = app.lab.start({"epochs": 20}, owner="a visitor")
    assert record is not None
    try:
        for data in (["another token", record["id"]], [None, record["id"]], ["", None]):
            event, payload = call(app_url, "stop", data + ["en"])  # owner, run on show, the page's language
            assert event == "complete" and "no run" in payload, payload
            assert app.lab.run(record["id"])["state"] in ("queued", "running")
    finally:
        app.lab.cancel(record["id"], owner=None)
        app.lab.queue.wait(record["id"], 10)
@pytest.mark.slow
def test_many_big_canvases_do_not_grow_memory_without_bound(app_url):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, peak
    content = png(dot(3000, 500))
    for _ in range(10):
        event, _ = predict_file(app_url, content)
        assert event == "complete"
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 1024, f"peak memory grew by {grown_mb:.0f} MB over 10 large canvases"


def jpeg(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG")
    return buffer.getvalue()


# What an answer must never carry: a server path, a stack, or a class name from inside.
LEAKS = re.compile(r"/tmp/|/work/|/home/|/usr/|site-packages|gradio[/_]|Traceback|File \"|line \d+|"
                   r"\b[A-Z][A-Za-z]*(Error|Exception|Warning)\b|<class |0x[0-9a-f]{6,}")
BAD_UPLOADS = {
    "not an image": b"hello, this is not a PNG at all",
    "empty file": b"",
    "PNG signature only": b"\x89PNG\r\n\x1a\n",
    "truncated PNG": png(dot(280, 40))[:100],
    "truncated JPEG": jpeg(np.full((280, 280, 3), 200, np.uint8))[:300],
    "decompression bomb": png(np.zeros((6000, 6000), np.uint8)),
    "too wide": png(np.zeros((8, 5000), np.uint8)),
    "zip archive": b"PK\x03\x04" + bytes(200),
}


@pytest.mark.parametrize("name", BAD_UPLOADS)
def test_bad_uploads_name_the_problem_and_no_server_path(app_url, name):
    event, payload = predict_file(app_url, BAD_UPLOADS[name])
    answer = note_of(payload) if event == "complete" else payload
    assert not LEAKS.search(payload), (name, payload)
    assert "PNG or JPEG" in answer or "largest allowed" in answer, (name, answer)


@pytest.mark.parametrize("composite", ["not even a file", 42, {"path": "/nonexistent/x.png", "meta": {
    "_type": "gradio.FileData"}}, {"url": "http://127.0.0.1:9/x.png", "meta": {"_type": "gradio.FileData"}}])
def test_malformed_predict_payloads_leak_nothing(app_url, composite):
    event, payload = call_predict(app_url, composite)
    assert not LEAKS.search(payload), payload
