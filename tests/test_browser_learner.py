"""A learner's first ten minutes, in a real browser (issue 30): a lesson end to end, and the
page at 1400 and 390 px. Uses test_browser's server (a fresh store) and chromium."""
import re

import pytest

from tests.test_browser import ARTIFACTS, browser, new_context, open_page, server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser


def test_the_first_screen_shows_the_canvas_and_start(server, browser):
    """At 1400x1000, before any scrolling: the canvas (which works without training) and Start."""
    page = open_page(browser, server, height=1000)
    page.evaluate("() => window.scrollTo(0, 0)")
    for selector in ("#sketch canvas", "#start"):
        box = page.locator(selector).first.bounding_box()
        assert box and box["y"] >= 0 and box["y"] + box["height"] <= 1000, (selector, box)
    page.screenshot(path=str(ARTIFACTS / "first-screen-1400.png"))


# Words wider than their table cell: each word of each cell measured in the cell's own font.
NARROW_CELLS = """(selector) => {
  const probe = document.createElement('span');
  probe.style.cssText = 'position:absolute;visibility:hidden;white-space:nowrap';
  document.body.appendChild(probe);
  const out = [];
  for (const cell of document.querySelectorAll(selector)) {
    const cs = getComputedStyle(cell);
    if (!cell.offsetParent) continue;  // hidden
    Object.assign(probe.style, {fontFamily: cs.fontFamily, fontSize: cs.fontSize, fontWeight: cs.fontWeight,
                                letterSpacing: cs.letterSpacing});
    const inner = cell.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
    for (const word of cell.innerText.split(/\s+/).filter(Boolean)) {
      probe.textContent = word;
      const width = probe.getBoundingClientRect().width;
      if (width > inner + 1) out.push([word, Math.round(inner), Math.round(width)]);
    }
  }
  probe.remove();
  return out;
}"""
TABLES = "#comparison td, #comparison th, #fidelity td, #fidelity th, #lesson-result td, #lesson-result th"


@pytest.mark.slow
def test_a_lesson_runs_end_to_end(server, browser):
    """Scarce labels, on tiny settings from the link (1 epoch of 5%): 2 values x seeds 0-2 queued
    with one click, then the answer with the visitor's numbers, the noise verdict and the paper."""
    from playwright.sync_api import expect
    page = open_page(browser, server + "?epochs=1&fraction=0.05")
    page.get_by_role("tab", name="Lessons").click()
    expect(page.locator("#lessons")).to_contain_text("Hinton's missing 3")
    page.click("#lesson-scarce")
    expect(page.locator("#lesson-note")).to_contain_text("Lesson queued: 6 runs", timeout=15_000)
    expect(page.locator("#lesson-result")).to_contain_text("runs finished", timeout=15_000)
    expect(page.locator("#lesson-result")).to_contain_text("The literature", timeout=1_200_000)
    text = page.locator("#lesson-result").inner_text()
    assert "3 seeds each" in text and "at 10% of the labels" in text and "at 100% of the labels" in text, text
    assert re.search(r"[+-]\d+\.\d\d ± \d+\.\d\d at 10% of the labels", text), text
    assert "noise" in text and "44.5%" in text  # the verdict, and Hinton et al.'s 3% speech experiment
    # Reloaded, the page shows the answer again, and a second click queues nothing.
    page.reload()
    page.get_by_role("tab", name="Lessons").click()
    expect(page.locator("#lesson-result")).to_contain_text("The literature", timeout=30_000)
    page.click("#lesson-scarce")
    expect(page.locator("#lesson-note")).to_contain_text("Lesson already run on these settings", timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "lesson-1400.png"), full_page=False)
    page.set_viewport_size({"width": 390, "height": 844})
    page.locator("#lesson-result").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "lesson-390.png"), full_page=False)


@pytest.mark.slow
def test_on_a_phone_every_table_cell_holds_its_words(server, browser):
    """At 390x844, with a finished run on show (the lesson's, above): the results and per-class
    tables are readable (no word wider than its cell; a table scrolls in its own box), and the
    page itself never scrolls sideways."""
    from playwright.sync_api import expect
    context = new_context(browser, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = open_page(browser, server, context=context)
    expect(page.locator("#status")).to_contain_text("Finished", timeout=30_000)
    expect(page.locator("#fidelity table").first).to_be_attached(timeout=30_000)
    cells = page.locator("#comparison td, #fidelity td")
    assert cells.count() > 20
    assert page.evaluate(NARROW_CELLS, TABLES) == []
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 392
    page.locator("#fidelity table").first.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "tables-390.png"))
    # The confusion matrices: one per row, each as wide as the column, every cell a readable size.
    boxes = confusion_boxes(page)
    assert len(boxes) == 3 and all(b["width"] >= 300 for b in boxes), boxes
    assert boxes[0]["y"] + boxes[0]["height"] <= boxes[1]["y"] and boxes[1]["y"] + boxes[1]["height"] <= boxes[2]["y"]
    page.locator("#confusion-student").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "confusion-390.png"))
    # On a wide screen, the same three side by side.
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.wait_for_timeout(500)
    boxes = confusion_boxes(page)
    assert len({round(b["y"]) for b in boxes}) == 1 and boxes[0]["x"] < boxes[1]["x"] < boxes[2]["x"], boxes


def confusion_boxes(page):
    """The bounding boxes of the confusion matrices' plotting areas (their heatmaps drawn)."""
    from playwright.sync_api import expect
    plots = [page.locator(f"#confusion-{role} .main-svg").first for role in ("teacher", "student", "baseline")]
    for plot in plots:
        expect(plot).to_be_visible(timeout=15_000)
    return [plot.bounding_box() for plot in plots]
