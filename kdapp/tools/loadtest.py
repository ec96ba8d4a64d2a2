"""python -m kdapp loadtest: N concurrent /predict clients while a run trains.

Starts the real app as its own process (`python app.py`), starts the default run over HTTP
as the page's Start button does, and has `--clients` threads in this process call /predict
over raw HTTP with re-drawn held-out digits, each client starting at a different digit.
Reports latency percentiles, how many answers were right, and whether training kept
progressing: its steps/s under load against the same run's steps/s just before.
"""
import io
import json
import re
import threading
import time
import os
import tempfile



def _sse_call(http, name, data):
    r = http.post(f"gradio_api/call/{name}", json={"data": data})
    r.raise_for_status()
    text = http.get(f"gradio_api/call/{name}/{r.json()['event_id']}").text
    return json.loads([ln[6:] for ln in text.splitlines() if ln.startswith("data: ")][-1])


def _steps(http):
    """The run's global step, read from the status line the page shows."""
    status = _sse_call(http, "refresh", [None, None, "loadtest", "shipped", True, None])[0]
    match = re.search(r"step (\d+)/", status)
    return int(match.group(1)) if match else 0, status


def _client(url, paths, labels, offset, results, stop_at):
    import httpx
    with httpx.Client(base_url=url, timeout=60) as http:
        i = offset
        while time.monotonic() < stop_at:
            k = i % len(paths)
            start = time.perf_counter()
            try:
                out = _sse_call(http, "predict", [{"background": None, "layers": [], "composite": {
                    "path": paths[k], "meta": {"_type": "gradio.FileData"}}}, 4.0])
                right = (out[0] or {}).get("label") == str(labels[k])
            except Exception:  # a refused, dropped or failed request: counted, not fatal
                right = None
            results.append(((time.perf_counter() - start) * 1000, right))
            i += 1


def run_loadtest(clients=20, seconds=20.0, port=None):
    import httpx
    from PIL import Image

    from kdapp.inference import percentiles
    from kdapp.tools.serving import ROOT, redrawn_canvases, start_app, wait_for_http
    # The start event's inputs, built by name from app.CONTROLS; this process's own (unused)
    # lab must not open the server's run store, so it gets a store of its own.
    os.environ["KDAPP_RUNS_DIR"] = tempfile.mkdtemp(prefix="kdapp-loadtest-client-")
    import app
    start_inputs = ["loadtest", *app.inputs_for(epochs=40, device="cpu")]
    server, url = start_app(ROOT / "runs" / "loadtest", port)
    try:
        wait_for_http(url, server)
        canvases, labels = redrawn_canvases(100, seed=3)
        paths = []
        with httpx.Client(base_url=url, timeout=60) as http:
            for i, canvas in enumerate(canvases):
                buffer = io.BytesIO()
                Image.fromarray(canvas, "RGBA").save(buffer, format="PNG")
                r = http.post("gradio_api/upload", files={"files": (f"{i}.png", buffer.getvalue(), "image/png")})
                paths.append(r.json()[0])
            message = _sse_call(http, "start", start_inputs)[0]
            if "started" not in message:
                raise RuntimeError(message)
            while "distilling" not in _steps(http)[1]:
                time.sleep(0.2)
            time.sleep(1.0)
            s0, t0 = _steps(http)[0], time.monotonic()
            time.sleep(5.0)
            alone = (_steps(http)[0] - s0) / (time.monotonic() - t0)
            results = []
            stop_at = time.monotonic() + seconds
            s1, t1 = _steps(http)[0], time.monotonic()
            threads = [threading.Thread(target=_client, args=(url, paths, labels, 7 * c, results, stop_at))
                       for c in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            s2, status = _steps(http)
            loaded = (s2 - s1) / (time.monotonic() - t1)
            still_running = "Running" in status
    finally:
        server.terminate()
        server.wait(10)
    p50, p95 = percentiles([r[0] for r in results if r[1] is not None])
    latencies = sorted(r[0] for r in results if r[1] is not None)
    return {"clients": clients, "seconds": seconds, "requests": len(results),
            "errors": sum(r[1] is None for r in results), "correct": sum(r[1] is True for r in results), "predict_p50_ms": p50,
            "predict_p95_ms": p95, "predict_max_ms": latencies[-1],
            "requests_per_s": len(results) / seconds, "train_steps_per_s_alone": alone,
            "train_steps_per_s_under_load": loaded, "training_ratio": loaded / alone if alone else None,
            "run_still_running_after_load": still_running}


def cmd_loadtest(args):
    out = run_loadtest(args.clients, args.seconds)
    print(f"{out['clients']} clients, {out['requests']} /predict calls in {out['seconds']:.0f} s "
          f"({out['requests_per_s']:.1f}/s, {out['errors']} errors) while training: "
          f"{out['correct']}/{out['requests']} correct "
          f"({out['correct'] / max(out['requests'], 1):.1%}), p50 {out['predict_p50_ms']:.0f} ms, "
          f"p95 {out['predict_p95_ms']:.0f} ms, max {out['predict_max_ms']:.0f} ms; training "
          f"{out['train_steps_per_s_alone']:.1f} steps/s alone -> {out['train_steps_per_s_under_load']:.1f} "
          f"under load ({out['training_ratio']:.0%})")
    if args.json:
        print(json.dumps(out))


def add_parser(sub):
    p = sub.add_parser("loadtest", help="concurrent /predict clients while a run trains")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_loadtest)
