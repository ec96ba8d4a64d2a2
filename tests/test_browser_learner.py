"""A learner's first ten minutes, in a real browser (issue 30): a lesson end to end, and the
page at 1400 and 390 px. Uses test_browser's server (a fresh store) and chromium."""
import re

import pytest

from tests.test_browser import ARTIFACTS, browser, new_context, open_page, server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser


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
    page.screenshot(path=str(ARTIFACTS / "lesson-1400.png"), full_page=False)
    page.set_viewport_size({"width": 390, "height": 844})
    page.locator("#lesson-result").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "lesson-390.png"), full_page=False)
