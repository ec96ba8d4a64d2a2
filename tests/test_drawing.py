"""The drawing panel's server side, without a browser: the files it serves (compressed, and the
same bytes as the vendored and exported ones), the ONNX models (the same logits as torch), and
the fallback's answer (the same as lab.predict)."""
import base64
import hashlib
import io
import re

import brotli
import numpy as np
import pytest
import torch
from PIL import Image
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.testclient import TestClient

from kdapp.evaluation import inference
from kdapp.lab import facade
from kdapp.tools.serving import redrawn_canvases
from kdapp.ui import drawing

VENDOR = drawing.STATIC_DIR / "vendor" / "onnxruntime-web"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = facade.Lab(runs_dir=tmp_path_factory.mktemp("runs"))
    yield lab
    lab.close()


@pytest.fixture(scope="module")
def client(lab):
    app = Starlette(middleware=[Middleware(drawing.DrawingFiles, get_lab=lambda: lab)])
    return TestClient(app)


def get(client, path, brotli_ok=True):
    # TestClient (httpx) would decode br itself; ask for the raw bytes to see what was sent.
    headers = {"Accept-Encoding": "br" if brotli_ok else "identity"}
    with client.stream("GET", drawing.PREFIX + path, headers=headers) as r:
        return r, b"".join(r.iter_raw())


def test_the_runtime_is_the_vendored_release_compressed_or_not(client):
    sha = {name: digest for digest, name in re.findall(r"([0-9a-f]{64})  (\S+)", (VENDOR / "VERSION").read_text())}
    r, body = get(client, "/static/" + drawing.WASM)
    assert r.headers["content-encoding"] == "br" and r.headers["content-type"] == "application/wasm"
    assert len(body) < 3_000_000  # what a first visit downloads (14.2 MB decoded)
    assert hashlib.sha256(brotli.decompress(body)).hexdigest() == sha["ort-wasm-simd-threaded.wasm"]
    r, plain = get(client, "/static/" + drawing.WASM, brotli_ok=False)
    assert "content-encoding" not in r.headers and hashlib.sha256(plain).hexdigest() == sha[
        "ort-wasm-simd-threaded.wasm"]
    r, js = get(client, "/static/" + drawing.RUNTIME)
    assert hashlib.sha256(brotli.decompress(js)).hexdigest() == sha["ort.wasm.bundle.min.mjs"]


@pytest.mark.parametrize("path", ["/static/../drawing.py", "/static/%2e%2e/drawing.py", "/static/nothing.js",
                                  "/models/shipped/secret.onnx", "/elsewhere"])
def test_nothing_outside_the_panels_files_is_served(client, path):
    assert get(client, path)[0].status_code == 404


def test_the_shipped_models_in_onnx_give_torchs_logits(client, lab):
    import onnxruntime as ort
    r = client.get(drawing.PREFIX + "/models/shipped.json")
    manifest = r.json()
    assert set(manifest["roles"]) == {"teacher", "student", "baseline"} and "shipped" in manifest["models"]
    teacher, student, baseline, _ = lab.models(facade.SHIPPED)
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(4, 1, 28, 28)).astype(np.float32))
    for role, model in (("teacher", teacher), ("student", student), ("baseline", baseline)):
        _, body = get(client, manifest["roles"][role].removeprefix(drawing.PREFIX))
        session = ort.InferenceSession(brotli.decompress(body))
        logits = session.run(None, {"image": x.numpy()})[0]
        with torch.no_grad():
            np.testing.assert_allclose(logits, model(x).numpy(), atol=1e-4, err_msg=role)


def test_an_unknown_run_is_a_404_that_says_why(client):
    r = client.get(drawing.PREFIX + "/models/deadbeef.json")
    assert r.status_code == 404 and "no run deadbeef" in r.json()["error"]


def png_data_url(rgba):
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_the_fallback_answers_as_lab_predict(lab):
    canvas = redrawn_canvases(1, seed=2)[0][0]
    answer = drawing.server_answer(lab, png_data_url(canvas), 4.0, facade.SHIPPED)
    want = lab.predict(canvas, 4.0, facade.SHIPPED)
    for role in ("teacher", "student", "baseline"):
        np.testing.assert_allclose(answer[role]["pT"], want[role]["pT"], atol=1e-6)
    assert answer["image"] == want["image"].ravel().tolist() and answer["models"] == want["models"]


@pytest.mark.parametrize("image,says", [
    ("not a data url", "PNG data URL"),
    ("data:image/png;base64,@@@", "not valid base64"),
    ("data:image/png;base64," + base64.b64encode(b"not a png").decode(), "that file is not an image"),
    (None, "PNG data URL"),
])
def test_the_fallback_says_what_is_wrong(lab, image, says):
    assert says in drawing.server_answer(lab, image, 4.0, facade.SHIPPED)["error"]


def test_the_manifest_and_the_fallback_speak_the_page_s_language(client, lab):
    """drawing.js asks with ?lang= (and sends lang to the fallback): the models' description, an
    error and the notes come back in the page's language; without it, in English."""
    zh = client.get(drawing.PREFIX + "/models/shipped.json?lang=zh").json()["models"]
    assert zh.startswith("随附的模型：") and "训练数据：完整 MNIST" in zh, zh
    assert client.get(drawing.PREFIX + "/models/shipped.json").json()["models"].startswith("shipped checkpoints: ")
    assert client.get(drawing.PREFIX + "/models/deadbeef.json?lang=zh").json()["error"] == "不存在实验 deadbeef"
    small = np.zeros((280, 280, 4), np.uint8)
    small[100:104, 100:104, 3] = 255  # black ink, opaque
    answer = drawing.server_answer(lab, png_data_url(small), 4.0, facade.SHIPPED, "zh")
    assert answer["notes"] == ["写得很小；已放大到 MNIST 的尺寸"] and answer["models"] == zh
    assert "PNG" in drawing.server_answer(lab, None, 4.0, facade.SHIPPED, "zh")["error"]


def test_a_blank_canvas_is_blank_not_an_error(lab):
    answer = drawing.server_answer(lab, png_data_url(np.zeros((280, 280, 4), np.uint8)), 4.0, facade.SHIPPED)
    assert answer == {"blank": True}
    with pytest.raises(inference.BlankCanvas):
        inference.preprocess(np.zeros((280, 280, 4), np.uint8))


def test_the_readme_quotes_the_drawing_bench_it_ships():
    """The README's drawing numbers are results/bench-drawing.json's (python -m kdapp bench --drawing)."""
    import json
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    bench = json.loads((root / "results" / "bench-drawing.json").read_text())
    readme = (root / "README.md").read_text(encoding="utf-8")
    idle, training = (round(bench[k]["pen_up_to_painted_ms"]["p95"]) for k in ("idle", "training"))
    assert f"p95 {idle} ms on an idle server and {training} ms" in readme
    assert f"{bench['first_load']['panel_transferred_mb']:.1f} MB on a first" in readme
    assert bench["training"]["strokes_while_training"] == bench["training"]["strokes"]  # trained for every stroke
    assert max(bench["idle"]["pen_up_to_painted_ms"]["p95"], bench["training"]["pen_up_to_painted_ms"]["p95"]) <= 50
