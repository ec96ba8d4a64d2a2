"""End to end in a real browser: Debian's chromium driven by playwright, against `python app.py`.

Without chromium these skip with the reason; under CI=true a missing browser is a failure.
Screenshots of the key states go to artifacts/ (docs/ and the README show them).
"""
import io
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kdapp.tools.bench_drawing import draw
from kdapp.tools.serving import start_app, wait_for_http

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags chromium keeps dialling Google, which this sandbox refuses.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]
QUICK = "&epochs=1&fraction=0.1"  # a run of a few seconds, set through the permalink parameters

SERVER = {}  # the module's app: its runs folder

pytestmark = pytest.mark.browser  # the fast tier (-m "not slow and not browser") skips the whole module


def require(condition, reason):
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: browser tests must run, not skip)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = open(tmp_path_factory.mktemp("log") / "app.log", "w")
    SERVER["runs_dir"] = tmp_path_factory.mktemp("runs")
    proc, url = start_app(SERVER["runs_dir"], log=log)
    wait_for_http(url, proc)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def browser():
    require(Path(CHROMIUM).exists(), f"no chromium at {CHROMIUM}: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "python playwright is not installed: pip install -r requirements-dev.txt")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield browser
        close_open_contexts()  # a module without close_contexts: closed here, while its playwright runs
        browser.close()


OPEN = []  # contexts a test opened: closed after it, or every open page keeps polling the server


def close_open_contexts():
    while OPEN:
        OPEN.pop().close()


@pytest.fixture(autouse=True)
def close_contexts():
    """Autouse where it is imported: the contexts a test opened are closed after it. Without this, a
    module's contexts stay open until its browser fixture ends, and a context left for a later
    module would fail to close there ("Event loop is closed": its playwright has stopped)."""
    yield
    close_open_contexts()


def new_context(browser, **options):
    context = browser.new_context(**options)
    OPEN.append(context)
    return context


def open_page(browser, url, height=1000, context=None):
    context = context or new_context(browser, viewport={"width": 1400, "height": height})
    page = context.new_page()
    page.goto(url)
    # attached, not visible: a continual run's link ("?run=<id>") opens the Continual tab, which may
    # hide the Distill tab's canvas before it is ever shown (CI failed on that race once)
    page.wait_for_selector("#sketch canvas", state="attached", timeout=30_000)
    page.wait_for_function("() => window.kdappDrawing && window.kdappDrawing.panel", timeout=30_000)  # listening
    return page




ONE = [[(0.5, 0.15), (0.5, 0.85)]]
SEVEN = [[(0.3, 0.2), (0.7, 0.2), (0.45, 0.85)]]


def ink_pixels(page):
    """Dark pixels on the drawing canvas as the visitor sees it (a screenshot of the canvas)."""
    canvas = page.locator("#sketch canvas").first
    canvas.scroll_into_view_if_needed()
    image = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("L"))
    return int((image < 100).sum())


def status_text(page):
    return page.locator("#status").inner_text()


def run_id_in(text):
    return re.search(r"[Rr]un ([0-9a-f]{8})", text).group(1)


def start_and_finish(page, timeout=180_000):
    """Press Start, read the new run's id from the notice, and wait until the page shows it finished."""
    from playwright.sync_api import expect
    for _ in range(30):  # a page still loading (a busy box) says so and starts nothing: press again
        page.click("#start")
        expect(page.locator("#notice")).to_contain_text(re.compile("started|queued|still loading"), timeout=10_000)
        if "still loading" not in page.locator("#notice").inner_text():
            break
        page.wait_for_timeout(1000)
    expect(page.locator("#notice")).to_contain_text(re.compile("started|queued"), timeout=10_000)
    run_id = run_id_in(page.locator("#notice").inner_text())
    expect(page.locator("#status")).to_contain_text(f"Finished: run {run_id}", timeout=timeout)
    return run_id


def test_draw_clear_draw_in_every_order(server, browser):
    from playwright.sync_api import expect
    page = open_page(browser, server, height=1900)
    page.click("#clear")  # Clear on a fresh, empty canvas used to break every later Clear
    draw(page, ONE)
    expect(page.locator("#draw-note")).to_contain_text("Teacher says 1, student says 1", timeout=15_000)
    for clear in ("click", "dblclick", "click"):
        getattr(page.locator("#clear"), clear)()
        expect(page.locator("#draw-note")).to_contain_text("Draw a digit", timeout=10_000)
        page.wait_for_timeout(500)
        assert ink_pixels(page) == 0, f"ink left on the canvas after {clear}"
        page.click("#clear")  # and once more on the now empty canvas
        draw(page, SEVEN)
        # Read alone: a 7 over the old 1 would not be a 7.
        expect(page.locator("#teacher-pred")).to_contain_text("7", timeout=15_000)
        expect(page.locator("#student-pred")).to_contain_text("7")
        page.click("#clear")
        expect(page.locator("#draw-note")).to_contain_text("Draw a digit", timeout=10_000)
        draw(page, ONE)
        expect(page.locator("#draw-note")).to_contain_text("Teacher says 1", timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "draw.png"), full_page=True)


