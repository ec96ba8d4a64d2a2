"""The Continual tab in a real browser (Debian's chromium, playwright) against `python app.py`:
start a 2-task run (0-4, then 5-9), draw a 0 on the tab's canvas and read each strategy's answer;
then the run's link opens the tab on it, Run again there queues its settings for that visitor,
and the Runs tab lists it.

Without chromium these skip with the reason; under CI=true a missing browser is a failure.
Screenshots go to artifacts/continual-1400.png and artifacts/continual-390.png.
"""
import re

import pytest

from kdapp.tools.bench_drawing import draw
from tests.test_browser import ARTIFACTS, browser, new_context, server  # noqa: F401 (the same fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ZERO = [[(0.5, 0.15), (0.25, 0.35), (0.25, 0.65), (0.5, 0.85), (0.75, 0.65), (0.75, 0.35), (0.5, 0.15)]]
CANVAS = "#continual-sketch canvas"
STRATEGIES = ("finetune", "lwf", "replay", "joint")


def open_continual_tab(browser, url, width):
    page = new_context(browser, viewport={"width": width, "height": 1000}).new_page()
    page.goto(url)
    page.wait_for_function("() => window.kdappDrawing && window.kdappDrawing.panel", timeout=60_000)
    # Gradio's status overlay (the Distill tab's timer) can cover the tab bar: click in the page's own script.
    page.evaluate("document.querySelector('#continual-tab-button').click()")
    page.wait_for_function("() => window.kdappContinual && window.kdappContinual.panel", timeout=30_000)
    return page


def draw_and_read(page, run_id):
    """Draw a 0 on the Continual tab's canvas; the answer continual.js shows (probabilities per strategy)."""
    page.locator("#continual-clear").click()
    draw(page, ZERO, CANVAS)
    page.wait_for_function(f"() => (window.kdappContinual.panel.result() || {{}}).run === '{run_id}'",
                           timeout=30_000)
    return page.evaluate("() => window.kdappContinual.panel.result()")


def test_draw_a_zero_after_the_5_to_9_task_and_read_every_strategy(browser, server):
    from playwright.sync_api import expect
    page = open_continual_tab(browser, server, 1400)
    page.locator("#continual-tasks input[value='2']").check()
    epochs = page.locator("#continual-epochs input[type=number]")
    epochs.fill("1")
    epochs.press("Enter")
    page.locator("#continual-start").click()
    expect(page.locator("#continual-notice")).to_contain_text(re.compile("started|queued"), timeout=10_000)
    run_id = re.search(r"Run ([0-9a-f]{8})", page.locator("#continual-notice").inner_text()).group(1)
    expect(page.locator("#continual-status")).to_contain_text(f"Run {run_id}: finished", timeout=180_000)
    expect(page.locator("#continual-status")).to_contain_text("2 tasks")
    # "Run X started ..." goes when the run ends, leaving the status to say it finished
    expect(page.locator("#continual-notice")).not_to_contain_text(run_id, timeout=5_000)

    answer = draw_and_read(page, run_id)
    assert set(answer["probs"]) == set(STRATEGIES)
    shown = {name: page.locator(f"[data-strategy={name}] .kd-top").inner_text() for name in STRATEGIES}
    top = {name: max(range(10), key=p.__getitem__) for name, p in answer["probs"].items()}
    assert shown == {name: str(d) for name, d in top.items()}  # the boxes show the answers
    assert top["finetune"] >= 5, shown  # fine-tuning on 5-9 forgot the 0
    assert answer["probs"]["replay"][0] > answer["probs"]["finetune"][0], answer["probs"]
    note = page.locator("#continual-draw-note").inner_text()
    assert f"Run {run_id}'s models after its last task (digits 5–9)" in note
    assert page.evaluate("() => window.kdappContinual.panel.stats.requests") == 1  # one request per pen-up
    page.locator("#continual-tab").screenshot(path=str(ARTIFACTS / "continual-1400.png"))

    # The run's link opens the Continual tab on it, on a phone too; the drawing there reads the same.
    phone = new_context(browser, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True).new_page()
    phone.goto(f"{server}?run={run_id}")
    expect(phone.locator("#continual-status")).to_contain_text(f"Run {run_id}: finished", timeout=30_000)
    expect(phone.locator("#continual-status")).to_contain_text(f"/?run={run_id}")
    phone.wait_for_function("() => window.kdappContinual && window.kdappContinual.panel", timeout=30_000)
    again = draw_and_read(phone, run_id)
    assert {name: max(range(10), key=p.__getitem__) for name, p in again["probs"].items()} == top
    assert phone.evaluate("() => document.documentElement.scrollWidth") <= 390  # nothing scrolls sideways
    phone.locator("#continual-tab").screenshot(path=str(ARTIFACTS / "continual-390.png"))

    # Run again, from the phone (another visitor): the same settings, as a new run of theirs, on show.
    phone.locator("#continual-run-again").click()
    expect(phone.locator("#continual-notice")).to_contain_text(re.compile("started|queued"), timeout=10_000)
    new_id = re.search(r"Run ([0-9a-f]{8})", phone.locator("#continual-notice").inner_text()).group(1)
    assert new_id != run_id
    expect(phone.locator("#continual-status")).to_contain_text(f"Run {new_id}", timeout=10_000)
    expect(phone.locator("#continual-status")).to_contain_text("2 tasks")

    # The Runs tab lists it in its own table.
    page.get_by_role("tab", name="Runs").click()
    page.get_by_role("button", name="Refresh").click()
    expect(page.locator("#continual-runs-table")).to_contain_text(run_id, timeout=30_000)
