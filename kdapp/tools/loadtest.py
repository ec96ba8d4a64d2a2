"""python -m kdapp loadtest: how many drawing visitors the app serves while a run trains.

The real app runs as its own process (`python app.py`) and trains the default run, started over
HTTP as the page's Start button starts it, again whenever one ends. Simulated visitors live in
separate client processes: each sends one /predict every 2 s (a re-drawn held-out digit, by the
route the browser takes: POST gradio_api/run/predict), waits for the answer, then waits for its
next turn. The load steps up until the 95th-percentile latency passes 500 ms.

- predict_capacity_visitors: the largest step with p95 <= 500 ms and no failed request.
- predict_capacity_visitors_half_speed: the same with the run also keeping >= 50% of its speed.
- train_speed_kept: the run's steps/s at that load over its steps/s with no visitors. Steps are
  read from the run store's SQLite file (the server persists them every epoch), so watching the
  run costs the server nothing.
- floor_rps: back-to-back clients against `noop_app`, a Gradio app with the same inputs and
  outputs whose handler does no work: what Gradio itself can serve on this machine.

The clients share the server's CPUs (2 here), so every number includes their own cost.
"""
import asyncio
import io
import json
import multiprocessing
import random
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

PERIOD_S = 2.0          # one /predict per visitor every 2 s
P95_LIMIT_MS = 500.0
LEVELS = (10, 20, 30, 40, 50, 60, 80, 100, 120, 160)
CLIENT_PROCESSES = 2


def sketch_value(path):
    """A Sketchpad value as the browser sends it: the canvas as an uploaded file."""
    return {"background": None, "layers": [], "composite": {"path": path, "meta": {"_type": "gradio.FileData"}}}


# ---- client processes ----
def _last_event_data(text):
    """The last `data:` payload of a Gradio event stream: the event's outputs."""
    return json.loads([ln[6:] for ln in text.splitlines() if ln.startswith("data: ")][-1])


async def _predict(http, data, session, route):
    """One /predict by the browser's route for an unqueued event ("run": one POST), or through
    the queue as a queued event's scripts reach it ("call": POST, then read the event stream)."""
    if route == "run":
        r = await http.post("gradio_api/run/predict", json={"data": data, "session_hash": session})
        r.raise_for_status()
        return r.json()["data"]
    r = await http.post("gradio_api/call/predict", json={"data": data})
    r.raise_for_status()
    r = await http.get(f"gradio_api/call/predict/{r.json()['event_id']}")
    return _last_event_data(r.text)


async def _visitor(http, paths, labels, offset, stop_at, think, results, route):
    await asyncio.sleep(random.Random(offset).uniform(0, think))  # visitors do not arrive in step
    i = offset
    while time.monotonic() < stop_at:
        sent = time.monotonic()
        k = i % len(paths)
        try:
            out = await _predict(http, [sketch_value(paths[k]), 4.0, None], f"visitor{offset}", route)
            right = (out[0] or {}).get("label") == str(labels[k])
        except Exception:  # a refused, dropped or failed request: counted, not fatal
            right = None
        results.append((sent, (time.monotonic() - sent) * 1000, right))
        i += 1
        await asyncio.sleep(max(0.0, sent + think - time.monotonic()))


def _client_process(url, paths, labels, visitors, first, seconds, run_for, think, route, out):
    import httpx

    async def main():
        results = []
        limits = httpx.Limits(max_connections=len(visitors) + 1, max_keepalive_connections=len(visitors) + 1)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
            stop_at = time.monotonic() + run_for
            await asyncio.gather(*(_visitor(http, paths, labels, v, stop_at, think, results, route) for v in visitors))
        return results
    results = asyncio.run(main())
    out.put([(t, ms, right) for t, ms, right in results if first <= t < first + seconds])