def test_the_28px_input_is_shown_large(server, browser):
    from playwright.sync_api import expect
    page = open_page(browser, server, height=1900)
    draw(page, ONE)
    image = page.locator("#digit-28 canvas")
    expect(image).to_be_visible(timeout=15_000)
    box = image.bounding_box()
    assert box["width"] >= 140 and box["height"] >= 140, box


def test_gradios_own_runs_link_is_not_in_the_footer(server, browser):
    page = open_page(browser, server)
    footer = page.locator("footer").inner_text()
    assert "Use via API" in footer and "Runs" not in footer


def test_two_visitors_queue_fairly_and_both_runs_are_kept(server, browser):
    from playwright.sync_api import expect
    first = open_page(browser, server + "?epochs=2&fraction=1")
    second = open_page(browser, server + "?epochs=1&fraction=0.1")
    first.click("#start")
    second.click("#start")  # within a second of the first
    expect(first.locator("#notice")).to_contain_text("started", timeout=10_000)
    expect(second.locator("#notice")).to_contain_text("queued, position 1", timeout=10_000)
    expect(second.locator("#queue")).to_contain_text("another visitor")
    expect(second.locator("#status")).to_contain_text("starts in about")
    second.screenshot(path=str(ARTIFACTS / "queued.png"))
    ids = [run_id_in(p.locator("#notice").inner_text()) for p in (first, second)]
    expect(second.locator("#status")).to_contain_text(f"Finished: run {ids[1]}", timeout=180_000)
    expect(first.locator("#status")).to_contain_text(f"Finished: run {ids[0]}", timeout=10_000)
    expect(first.locator("#notice")).to_have_text("", timeout=5_000)  # "started" is gone once it ended
    expect(first.locator("#stop")).to_be_disabled()
    from gradio_client import Client
    listed = Client(server, verbose=False).predict(api_name="/runs")
    listed = json.loads(listed) if isinstance(listed, str) else listed
    assert {r["id"]: r["state"] for r in listed if r["id"] in ids} == dict.fromkeys(ids, "finished")
    second.get_by_role("tab", name="Runs").click()
    second.get_by_role("button", name="Refresh").click()
    for run_id in ids:
        expect(second.locator("#runs")).to_contain_text(run_id, timeout=10_000)
    # None selected: the TensorBoard zip holds every listed run, one event folder each.
    second.locator("#tensorboard-zip").click()
    link = second.locator("#downloads a[download='kdapp-runs-tensorboard.zip']")
    expect(link).to_be_visible(timeout=15_000)
    with second.expect_download() as download:
        link.click()
    with zipfile.ZipFile(download.value.path()) as archive:
        assert set(ids) <= {name.split("_")[0] for name in archive.namelist()}
        assert all(".tfevents." in name for name in archive.namelist())


def test_reloading_keeps_the_right_to_stop_and_others_never_get_it(server, browser):
    from playwright.sync_api import expect
    page = open_page(browser, server + "?epochs=40&fraction=1")
    page.click("#start")
    expect(page.locator("#status")).to_contain_text(re.compile(r"step \d+/\d+"), timeout=60_000)
    run_id = run_id_in(status_text(page))
    page.reload()
    page.wait_for_function("() => window.kdappDrawing && window.kdappDrawing.panel", timeout=30_000)
    expect(page.locator("#status")).to_contain_text("your run", timeout=10_000)
    expect(page.locator("#stop")).to_be_enabled()
    tab = open_page(browser, server, context=page.context)  # a new tab in the same browser
    expect(tab.locator("#stop")).to_be_enabled(timeout=10_000)
    stranger = open_page(browser, server)
    expect(stranger.locator("#status")).to_contain_text("another visitor", timeout=10_000)
    expect(stranger.locator("#stop")).to_be_disabled()
    page.click("#stop")
    expect(page.locator("#status")).to_contain_text(f"Stopped: run {run_id}", timeout=10_000)
    # A later visitor sees the last *finished* run, not the stopped one.
    later = open_page(browser, server)
    expect(later.locator("#status")).to_contain_text(re.compile("Finished|No finished run yet"), timeout=10_000)
    expect(later.locator("#status")).not_to_contain_text(run_id)


