"""End to end in a real browser: Debian's chromium driven by playwright, against `python app.py`.

Without chromium these skip with the reason; under CI=true a missing browser is a failure.
Screenshots of the key states go to artifacts/ (the README shows them).
"""
import os
import re
import shutil
from pathlib import Path

import pytest

from kdapp.tools.serving import start_app, wait_for_http

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags chromium keeps dialling Google, which this sandbox refuses.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]


def require(condition, reason):
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: browser tests must run, not skip)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = open(tmp_path_factory.mktemp("log") / "app.log", "w")
    proc, url = start_app(tmp_path_factory.mktemp("runs"), log=log)
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
        browser.close()


def open_page(browser, url, height=1000):
    page = browser.new_context(viewport={"width": 1400, "height": height}).new_page()
    page.goto(url)
    page.wait_for_selector("#sketch canvas", timeout=30_000)
    return page


def draw(page, strokes):
    """strokes: lists of (x, y) in 0..1 canvas coordinates, drawn with the mouse."""
    canvas = page.locator("#sketch canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    for stroke in strokes:
        points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for a, b in zip(points, points[1:]):
            for k in range(1, 9):
                page.mouse.move(a[0] + (b[0] - a[0]) * k / 8, a[1] + (b[1] - a[1]) * k / 8)
        page.mouse.up()


def set_number(page, label, value):
    box = page.get_by_role("spinbutton", name=f"number input for {label}")
    box.fill(str(value))
    box.press("Enter")


def status_text(page):
    return page.locator("#status").inner_text()


def test_draw_a_digit_and_see_both_predictions(server, browser):
    from playwright.sync_api import expect
    page = open_page(browser, server, height=1900)
    # No tool picked first: the page selects the brush, so the first stroke draws.
    draw(page, [[(0.5, 0.15), (0.5, 0.85)]])  # a "1"
    expect(page.locator("#teacher-pred")).to_contain_text("1", timeout=15_000)
    expect(page.locator("#draw-note")).to_contain_text("Teacher says 1, student says 1")
    page.click("#clear")
    expect(page.locator("#draw-note")).to_contain_text("Draw a digit", timeout=10_000)
    draw(page, [[(0.3, 0.2), (0.7, 0.2), (0.45, 0.85)]])  # a "7"
    expect(page.locator("#teacher-pred")).to_contain_text("7", timeout=15_000)
    expect(page.locator("#student-pred")).to_contain_text("7")
    page.screenshot(path=str(ARTIFACTS / "draw.png"), full_page=True)


def test_run_live_view_second_visitor_and_stop(server, browser):
    from playwright.sync_api import expect
    page = open_page(browser, server)
    page.click("#start")
    expect(page.locator("#notice")).to_contain_text("Started")
    # "step N/M" appears once distillation is under way ("epochs" is in the status from the start).
    expect(page.locator("#status")).to_contain_text(re.compile(r"step \d+/\d+"), timeout=60_000)
    expect(page.locator("#loss-plot .scatterlayer .trace").first).to_be_attached(timeout=15_000)
    first = status_text(page)
    page.wait_for_function("(s) => document.querySelector('#status').innerText !== s", arg=first, timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "running.png"))

    # A second visitor sees the same live run; their Start is refused politely, Stop is not theirs.
    other = open_page(browser, server)
    expect(other.locator("#status")).to_contain_text("started by another visitor", timeout=10_000)
    other.click("#start")
    expect(other.locator("#notice")).to_contain_text("Busy")
    expect(other.locator("#stop")).to_be_disabled()
    other.screenshot(path=str(ARTIFACTS / "second-visitor.png"))

    page.click("#stop")
    expect(page.locator("#status")).to_contain_text("Stopped", timeout=10_000)
    expect(other.locator("#status")).to_contain_text("Stopped", timeout=10_000)
    expect(other.locator("#stop")).to_be_enabled()
    page.screenshot(path=str(ARTIFACTS / "stopped.png"))
    # The app is usable at once: drawing still answers, and a new run can start.
    draw(page, [[(0.5, 0.15), (0.5, 0.85)]])
    expect(page.locator("#teacher-pred")).to_contain_text("1", timeout=15_000)


def test_a_finished_run_shows_the_comparison_table(server, browser):
    from playwright.sync_api import expect
    page = open_page(browser, server, height=1900)
    set_number(page, "Epochs", 3)
    page.click("#start")
    expect(page.locator("#notice")).to_contain_text("Started")
    expect(page.locator("#status")).to_contain_text("Finished", timeout=240_000)
    expect(page.locator("#comparison")).to_contain_text("KD gain")
    expect(page.locator("#comparison")).to_contain_text("173,930")
    draw(page, [[(0.3, 0.2), (0.7, 0.2), (0.45, 0.85)]])
    expect(page.locator("#draw-note")).to_contain_text("latest run", timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "finished.png"), full_page=True)


def test_closing_the_tab_during_a_run_leaves_a_consistent_state(server, browser):
    from playwright.sync_api import expect
    page = open_page(browser, server)
    set_number(page, "Epochs", 2)
    page.click("#start")
    expect(page.locator("#status")).to_contain_text("Running", timeout=10_000)
    page.context.close()  # the visitor leaves; their run goes on to its (capped) end
    nxt = open_page(browser, server)
    expect(nxt.locator("#status")).to_contain_text("Finished", timeout=240_000)
    nxt.click("#start")
    expect(nxt.locator("#notice")).to_contain_text("Started")
    nxt.click("#stop")
    expect(nxt.locator("#status")).to_contain_text("Stopped", timeout=10_000)
