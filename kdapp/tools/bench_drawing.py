"""python -m kdapp bench --drawing: the drawing panel as a visitor gets it, in Chromium.

Measures, against `python app.py` on a free port:
- pen-up -> all three predictions, the 28x28 view and the chart painted (the panel's own clock:
  from the pointerup event to the animation frame after the answers are in the page), p50/p95,
  on an idle server and while a run trains on every core;
- the server requests each stroke makes: those carrying a prediction (/predict's event, the
  panel's fallback function) and every other request except the page's 1 s timer tick;
- the bytes the first visit downloads for the panel: the runtime, its .wasm and the three models
  (transferSize, so compressed as sent), and the whole page's for scale.
"""
import json
import os
import re
import tempfile
import time
import urllib.request
from pathlib import Path

from kdapp.evaluation.inference import percentiles
from kdapp.tools.serving import start_app, wait_for_http, wait_until

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]
STROKES = {  # digits as a visitor draws them, in 0..1 canvas coordinates
    "1": [[(0.5, 0.15), (0.5, 0.85)]],
    "7": [[(0.3, 0.2), (0.7, 0.2), (0.45, 0.85)]],
    "0": [[(0.5, 0.15), (0.25, 0.35), (0.25, 0.65), (0.5, 0.85), (0.75, 0.65), (0.75, 0.35), (0.5, 0.15)]],
}
READY = "() => window.kdappDrawing && window.kdappDrawing.panel"


def _dependency_ids(url):
    """(predict's event id, the timer tick's event ids) from the app's config."""
    config = json.loads(urllib.request.urlopen(url + "config", timeout=10).read())
    timers = {c["id"] for c in config["components"] if c["type"] == "timer"}
    ticks = {d["id"] for d in config["dependencies"] if any(t[0] in timers for t in d["targets"])}
    predict = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "predict")
    return predict, ticks


class RequestLog:
    """Requests the page sends to the server, told apart: predictions, timer ticks, the rest."""

    def __init__(self, page, url, predict, ticks):
        self.url, self.predict, self.ticks = url, predict, ticks
        self.predictions = self.others = 0
        page.on("request", self.seen)

    def seen(self, request):
        if not request.url.startswith(self.url) or "/gradio_api/" not in request.url:
            return
        if "/gradio_api/component_server" in request.url:
            self.predictions += 1
            return
        try:
            body = request.post_data_json if request.method == "POST" else None
        except ValueError:
            body = None
        index = body.get("fn_index") if isinstance(body, dict) else None
        if index == self.predict:
            self.predictions += 1
        elif request.method == "POST" and index not in self.ticks:  # an event the page sent; GETs of
            self.others += 1                                             # the tick's images are not


def draw(page, strokes, canvas="#sketch canvas"):
    """strokes: lists of (x, y) in 0..1 canvas coordinates, drawn with the mouse on the canvas
    `canvas` selects (the Distill tab's; the Continual tab's is "#continual-sketch canvas"): the
    bench and the browser tests draw the same way."""
    canvas = page.locator(canvas).first
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


def strokes(page, log, count, trainer=None):
    """Draw `count` digits (Clear before each); pen-up -> painted times and requests per stroke.
    With `trainer` (the page that started a run), also how many strokes the run was training for."""
    times, predictions, others, training = [], [], [], 0
    for k in range(count):
        training += bool(trainer) and "step" in trainer.locator("#status").inner_text()
        page.click("#clear")
        digit = list(STROKES)[k % len(STROKES)]
        before = page.evaluate("() => window.kdappDrawing.panel.stats.penUpToPaint.length")
        log.predictions = log.others = 0
        draw(page, STROKES[digit])
        page.wait_for_function(f"() => window.kdappDrawing.panel.stats.penUpToPaint.length > {before}",
                               timeout=30_000)
        shown = page.locator("#teacher-pred .kd-top").inner_text()
        times.append(page.evaluate("() => window.kdappDrawing.panel.stats.penUpToPaint.at(-1)"))
        page.wait_for_timeout(200)  # a request sent late would still be counted
        predictions.append(log.predictions)
        others.append(log.others)
        if shown != digit:
            raise RuntimeError(f"drew a {digit}, the teacher read {shown}: the bench draws the wrong digits")
    p50, p95 = percentiles(times)
    answers = page.evaluate(f"() => window.kdappDrawing.panel.stats.penUpToAnswers.slice(-{count})")
    steps = page.evaluate("() => window.kdappDrawing.panel.stats.steps")
    return {"strokes": count, "pen_up_to_painted_ms": {"p50": round(p50, 1), "p95": round(p95, 1),
                                                       "max": round(max(times), 1)},
            "pen_up_to_answers_in_page_ms_p95": round(percentiles(answers)[1], 1),
            "last_reading_ms": dict(zip(("preprocess", "models", "render"), steps)),
            "prediction_requests_per_stroke": max(predictions), "other_requests_per_stroke": max(others),
            **({"strokes_while_training": training} if trainer else {})}