def test_a_permalink_shows_its_run_and_its_models(server, browser):
    from playwright.sync_api import expect
    maker = open_page(browser, server + "?T=8&alpha=0.5" + QUICK)
    run_id = start_and_finish(maker)
    expect(maker.locator("#status-link")).to_contain_text(f"/?run={run_id}")
    fresh = new_context(browser, viewport={"width": 1400, "height": 1900})
    page = open_page(browser, f"{server}?run={run_id}", context=fresh)
    expect(page.locator("#status")).to_contain_text(run_id, timeout=10_000)
    expect(page.locator("#status")).to_contain_text("T=8, α=0.5")
    draw(page, ONE)
    expect(page.locator("#draw-note")).to_contain_text(f"run {run_id}", timeout=15_000)


def test_the_drawing_follows_the_visitors_new_models_at_once(server, browser):
    from playwright.sync_api import expect
    page = open_page(browser, server + "?alpha=0.9" + QUICK, height=1900)
    draw(page, SEVEN)
    expect(page.locator("#draw-note")).to_contain_text("shipped checkpoints", timeout=15_000)
    run_id = start_and_finish(page)
    # No new stroke: the panel re-reads the digit with the run's models.
    expect(page.locator("#draw-note")).to_contain_text(f"run {run_id}", timeout=15_000)


def test_links_from_strangers_are_escaped_and_checked(server, browser):
    from playwright.sync_api import expect
    page = new_context(browser, viewport={"width": 1400, "height": 1000}).new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(server + "?run=<img src=x onerror=alert(1)>&teacher=<script>alert(2)</script>&T=500&alpha=0.2"
                       "&epochs=3&[sign in again](https://evil.example)=1")
    page.wait_for_selector("#sketch canvas", timeout=30_000)
    expect(page.locator("#notice")).to_contain_text("There is no run", timeout=10_000)
    expect(page.locator("#notice")).to_contain_text("Ignored from the link")
    notice = page.locator("#notice").inner_text()
    assert "teacher" in notice and "T" in notice and "alpha" not in notice
    assert page.locator("#notice img, #notice script, #notice a, #status img").count() == 0
    assert page.get_by_label("α: weight of the soft targets").first.input_value() in ("0.2", "0.20")
    draw(page, ONE)  # the page still works
    expect(page.locator("#teacher-pred")).to_contain_text("1", timeout=15_000)
    assert dialogs == []


def test_a_sweep_fills_the_kd_gain_map(server, browser):
    from playwright.sync_api import expect
    page = open_page(browser, server + "?epochs=1&fraction=0.05", height=1400)
    page.click("#sweep-t")
    expect(page.locator("#notice")).to_contain_text("Sweep queued: 5 runs", timeout=10_000)
    expect(page.locator("#queue")).to_contain_text("yours")
    page.wait_for_function("() => !document.querySelector('#queue').innerText.includes('yours')", timeout=300_000)
    page.get_by_role("tab", name="Runs").click()
    page.get_by_role("button", name="Refresh").click()
    page.locator("#runs-filter input").click()
    page.locator("[role=option]", has_text="seed_teacher → seed_student").first.click()
    expect(page.locator("#runs")).to_contain_text("finished", timeout=10_000)
    rows = page.locator("#runs").inner_text()
    sweep_ids = re.findall(r"([0-9a-f]{8})\s+\S+ ± \S+ pts\s+finished", rows)[:2]  # id, KD gain, state
    select = page.locator("#runs-select input")
    for run_id in sweep_ids:
        select.click()
        page.locator("[role=option]", has_text=run_id).first.click()
    page.keyboard.press("Escape")
    expect(page.locator("#gain-map .heatmaplayer, #gain-map .hm")).not_to_have_count(0, timeout=15_000)
    expect(page.locator("#runs-compare .scatterlayer .trace").first).to_be_attached(timeout=15_000)
    expect(page.locator("#run-link")).to_contain_text(f"/?run={sweep_ids[0]}")
    for t in ("T=1", "T=2", "T=4", "T=8", "T=16"):
        expect(page.locator("#gain-map")).to_contain_text(t)
    page.locator("#runs-compare").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "runs.png"), full_page=True)


