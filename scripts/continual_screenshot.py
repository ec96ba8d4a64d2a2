"""The Continual tab in a real browser: start a run (5 tasks on the sample, all four strategies),
wait for it to finish, draw a 0, and save docs/continual.png. Prints what the page said.

    .venv/bin/python scripts/continual_screenshot.py [--tasks 5] [--epochs 5] [--out docs/continual.png]
"""
import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from kdapp.tools.bench_drawing import draw  # noqa: E402
from kdapp.tools.serving import start_app, wait_for_http  # noqa: E402

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]


ZERO = [[(0.5 + 0.22 * math.sin(a / 24 * 2 * math.pi), 0.5 - 0.33 * math.cos(a / 24 * 2 * math.pi))
         for a in range(26)]]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", default="5")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=1500)
    parser.add_argument("--out", default=str(ROOT / "docs" / "continual.png"))
    args = parser.parse_args()
    proc, url = start_app(Path(tempfile.mkdtemp(prefix="kdapp-continual-")), log=sys.stderr)
    try:
        wait_for_http(url, proc)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            page.goto(url)
            page.wait_for_selector("#sketch canvas", timeout=60_000)
            # Gradio's status overlays (the Distill tab's timer) can cover the tab bar: click through them.
            time.sleep(5)
            page.evaluate("document.querySelector('#continual-tab-button').click()")
            try:
                page.wait_for_selector("#continual-start", state="visible")
            except Exception:
                page.screenshot(path=str(ROOT / "artifacts" / "continual-debug.png"))
                raise
            page.locator("#continual-tab").get_by_label(args.tasks, exact=True).first.check(force=True)
            slider = page.locator("#continual-tab input[type=number]").nth(1)  # memory, epochs, T
            slider.fill(str(args.epochs))
            slider.press("Enter")
            page.evaluate("document.querySelector('#continual-start').click()")
            started = time.monotonic()
            while "finished" not in page.inner_text("#continual-status"):
                if time.monotonic() - started > args.timeout:
                    raise SystemExit("the run did not finish: " + page.inner_text("#continual-status"))
                if any(s in page.inner_text("#continual-status") for s in ("failed", "cancelled")):
                    raise SystemExit(page.inner_text("#continual-status"))
                time.sleep(5)
            print(f"finished in {time.monotonic() - started:.0f} s", file=sys.stderr)
            page.wait_for_function("() => window.kdappContinual && window.kdappContinual.panel", timeout=60_000)
            draw(page, ZERO, "#continual-sketch canvas")  # the tab's own canvas (drawing.js's pen)
            try:
                page.wait_for_function("() => (window.kdappContinual.panel.result() || {}).probs", timeout=90_000)
            except Exception:
                print("the drawing was not read in time", file=sys.stderr)
            time.sleep(2)
            print(page.inner_text("#continual-status"))
            print(page.inner_text("#continual-draw-note"))
            for name in ("finetune", "lwf", "replay", "joint"):
                print(name, page.inner_text(f"[data-strategy={name}]").replace("\n", " ")[:80])
            page.locator("#continual-tab").screenshot(path=args.out)
            print(f"saved {args.out}", file=sys.stderr)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