def first_load(context, url):
    page = context.new_page()
    page.goto(url)
    page.wait_for_function(READY, timeout=60_000)
    page.evaluate("() => window.kdappDrawing.panel.ready")
    entries = page.evaluate("""() => performance.getEntriesByType('resource').map(
        e => ({name: e.name, transfer: e.transferSize, decoded: e.decodedBodySize}))""")
    panel = [e for e in entries if "/kdapp-drawing/" in e["name"]]
    return page, {
        "panel_files": {e["name"].split("/kdapp-drawing/")[1].split("?")[0]: e["transfer"] for e in panel},
        "panel_transferred_mb": round(sum(e["transfer"] for e in panel) / 1e6, 2),
        "panel_decoded_mb": round(sum(e["decoded"] for e in panel) / 1e6, 2),
        "page_transferred_mb": round(sum(e["transfer"] for e in entries) / 1e6, 2),
    }


def drawing(count=30, epochs=40):
    from playwright.sync_api import sync_playwright
    runs = Path(tempfile.mkdtemp(prefix="kdapp-bench-drawing-"))
    proc, url = start_app(runs)
    try:
        wait_for_http(url, proc, timeout=300)  # a loaded shared host can take minutes to start it
        predict, ticks = _dependency_ids(url)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page, load = first_load(context, url)
            log = RequestLog(page, url, predict, ticks)
            out = {"first_load": load, "mode": page.evaluate("() => window.kdappDrawing.panel.mode")}
            out["idle"] = strokes(page, log, count)
            # A run training on every core, started by another visitor, then the same strokes.
            trainer = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            trainer.goto(url + f"?epochs={epochs}&fraction=1")  # all 8,000 digits: it trains for every stroke
            trainer.wait_for_function(READY, timeout=60_000)
            for _ in range(10):  # Start is refused until the page has its owner token (on load)
                trainer.click("#start")
                if wait_until(lambda: re.search("started|queued", trainer.locator("#notice").inner_text()), 10):
                    break
            if not wait_until(lambda: "step" in trainer.locator("#status").inner_text(), timeout=600):
                raise RuntimeError("the run did not start training within 10 minutes: "
                                   + trainer.locator("#status").inner_text())
            out["training"] = strokes(page, log, count, trainer)
            trainer.bring_to_front()  # a background tab's timer is throttled, and the timer enables Stop
            try:  # best effort: stopping the app below ends the run's worker anyway
                trainer.click("#stop", timeout=10_000)
            except Exception:  # noqa: BLE001 - playwright's TimeoutError; the numbers are already taken
                out["training"]["run_stopped_by_button"] = False
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)
    # The machine's load says how far these numbers are from a quiet one's (shared CI boxes are not).
    out.update(chromium=CHROMIUM, measured=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               cpus=len(os.sched_getaffinity(0)), load_average_1min=round(os.getloadavg()[0], 1))
    return out


def table(out):
    rows = ["| | idle server | a run training |", "|---|---|---|"]
    for key, name in (("p50", "pen-up → painted, p50 (ms)"), ("p95", "pen-up → painted, p95 (ms)")):
        rows.append(f"| {name} | {out['idle']['pen_up_to_painted_ms'][key]} | "
                    f"{out['training']['pen_up_to_painted_ms'][key]} |")
    for key, name in (("prediction_requests_per_stroke", "prediction requests per stroke"),
                      ("other_requests_per_stroke", "other requests per stroke (timer ticks aside)")):
        rows.append(f"| {name} | {out['idle'][key]} | {out['training'][key]} |")
    load = out["first_load"]
    rows.append(f"\nFirst load: the panel's runtime and models {load['panel_transferred_mb']} MB transferred "
                f"({load['panel_decoded_mb']} MB decoded); the whole page {load['page_transferred_mb']} MB.")
    return "\n".join(rows)