def test_a_phone_can_draw_with_a_finger(server, browser):
    from playwright.sync_api import expect
    context = new_context(browser, viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                          has_touch=True)
    page = open_page(browser, server, context=context)
    page.screenshot(path=str(ARTIFACTS / "phone.png"), full_page=True)
    canvas = page.locator("#sketch canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    cdp = context.new_cdp_session(page)
    points = [(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * (0.15 + 0.7 * k / 20)) for k in range(21)]
    for kind, point in [("touchStart", points[0])] + [("touchMove", p) for p in points[1:]] + [("touchEnd", None)]:
        touches = [] if point is None else [{"x": point[0], "y": point[1], "id": 1}]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": touches})
    expect(page.locator("#teacher-pred")).to_contain_text("1", timeout=15_000)
    page.locator("#teacher-pred").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "phone-drawn.png"), full_page=True)
    # Nothing wider than the screen: the page does not scroll sideways.
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 392


def test_a_finished_run_shows_what_the_student_learned(server, browser):
    """The fidelity panel: agreement and KL, three confusion matrices, the digits KD fixed and
    broke (their net count is the KD gain), and a click on one shows the three models' softmaxes.
    The drawing shows all three models too."""
    from playwright.sync_api import expect
    page = open_page(browser, server + "?T=4&alpha=0.9" + QUICK, height=1400)
    run_id = start_and_finish(page)
    panel = page.locator("#fidelity")
    expect(panel).to_contain_text("agrees with the teacher", timeout=15_000)
    text = panel.inner_text()
    fixed, broken = (int(n) for n in re.search(r"wrong on (\d+) digits, and the other way round on (\d+)", text).groups())
    student, baseline = (float(v) for v in re.search(r"KD gain \(([\d.]+)% − ([\d.]+)%\) × 2,000", text).groups())
    assert fixed - broken == round((student - baseline) * 20), text  # net count = gain × test size
    expect(page.locator("#confusion-plot .hm, #confusion-plot .heatmaplayer")).not_to_have_count(0, timeout=10_000)
    thumbs = page.locator("#fixed-gallery img")
    expect(thumbs.first).to_be_visible(timeout=10_000)
    assert thumbs.count() == min(32, fixed) and page.locator("#broken-gallery img").count() == min(32, broken)
    thumbs.first.scroll_into_view_if_needed()
    thumbs.first.click()
    expect(page.locator("#example-plot")).to_contain_text("Test digit #", timeout=10_000)
    expect(page.locator("#example-plot")).to_contain_text("baseline (no KD)")
    page.locator("#fidelity").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "fidelity.png"), full_page=True)
    # The drawing: teacher, KD student and baseline, each with its own answer.
    draw(page, ONE)
    for box in ("#teacher-pred", "#student-pred", "#baseline-pred"):
        expect(page.locator(box)).to_contain_text("1", timeout=15_000)
    expect(page.locator("#draw-note")).to_contain_text(f"run {run_id}")


@pytest.mark.parametrize("url,clicks,says", [
    ("", [("#control-loss", "DIST (Huang 2022)")], "DIST"),
    ("", [("#control-loss", "LS-KD (Sun 2024)")], "LS-KD"),
    ("", [("#control-feature_loss", "gram")], "gram feature loss"),
    ("&teacher=self", [("#control-self_distill", "born-again generations")], "born-again, 1 generation"),
    ("&teacher=self", [("#control-self_distill", "deep supervision")], "deep supervision (no teacher)"),
    ("", [("#control-temperature_schedule", "cosine")], "(cosine)"),
    ("&teacher=mutual", [], "deep mutual learning"),
    ("", [("#control-teacher_shifts", 1)], "shift ensemble ±1 px"),
    ("&teacher=mlp_30&student=mlp_30",  # the label follows the linked first teacher: copy 2, not yet saved
     [("#control-second_teacher", re.compile(r"^mlp_30 · [\d,]+ params · a second network, trained first$"))],
     "mlp_30 + mlp_30"),
], ids=["dist", "lskd", "gram", "born-again", "deep-supervision", "temperature-schedule", "mutual", "shift-ensemble",
        "second-copy"])
