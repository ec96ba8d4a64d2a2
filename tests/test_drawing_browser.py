"""The drawing panel in a real browser (Debian's chromium, playwright) against `python app.py`:
the digit is read in the page, with the server out of the loop, and reads the same as the server.

Without chromium these skip with the reason; under CI=true a missing browser is a failure.
"""
import base64
import io
import json
import re
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from kdapp.evaluation import inference
from kdapp.evaluation.redraw import redraw
from kdapp.tools.bench_drawing import draw
from kdapp.tools.serving import redrawn_canvases
from kdapp.ui.i18n import CATALOGS
from tests.test_browser import browser, server  # noqa: F401 (the same fixtures)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
ONE = [[(0.5, 0.15), (0.5, 0.85)]]
ZERO = [[(0.5, 0.15), (0.25, 0.35), (0.25, 0.65), (0.5, 0.85), (0.75, 0.65), (0.75, 0.35), (0.5, 0.15)]]
BOXES = ("#teacher-pred", "#student-pred", "#baseline-pred")
# Gradio's event routes and the panel's server function. Aborting all of them would not test the
# panel: gradio reloads a page whose timer tick fails ("Connection errored out").
SERVER_CALLS = re.compile(r".*/gradio_api/(run/|queue/join|call/|component_server).*")


@pytest.fixture
def contexts(browser):
    opened = []

    def new(**options):
        options.setdefault("viewport", {"width": 1400, "height": 1000})
        context = browser.new_context(**options)
        opened.append(context)
        return context
    yield new
    for context in opened:
        context.close()


def predict_index(url):
    """The id of /predict's event in the app's config: requests carrying it ask for a prediction."""
    config = json.loads(urllib.request.urlopen(url + "config", timeout=10).read())
    return next(d["id"] for d in config["dependencies"] if d.get("api_name") == "predict")


def carries_prediction(request, index):
    """A request that asks the server to read a drawing: /predict's event or the panel's fallback."""
    if "/gradio_api/component_server" in request.url:
        return True
    try:
        body = request.post_data_json if request.method == "POST" else None
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("fn_index") == index


def open_panel(context, url):
    """A page whose panel has mounted and, in the browser mode, loaded its three models."""
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("() => window.kdappDrawing && window.kdappDrawing.panel", timeout=60_000)
    page.evaluate("() => window.kdappDrawing.panel.ready")
    return page




def expect_digit(page, digit, timeout=15_000):
    """Each box's text begins with `digit`, its top answer."""
    from playwright.sync_api import expect
    for box in BOXES:
        expect(page.locator(box + " .kd-top")).to_have_text(str(digit), timeout=timeout)
        assert page.locator(box).inner_text().startswith(f"{digit}\n"), box


# ---- the preprocessing, held equal to Python's ----

def canvases():
    """Named RGBA canvases: blank, tiny, off-centre, thick stroke, on paper, and real digits redrawn."""
    blank = np.zeros((280, 280, 4), np.uint8)
    tiny = blank.copy()
    tiny[140:151, 100:103, 3] = 255                      # an 11 px "1", 3 px wide
    rng = np.random.default_rng(3)
    digits, _ = redrawn_canvases(4, seed=1)
    from kdapp import data as data_lib
    _, _, images, _ = data_lib.sample_split()
    off_centre = blank.copy()
    small = redraw(images[0], rng, canvas=100, min_frac=0.8, max_frac=0.8, strokes=(3,))
    off_centre[170:270, 5:105] = small                    # bottom-left corner
    thick = redraw(images[1], rng, min_frac=0.7, max_frac=0.7, strokes=(7,))
    paper = np.full((280, 280, 4), 255, np.uint8)         # opaque: dark ink on white, no alpha
    paper[..., :3] -= redraw(images[2], rng)[..., 3:4]
    wide = blank.copy()
    wide[130:150, 20:260, 3] = 200                        # a long dash in grey: LANCZOS down, aspect kept
    return {"blank": blank, "tiny": tiny, "off-centre": off_centre, "thick": thick, "paper": paper, "wide": wide,
            **{f"digit-{k}": c for k, c in enumerate(digits)}}


def browser_preprocess(page, rgba):
    h, w = rgba.shape[:2]
    return page.evaluate("""([data, w, h]) => {
        const bytes = Uint8ClampedArray.from(atob(data), (c) => c.charCodeAt(0));
        const out = window.kdappDrawing.panel.preprocess(bytes, w, h);
        return out && {image: Array.from(out.image28), notes: out.notes}; }""",
                         [base64.b64encode(rgba.tobytes()).decode(), w, h])