def drive(url, paths, labels, visitors, seconds, think=PERIOD_S, warmup=2.0, processes=CLIENT_PROCESSES, route="run"):
    """`visitors` simulated visitors for `seconds` (+ warmup, not counted) from `processes` client
    processes. Returns [(send time, latency ms, right or None for a failure)] and the window."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    start = time.monotonic()
    first = start + warmup + 1.5  # process start-up (spawn + imports) is not load
    procs = [ctx.Process(target=_client_process,
                         args=(url, paths, labels, list(range(p, visitors, processes)), first, seconds,
                               warmup + 1.5 + seconds, think, route, out)) for p in range(processes)]
    for p in procs:
        p.start()
    results = [r for _ in procs for r in out.get()]
    for p in procs:
        p.join()
    return results, (first, first + seconds)


def summarise(results, window):
    from kdapp.evaluation.inference import percentiles
    ok = [ms for _, ms, right in results if right is not None]
    p50, p95 = percentiles(ok) if ok else (float("inf"), float("inf"))
    return {"requests": len(results), "errors": sum(r[2] is None for r in results),
            "correct": sum(r[2] is True for r in results), "p50_ms": p50, "p95_ms": p95,
            "max_ms": max(ok) if ok else None, "rps": len(results) / (window[1] - window[0])}


# ---- the run that trains meanwhile, watched through the store ----
class TrainingWatch:
    """Keeps a default run training (starting another when one ends) and records (time, run,
    step) from the store's SQLite file every 0.25 s."""

    def __init__(self, http, start_inputs, db_path):
        self.http, self.start_inputs, self.db_path = http, start_inputs, db_path
        self.samples, self.stopped, self.error = [], threading.Event(), None
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _latest(self, db):
        row = db.execute("SELECT id, state, curves FROM runs ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            return None, None, 0
        steps = json.loads(row[2]).get("step") or [0]
        return row[0], row[1], steps[-1]

    def _loop(self):
        db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            while not self.stopped.is_set():
                run, state, step = self._latest(db)
                if state not in ("queued", "running"):
                    message = _call(self.http, "start", self.start_inputs)[0]
                    if "started" not in message and "queued" not in message:
                        raise RuntimeError(f"could not start a run: {message}")
                elif state == "running":
                    self.samples.append((time.monotonic(), run, step))
                time.sleep(0.25)
        except Exception as e:
            self.error = e
        finally:
            db.close()

    def steps_per_s(self, t0, t1):
        """Training speed over [t0, t1]: steps persisted within it over the time between the
        first and last observation of each run (gaps between runs excluded)."""
        steps = seconds = 0.0
        for run in dict.fromkeys(r for _, r, _ in self.samples):
            seen = [(t, s) for t, r, s in self.samples if r == run and t0 <= t <= t1]
            changes = [seen[0]] + [b for a, b in zip(seen, seen[1:]) if b[1] != a[1]] if seen else []
            if len(changes) >= 2:  # from the first step change seen to the last, inside the window
                steps += changes[-1][1] - changes[0][1]
                seconds += changes[-1][0] - changes[0][0]
        return steps / seconds if seconds else None


def _call(http, name, data):
    """A queued event over Gradio's HTTP API (POST, then read the event stream)."""
    r = http.post(f"gradio_api/call/{name}", json={"data": data})
    r.raise_for_status()
    return _last_event_data(http.get(f"gradio_api/call/{name}/{r.json()['event_id']}").text)


def upload_canvases(http, count=100, seed=3):
    from PIL import Image

    from kdapp.tools.serving import redrawn_canvases
    canvases, labels = redrawn_canvases(count, seed=seed)
    paths = []
    for i, canvas in enumerate(canvases):
        buffer = io.BytesIO()
        Image.fromarray(canvas, "RGBA").save(buffer, format="PNG")
        r = http.post("gradio_api/upload", files={"files": (f"{i}.png", buffer.getvalue(), "image/png")})
        r.raise_for_status()
        paths.append(r.json()[0])
    return paths, [int(v) for v in labels]


def capacity(levels=LEVELS, seconds=12.0, route="run", log=print):
    """The load steps up through `levels` while the default run trains; see the module docstring."""
    import httpx

    from kdapp.tools.serving import start_app, start_event_data, wait_for_http
    runs_dir = Path(tempfile.mkdtemp(prefix="kdapp-loadtest-"))
    server, url = start_app(runs_dir)
    steps = []
    try:
        wait_for_http(url, server)
        start_inputs = start_event_data(url, "loadtest", device="cpu")  # the Start event's inputs, by name
        with httpx.Client(base_url=url, timeout=60) as http:
            paths, labels = upload_canvases(http)
            watch = TrainingWatch(http, start_inputs, runs_dir / "kdapp.sqlite3")
            watch.thread.start()
            while len(watch.samples) < 2 or watch.samples[-1][2] == 0:  # wait for the first persisted epoch
                if watch.error:
                    raise watch.error
                time.sleep(0.25)
            t0 = time.monotonic()
            time.sleep(seconds)
            alone = watch.steps_per_s(t0, time.monotonic())
            log(f"training alone: {alone:.1f} steps/s")
            for level in levels:
                results, window = drive(url, paths, labels, level, seconds, route=route)
                row = dict(visitors=level, **summarise(results, window),
                           train_steps_per_s=watch.steps_per_s(*window))
                row["train_speed_kept"] = row["train_steps_per_s"] / alone if row["train_steps_per_s"] else None
                steps.append(row)
                log(f"{level:4d} visitors: {row['rps']:.1f} req/s, p50 {row['p50_ms']:.0f} ms, "
                    f"p95 {row['p95_ms']:.0f} ms, {row['errors']} errors, {row['correct']}/{row['requests']} right, "
                    f"training {row['train_speed_kept'] or 0:.0%} of its speed")
                if row["p95_ms"] > P95_LIMIT_MS or row["errors"]:
                    break
            t2 = time.monotonic()
            time.sleep(seconds)
            after = watch.steps_per_s(t2, time.monotonic())
            watch.stopped.set()
            watch.thread.join(5)
    finally:
        server.terminate()
        server.wait(10)
    served = [s for s in steps if s["p95_ms"] <= P95_LIMIT_MS and not s["errors"]]
    best = served[-1] if served else None
    # The same, with the run also keeping at least half its speed: the load both sides can live with.
    shared = [s for s in served if (s["train_speed_kept"] or 0) >= 0.5]
    fair = shared[-1] if shared else None
    return {"predict_capacity_visitors": best["visitors"] if best else 0,
            "train_speed_kept": best["train_speed_kept"] if best else None,
            "capacity_p95_ms": best["p95_ms"] if best else None,
            "predict_capacity_visitors_half_speed": fair["visitors"] if fair else 0,
            "train_speed_kept_half_speed": fair["train_speed_kept"] if fair else None,
            "train_steps_per_s_alone": alone, "train_steps_per_s_alone_after": after, "capacity_steps": steps}


# ---- the floor: Gradio itself ----
def floor(clients=20, seconds=12.0):
    """Requests/s of `clients` back-to-back visitors (no pause between requests) against
    `noop_app`: the same components, a handler that does nothing."""
    import httpx

    from kdapp.tools.serving import start_app, wait_for_http
    server, url = start_app(tempfile.mkdtemp(prefix="kdapp-noop-"), args=("-m", "kdapp.tools.noop_app"))
    try:
        wait_for_http(url, server)
        with httpx.Client(base_url=url, timeout=60) as http:
            paths, labels = upload_canvases(http, 20)
        results, window = drive(url, paths, [-1] * len(paths), clients, seconds, think=0.0)
    finally:
        server.terminate()
        server.wait(10)
    return summarise(results, window)["rps"]


def cmd_loadtest(args):
    levels = tuple(int(v) for v in args.levels.split(",")) if args.levels else LEVELS
    out = capacity(levels, args.seconds, args.route, log=lambda *a: print(*a, file=sys.stderr, flush=True))
    if not args.skip_floor:
        out["floor_rps"] = floor(seconds=args.seconds)
    print(f"capacity: {out['predict_capacity_visitors']} visitors (one /predict each every {PERIOD_S:g} s) with "
          f"p95 <= {P95_LIMIT_MS:g} ms; training kept {out['train_speed_kept'] or 0:.0%} of its speed; "
          f"{out['predict_capacity_visitors_half_speed']} visitors with training at >= 50% "
          f"({out['train_speed_kept_half_speed'] or 0:.0%})"
          + (f"; floor (no-op Gradio app) {out['floor_rps']:.0f} req/s" if "floor_rps" in out else ""))
    if args.json:
        print(json.dumps(out))


def add_parser(sub):
    p = sub.add_parser("loadtest", help="drawing visitors served while a run trains (capacity)")
    p.add_argument("--seconds", type=float, default=12.0, help="measured seconds per load step")
    p.add_argument("--levels", help="visitor counts to step through, e.g. 10,20,40")
    p.add_argument("--skip-floor", action="store_true", help="do not measure the no-op app's floor")
    p.add_argument("--route", choices=("run", "call"), default="run",
                   help="run: one POST, as the browser calls an unqueued event; call: through the queue")
    p.add_argument("--json", action="store_true", help="print one final JSON line")
    p.set_defaults(func=cmd_loadtest)
