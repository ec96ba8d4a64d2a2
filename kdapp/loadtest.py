"""python -m kdapp loadtest: N concurrent /predict clients while a run trains.

Launches the real app in this process on a free port, starts the default run, and has
`--clients` gradio_client clients call /predict with re-drawn held-out digits. Reports
latency percentiles, how many answers were right, and whether training kept progressing
(its steps/s under load against the same run's steps/s before the load began).
"""
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image

from kdapp.bench import free_port, redrawn_canvases


def _client_worker(url, files, labels, results, stop_at):
    from gradio_client import Client, handle_file
    client = Client(url, verbose=False)
    i = 0
    while time.monotonic() < stop_at:
        k = i % len(files)
        start = time.perf_counter()
        teacher, _, *_ = client.predict({"background": None, "layers": [], "composite": handle_file(files[k])},
                                        4.0, api_name="/predict")
        results.append(((time.perf_counter() - start) * 1000, teacher["label"] == str(labels[k])))
        i += 1


def _steps(lab):
    snap = lab.runs.snapshot()
    return snap["step"] if snap else 0


def run_loadtest(clients=20, seconds=20.0, quiet=False):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import app  # the real app, built at import
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    port = free_port()
    app.demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **app.LAUNCH)
    url = f"http://127.0.0.1:{port}/"
    tmp = Path(tempfile.mkdtemp(prefix="kdapp-load-"))
    canvases, labels = redrawn_canvases(40, seed=3)
    files = []
    for i, canvas in enumerate(canvases):
        files.append(str(tmp / f"{i}.png"))
        Image.fromarray(canvas, "RGBA").save(files[-1])
    try:
        settings = dict(app.lab_lib.DEFAULT_RUN, epochs=20)
        started, message = app.lab.start(settings, owner="loadtest")
        if not started:
            raise RuntimeError(message)
        while app.lab.runs.snapshot()["phase"] != "distilling":
            time.sleep(0.1)
        time.sleep(1.0)
        s0, t0 = _steps(app.lab), time.monotonic()
        time.sleep(4.0)
        alone = (_steps(app.lab) - s0) / (time.monotonic() - t0)
        say(f"training alone: {alone:.1f} steps/s; starting {clients} clients for {seconds:.0f} s")
        results = []
        stop_at = time.monotonic() + seconds
        s1, t1 = _steps(app.lab), time.monotonic()
        threads = [threading.Thread(target=_client_worker, args=(url, files, labels, results, stop_at))
                   for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        loaded = (_steps(app.lab) - s1) / (time.monotonic() - t1)
        still_running = app.lab.runs.busy()
        app.lab.stop(owner=None)
        app.lab.runs.wait(10)
    finally:
        app.demo.close()
    latencies = sorted(r[0] for r in results)
    out = {"clients": clients, "seconds": seconds, "requests": len(results),
           "correct": sum(r[1] for r in results), "predict_p50_ms": statistics.median(latencies),
           "predict_p95_ms": latencies[int(0.95 * (len(latencies) - 1))],
           "predict_max_ms": latencies[-1], "train_steps_per_s_alone": alone,
           "train_steps_per_s_under_load": loaded, "training_ratio": loaded / alone if alone else None,
           "run_still_running_after_load": still_running}
    return out


def cmd_loadtest(args):
    out = run_loadtest(args.clients, args.seconds)
    print(f"{out['clients']} clients, {out['requests']} /predict calls in {out['seconds']:.0f} s while training: "
          f"{out['correct']}/{out['requests']} correct ({out['correct'] / max(out['requests'], 1):.1%}), "
          f"p50 {out['predict_p50_ms']:.0f} ms, p95 {out['predict_p95_ms']:.0f} ms, max {out['predict_max_ms']:.0f} ms; "
          f"training {out['train_steps_per_s_alone']:.1f} steps/s alone -> "
          f"{out['train_steps_per_s_under_load']:.1f} under load ({out['training_ratio']:.0%})")
    if args.json:
        print(json.dumps(out))


def add_parser(sub):
    p = sub.add_parser("loadtest", help="concurrent /predict clients while a run trains")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_loadtest)