def test_the_browser_prepares_every_canvas_as_python_does(server, contexts):
    page = open_panel(contexts(), server)
    for name, rgba in canvases().items():
        got = browser_preprocess(page, rgba)
        if name == "blank":
            assert got is None
            with pytest.raises(inference.BlankCanvas):
                inference.preprocess(rgba)
            continue
        want = inference.preprocess(rgba)
        image = np.array(got["image"], np.int16).reshape(28, 28)
        diff = np.abs(image - want.image.astype(np.int16))
        assert diff.max() <= 1, f"{name}: {int((diff > 1).sum())} pixels differ by more than 1 grey level"
        # the browser's notes are catalog keys: in English, Python's sentences word for word
        assert want.image.sum() > 0 and [CATALOGS["en"][key] for key in got["notes"]] == want.notes, name


def test_the_browser_and_predict_give_the_same_probabilities(server, contexts, tmp_path):
    """The digit drawn in the page, read by the page, and the same canvas sent to /predict."""
    from gradio_client import Client, handle_file
    page = open_panel(contexts(), server)
    draw(page, ZERO)
    expect_digit(page, 0)
    result = page.evaluate("() => { const r = window.kdappDrawing.panel.result();"
                           " return {...r, image: Array.from(r.image)}; }")
    png = tmp_path / "canvas.png"
    png.write_bytes(base64.b64decode(page.evaluate(
        "() => document.querySelector('#sketch canvas').toDataURL('image/png').split(',')[1]")))
    sketch = {"background": handle_file(str(png)), "layers": [], "composite": handle_file(str(png))}
    outputs = Client(server, verbose=False).predict(sketch, result["temperature"], api_name="/predict")
    figure = outputs[3]["plot"] if isinstance(outputs[3], dict) else outputs[3]
    bars = [trace["y"] for trace in json.loads(figure)["data"]]
    roles = [r for r in ("teacher", "student", "baseline") if r in result]
    assert len(bars) == 2 * len(roles) == 6  # T=1 then T, each teacher, student, baseline
    for k, role in enumerate(roles):
        np.testing.assert_allclose(result[role]["p1"], bars[k], atol=1e-4, err_msg=f"{role} at T=1")
        np.testing.assert_allclose(result[role]["pT"], bars[len(roles) + k], atol=1e-4, err_msg=f"{role} at T")
    assert outputs[0]["label"] == "0"


# ---- the server out of the loop ----

def test_a_digit_is_read_with_the_servers_predictions_blocked(server, contexts):
    page = open_panel(contexts(), server)
    index, blocked = predict_index(server), []

    def block_predictions(route):
        if carries_prediction(route.request, index):
            blocked.append(route.request.url)
            return route.abort()
        return route.continue_()
    page.route(SERVER_CALLS, block_predictions)
    draw(page, ONE)
    expect_digit(page, 1)
    page.wait_for_timeout(500)
    assert "Teacher says 1, student says 1" in page.locator("#draw-note").inner_text()
    assert blocked == [], "the stroke asked the server"


def test_clear_then_draw_always_shows_the_new_digit_on_a_slow_server(server, contexts):
    page = open_panel(contexts(), server)

    def slow(route):  # every gradio call answered 2 s late, as on a Space that is training
        page.wait_for_timeout(2000)
        route.continue_()
    page.route(SERVER_CALLS, slow)
    for first, second, digit in ((ZERO, ONE, 1), (ONE, ZERO, 0), (ZERO, ONE, 1)):
        draw(page, first)
        page.click("#clear")
        draw(page, second)
        expect_digit(page, digit, timeout=5_000)
        page.wait_for_timeout(2500)  # anything late from the server has arrived by now
        expect_digit(page, digit, timeout=1_000)
    page.click("#clear")
    for box in BOXES:
        assert page.locator(box).inner_text() == ""
    assert "Draw a digit" in page.locator("#draw-note").inner_text()
    # The page's timer keeps calling the server: a call still held by `slow` when the context
    # closes would raise into the next test. Let the held calls go and route no more.
    page.unroute_all(behavior="ignoreErrors")