def test_each_method_starts_from_the_more_methods_controls(server, browser, url, clicks, says):
    """Every method is picked with the controls under "More methods" (the teacher = self from a
    link), trains, and names itself on the finished run's status line."""
    from playwright.sync_api import expect
    page = open_page(browser, server + "?" + QUICK[1:] + url, height=1400)
    page.get_by_text("More methods, data and device").click()
    for control, choice in clicks:
        if isinstance(choice, int):  # a slider: typed into its number box
            box = page.locator(f"{control} input[type=number]")
            box.scroll_into_view_if_needed()
            box.fill(str(choice))
            box.press("Enter")
            continue
        if isinstance(choice, re.Pattern):  # a dropdown: its options are in the page once it is opened
            page.locator(f"{control} input").click()
            page.get_by_role("option", name=choice).click()
            continue
        option = page.locator(control).get_by_text(choice, exact=True)
        option.scroll_into_view_if_needed()
        option.click()
    start_and_finish(page)
    expect(page.locator("#status")).to_contain_text(says)
    if says.startswith("shift ensemble"):  # the ensemble that taught, measured beside the teacher
        expect(page.locator("#status")).to_contain_text("Soft targets from an ensemble of 9 readings at T=")
        expect(page.locator("#fidelity")).to_contain_text("its 9 readings' probabilities averaged", timeout=15_000)
    if says == "mlp_30 + mlp_30":  # the architecture again: copy 2, trained first and saved, not copy 1 twice
        expect(page.locator("#status")).to_contain_text("Soft targets from an ensemble of 2 readings at T=")
        assert (SERVER["runs_dir"] / "teachers" / "mlp_30-sample-copy2.pt").is_file()
    if says.startswith("deep supervision"):  # no teacher anywhere, and nothing shown in its place
        expect(page.locator("#status")).to_contain_text("no teacher,")
        expect(page.locator("#fidelity")).to_contain_text("has no teacher", timeout=15_000)
        draw(page, ONE)
        expect(page.locator("#draw-note")).to_contain_text("taught itself", timeout=15_000)
        expect(page.locator("#teacher-pred")).to_contain_text("none")
        expect(page.locator("#student-pred")).to_contain_text("1")
        page.screenshot(path=str(ARTIFACTS / "deep-supervision.png"), full_page=True)


@pytest.mark.slow
def test_queue_kill_restart_and_everything_finishes(browser, tmp_path):
    """Three visitors: one run training, two waiting. SIGKILL the server, start it again on the
    same folder and port: every page's run finishes, the one that was training resumed, and a
    permalink page queues its run again for its visitor."""
    import signal

    from playwright.sync_api import expect

    from kdapp.tools.serving import free_port
    port, runs_dir, servers = free_port(), tmp_path / "runs", []

    def serve():
        proc, url = start_app(runs_dir, port=port, log=open(tmp_path / f"app{len(servers)}.log", "w"))
        servers.append(proc)
        wait_for_http(url, proc, timeout=300)  # seven engineers on two cores: start-up can take minutes
        return proc, url
    try:
        server, url = serve()
        pages = [open_page(browser, url + query) for query in ("?epochs=5&fraction=0.3", "?epochs=1&fraction=0.1",
                                                               "?epochs=1&fraction=0.05")]
        ids = []
        for page, says in zip(pages, ("started", "queued, position 1", "queued, position 2")):
            page.click("#start", timeout=180_000)  # waits out the page's loading overlay on a busy box
            expect(page.locator("#notice")).to_contain_text(says, timeout=20_000)
            ids.append(run_id_in(page.locator("#notice").inner_text()))
        point = runs_dir / "runs" / ids[0] / "resume.pt"
        expect(pages[0].locator("#status")).to_contain_text("epoch 2/5", timeout=300_000)
        assert point.exists()
        server.send_signal(signal.SIGKILL)
        server.wait(10)

        serve()
        # Each visitor comes back in the same browser (its owner token kept) to the run's permalink.
        # A fresh tab: the old one's page is still trying to reach the dead server.
        reopened = []
        for page, run_id in zip(pages, ids):
            context = page.context
            page.close()
            reopened.append(context.new_page())
            reopened[-1].goto(f"{url}?run={run_id}", timeout=180_000)  # a cold server on two busy cores
        pages = reopened
        for page, run_id in zip(pages, ids):
            expect(page.locator("#status")).to_contain_text(f"Finished: run {run_id}", timeout=600_000)
        expect(pages[0].locator("#status")).to_contain_text("resumed from epoch")
        pages[0].screenshot(path=str(ARTIFACTS / "resumed.png"))
        pages[1].click("#run-again")
        expect(pages[1].locator("#notice")).to_contain_text(re.compile("started|queued"), timeout=20_000)
        again = run_id_in(pages[1].locator("#notice").inner_text())
        assert again not in ids
        expect(pages[1].locator("#status")).to_contain_text(f"run {again}", timeout=20_000)
    finally:
        for proc in servers:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