def test_a_finger_draws_on_a_phone_and_the_page_does_not_scroll(server, contexts):
    context = contexts(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = open_panel(context, server)
    canvas = page.locator("#sketch canvas")
    canvas.scroll_into_view_if_needed()
    before = page.evaluate("() => [window.scrollX, window.scrollY]")
    box = canvas.bounding_box()
    cdp = context.new_cdp_session(page)
    points = [(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * (0.15 + 0.7 * k / 20)) for k in range(21)]
    for kind, point in [("touchStart", points[0])] + [("touchMove", p) for p in points[1:]] + [("touchEnd", None)]:
        touches = [] if point is None else [{"x": point[0], "y": point[1], "id": 1}]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": touches})
    expect_digit(page, 1)
    assert page.evaluate("() => [window.scrollX, window.scrollY]") == before, "the finger scrolled the page"
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 392  # nothing wider than the screen


def test_without_webassembly_the_page_asks_the_server(server, contexts):
    context = contexts()
    context.add_init_script("delete window.WebAssembly;")
    page = open_panel(context, server)
    assert page.evaluate("() => window.kdappDrawing.panel.mode") == "server"
    draw(page, ONE)
    expect_digit(page, 1, timeout=30_000)
    assert "Teacher says 1" in page.locator("#draw-note").inner_text()
    assert page.evaluate("() => window.kdappDrawing.panel.stats.serverCalls") == 1  # one per stroke, at pen-up


def test_moving_t_reads_the_digit_again_at_once(server, contexts):
    page = open_panel(contexts(), server)
    draw(page, ONE)
    expect_digit(page, 1)
    number = page.locator("#control-temperature input[type=number]")
    number.fill("9")  # an input event, no release, no new stroke
    from playwright.sync_api import expect
    expect(page.locator("#dist-plot")).to_contain_text("T = 9", timeout=5_000)
    expect(page.locator("#draw-note")).to_contain_text("next choices at T=9")
    runner_ups = re.search(r"next choices at T=9: (\d) \(([\d.e+-]+)%\) and (\d) \(([\d.e+-]+)%\)",
                           page.locator("#draw-note").inner_text())
    p_t = page.evaluate("() => window.kdappDrawing.panel.result().teacher.pT")
    order = np.argsort(p_t)[::-1]
    assert [int(runner_ups[1]), int(runner_ups[3])] == [int(order[1]), int(order[2])]
    assert float(runner_ups[2]) == pytest.approx(100 * p_t[order[1]], abs=0.05)


def test_a_links_t_is_the_panels_t(server, contexts):
    from playwright.sync_api import expect
    page = open_panel(contexts(), server + "?T=8")  # set by the server on load: no input event
    draw(page, ONE)
    expect(page.locator("#dist-plot")).to_contain_text("T = 8", timeout=15_000)
    expect(page.locator("#draw-note")).to_contain_text("at T=8")


@pytest.mark.slow
def test_a_runs_int8_students_are_read_in_the_browser_as_onnxruntime_reads_them(server, contexts, tmp_path):
    """A run with int8 students: its "-int8" choice makes the page load the int8 ONNX files (QDQ
    ops in ONNX Runtime Web) and read the digit as onnxruntime on the server reads those files."""
    import httpx
    from kdapp.tools.loadtest import _last_event_data
    from kdapp.tools.serving import start_event_data, wait_until
    owner = "int8-drawer"
    data = start_event_data(server, owner, quantize="ptq", epochs=1, train_fraction=0.1)
    with httpx.Client(base_url=server, timeout=60) as http:
        r = http.post("gradio_api/call/start", json={"data": data})
        r.raise_for_status()
        notice = _last_event_data(http.get(f"gradio_api/call/start/{r.json()['event_id']}").text)[0]
        run_id = re.search(r"Run ([0-9a-f]{8})", notice).group(1)

        def state():
            runs = http.post("gradio_api/run/runs", json={"data": [], "session_hash": owner}).json()["data"][0]
            return next((run["state"] for run in runs if run["id"] == run_id), None)
        assert wait_until(lambda: state() not in ("queued", "running", None), timeout=300) and state() == "finished"
    choice = run_id + "-int8"
    page = open_panel(contexts(), server)
    page.evaluate(f"() => window.kdappDrawing.panel.setModels({json.dumps(choice)})")
    before = page.evaluate("() => window.kdappDrawing.panel.stats.penUpToPaint.length")
    draw(page, ZERO)
    page.wait_for_function(f"() => {{ const p = window.kdappDrawing.panel, r = p.result();"  # the pen-up reading
                           f" return p.stats.penUpToPaint.length > {before} && r && r.models"
                           f" && r.models.endsWith('int8 students'); }}", timeout=30_000)
    result = page.evaluate("() => window.kdappDrawing.panel.result()")
    # By hand: the files the page was served, run by onnxruntime on the canvas as Python prepares it.
    from PIL import Image
    from kdapp.evaluation import quantize
    from kdapp.ui.drawing import PREFIX
    manifest = json.loads(urllib.request.urlopen(f"{server.rstrip('/')}{PREFIX}/models/{choice}.json").read())
    canvas = np.array(Image.open(io.BytesIO(base64.b64decode(page.evaluate(
        "() => document.querySelector('#sketch canvas').toDataURL('image/png').split(',')[1]")))).convert("RGBA"))
    x = inference.preprocess(canvas).tensor.numpy()
    for role, url in manifest["roles"].items():
        path = tmp_path / f"{role}.onnx"
        path.write_bytes(urllib.request.urlopen(server.rstrip("/") + url).read())
        assert (b"QuantizeLinear" in path.read_bytes()) == (role != "teacher"), role  # int8 students, fp32 teacher
        logits = quantize.onnx_logits(str(path), x)[0]
        by_hand = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        np.testing.assert_allclose(result[role]["p1"], by_hand, atol=1e-4, err_msg=role)
    assert manifest["roles"]["student"].split("?")[0].endswith(f"/{choice}/student.onnx")
