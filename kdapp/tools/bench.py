"""python -m kdapp bench: every speed number of docs/performance.md, measured in one process.

Ratios (KD vs the seed's loop, KD vs plain training) come from the same process on the same
machine, one right after the other, so they hold on noisy shared hardware even when the
absolute numbers do not.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from kdapp import checkpoints, data as data_lib, stats
from kdapp.evaluation import inference
from kdapp.training import teachers, train
from kdapp.config import RunConfig
from kdapp.models import build
from kdapp.tools.serving import ROOT, redrawn_canvases, start_app, wait_for_http

def _teacher():
    return checkpoints.load(checkpoints.teacher_path(checkpoints.SHIPPED_DIR, "seed_teacher", "sample"))[0]


# ---- (a) the seed article's loop, as it is written there ----
class PILDigits(torch.utils.data.Dataset):
    """The seed's input pipeline: one PIL image per sample through ToTensor + Normalize."""

    def __init__(self, images, labels):
        from PIL import Image
        from torchvision import transforms
        self.images = [Image.fromarray(img) for img in images]
        self.labels = labels.tolist()
        self.transform = transforms.Compose([transforms.ToTensor(),
                                             transforms.Normalize((data_lib.MNIST_MEAN,), (data_lib.MNIST_STD,))])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i]


def seed_reference_throughput(teacher, samples, T=4.0, alpha=0.7, seed=0):
    """Samples/s of the seed's train_distillation: DataLoader, teacher forward every batch, batch 64."""
    images, labels = data_lib.sample_split()[:2]
    loader = torch.utils.data.DataLoader(PILDigits(images, labels), batch_size=64, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    student = build("seed_student")
    optimizer = torch.optim.Adam(student.parameters(), lr=0.001)
    kl, ce = nn.KLDivLoss(reduction="batchmean"), nn.CrossEntropyLoss()
    teacher.eval()
    student.train()
    seen, start = 0, time.perf_counter()
    while seen < samples:
        for x, y in loader:
            with torch.no_grad():
                teacher_probs = F.softmax(teacher(x) / T, dim=1)
            logits = student(x)
            loss = alpha * kl(F.log_softmax(logits / T, dim=1), teacher_probs) * T * T + (1 - alpha) * ce(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(y)
            if seen >= samples:
                break
    return seen / (time.perf_counter() - start)


def interleaved_throughputs(teacher, dataset, rounds, reference_samples):
    """Samples/s of (seed reference loop, engine KD with logits cached, plain training), measured
    in alternating rounds (one epoch of each per round) so that machine noise hits all three alike.
    Also returns the one-time teacher pass that fills the cache."""
    teachers._LOGIT_CACHE.clear()
    key = ("bench", time.time())
    start = time.perf_counter()  # a cold run pays the teacher once on each split
    teachers.cached_logits(key, teacher, dataset.train_x)
    teachers.cached_logits((*key, "test"), teacher, dataset.test_x)
    teacher_pass_s = time.perf_counter() - start
    n = len(dataset.train_y)
    loops = {
        "reference": lambda r: seed_reference_throughput(teacher, reference_samples, seed=r),
        "kd": lambda r: train.distill(RunConfig(epochs=1, baseline=False, batch_size=64, augment=False,
                                                 lr=0.001, seed=r), [teacher], dataset, teacher_keys=[key]),
        "plain": lambda r: train.train_teacher("seed_student", dataset, 1, lr=0.001, batch_size=64,
                                                augment="none", seed=r),
    }
    spent = dict.fromkeys(loops, 0.0)
    order = list(loops)
    for r in range(rounds):
        for name in order[r % 3:] + order[:r % 3]:  # rotate, so no loop always follows the same one
            start = time.perf_counter()
            loops[name](r)
            spent[name] += time.perf_counter() - start
    return (rounds * reference_samples / spent["reference"], rounds * n / spent["kd"],
            rounds * n / spent["plain"], teacher_pass_s)


def amortised(steady_per_s, teacher_pass_s, samples_per_epoch, epochs):
    """Samples/s of a whole cold-cache run of `epochs`: the teacher pass paid once."""
    total = samples_per_epoch * epochs
    return total / (total / steady_per_s + teacher_pass_s)


# ---- (c) prediction latency ----
def predict_latency(lab, canvases):
    lab.predict(canvases[0])  # load models
    times = []
    for canvas in canvases:
        start = time.perf_counter()
        lab.predict(canvas, 4.0)
        times.append((time.perf_counter() - start) * 1000)
    return inference.percentiles(times)


def redrawn_accuracy(lab, count):
    canvases, labels = redrawn_canvases(count, seed=1)
    teacher = student = 0
    for canvas, label in zip(canvases, labels):
        out = lab.predict(canvas, 4.0)
        teacher += int(np.argmax(out["teacher"]["p1"]) == label)
        student += int(np.argmax(out["student"]["p1"]) == label)
    return teacher / len(labels), student / len(labels)


# ---- (d) cold start ----
def cold_start(timeout=60):
    """Seconds from `python app.py` to the first HTTP 200 on its page."""
    start = time.perf_counter()
    process, url = start_app(ROOT / "runs" / "bench")
    try:
        wait_for_http(url, process, timeout)
        return time.perf_counter() - start
    finally:
        process.terminate()
        process.wait(10)


# ---- (e) the default UI run ----
DEFAULT_RUN_SEEDS = (0, 1, 2)


def default_runs(seeds=DEFAULT_RUN_SEEDS):
    """The run a visitor's Start launches (RunConfig's defaults), once per seed, in this process
    with a logit cache on disk as the app's runs have. The first run pays the teacher's pass over
    the training set (cold); the later ones find its soft targets cached, as every run after a
    server's first does. Returns [{seed, seconds, cold, student_acc, baseline_acc}]."""
    import tempfile
    rows = []
    with tempfile.TemporaryDirectory() as runs_dir:
        teachers._LOGIT_CACHE.clear()
        for i, seed in enumerate(seeds):
            start = time.perf_counter()
            result = train.run(RunConfig(seed=seed), runs_dir=runs_dir)
            m = result.metrics
            rows.append({"seed": seed, "seconds": time.perf_counter() - start, "cold": i == 0,
                         "student_acc": m["student_acc"], "baseline_acc": m["baseline_acc"],
                         "gain_pts": 100 * (m["student_acc"] - m["baseline_acc"]),
                         "gain_ci_pts": 100 * stats.gain_interval(m["student_acc"], m["baseline_acc"],
                                                                  m["test_samples"])})
            teachers._LOGIT_CACHE.clear()  # the next run reads the disk cache, as a new worker process does
    return rows


# ---- scaling and the hardware ceiling ----
def kd_step_flops(batch=64):
    """FLOPs of one KD training step of seed_student (forward + backward), per sample."""
    from torch.utils.flop_counter import FlopCounterMode
    student = build("seed_student")
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    soft = F.log_softmax(torch.randn(batch, 10), 1)
    with FlopCounterMode(display=False) as counter:
        logits = student(x)
        loss = 0.7 * F.kl_div(F.log_softmax(logits / 4, 1), soft, reduction="batchmean", log_target=True) \
            + 0.3 * F.cross_entropy(logits, y)
        loss.backward()
    return counter.get_total_flops() / batch


def matmul_peak(n=2048, seconds=2.0):
    """Achieved FLOP/s of a large float32 matmul: the practical ceiling of this CPU for torch."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * n ** 3 * count / (time.perf_counter() - start)


def scaling(teacher, sizes, epochs_list):
    full = data_lib.load("sample")
    rows = []
    for n in sizes:
        subset = data_lib.Dataset(full.train_x[:n], full.train_y[:n], full.test_x, full.test_y, "sample")
        for epochs in epochs_list:
            teachers._LOGIT_CACHE.clear()
            config = RunConfig(epochs=epochs)
            start = time.perf_counter()
            result = train.distill(config, [teacher], subset, teacher_keys=[("scale", n, epochs)])
            rows.append({"train_samples": n, "epochs": epochs, "seconds": time.perf_counter() - start,
                         "student_acc": result.metrics["student_acc"]})
    return rows


def _memory_mb():
    """(resident now, peak resident) of this process in MB, from /proc (Linux)."""
    try:
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
        return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError, ValueError):
        return None, None


def data_scaling(teacher, data_dir="data", epochs=2):
    """KD samples/s and memory on the sample (8,000 digits) and on full MNIST (60,000), in one
    process. The teacher's pass over train and test is timed on its own and counted once; the
    throughput is the students' epochs alone. Speed does not depend on what the teacher learned,
    so one teacher serves both (a real full-MNIST run uses a full-MNIST teacher)."""
    rows = []
    for source in ("sample", "mnist"):
        if source == "mnist" and not data_lib.mnist_present(data_dir):
            rows.append({"data": "mnist", "skipped": f"full MNIST is not in {data_dir}: python -m kdapp data import DIR"})
            continue
        before, _ = _memory_mb()
        dataset = data_lib.load(source, data_dir)
        tensors = (dataset.train_x, dataset.train_y, dataset.test_x, dataset.test_y)
        loaded, _ = _memory_mb()
        teachers._LOGIT_CACHE.clear()
        key = ("data-scaling", source)
        start = time.perf_counter()
        teachers.cached_logits(key, teacher, dataset.train_x)
        teachers.cached_logits((*key, "test"), teacher, dataset.test_x)
        teacher_pass = time.perf_counter() - start
        start = time.perf_counter()
        result = train.distill(RunConfig(epochs=epochs, data=source), [teacher], dataset, teacher_keys=[key])
        seconds = time.perf_counter() - start
        _, peak = _memory_mb()
        n = len(dataset.train_y)
        rows.append({"data": source, "train_samples": n, "epochs": epochs,
                     "dataset_mb": sum(t.element_size() * t.nelement() for t in tensors) / 1e6,
                     "rss_before_mb": before, "rss_loaded_mb": loaded, "peak_rss_mb": peak,
                     "teacher_pass_s": teacher_pass, "kd_seconds": seconds,
                     "kd_samples_per_s": n * epochs / seconds, "student_acc": result.metrics["student_acc"]})
    return rows


# ---- torchrun: 2 processes against 1 at the same global batch ----
def ddp(epochs=2, rounds=2, batch=128, processes=2):
    """samples/s of `distill` (KD + baseline, both counted once per digit) in one process with
    batch `batch` and under torchrun with `processes` ranks of batch/processes each: the same global
    batch, so the same optimisation. Alternated `rounds` times; each side's mean. The training loop
    only (train_seconds): process start, data and teacher pass are the same on both sides."""
    import subprocess
    import tempfile
    common = ["-m", "kdapp", "distill", "--epochs", str(epochs), "--json", "--quiet"]
    launches = {"1": [sys.executable, *common, "--batch-size", str(batch)],
                str(processes): [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                 f"--nproc_per_node={processes}", *common, "--batch-size", str(batch // processes)]}
    seen = {name: [] for name in launches}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for name, cmd in launches.items():
                started = time.perf_counter()
                done = subprocess.run([*cmd, "--runs-dir", tmp], cwd=ROOT, capture_output=True, text=True,
                                      env={**os.environ, "PYTHONPATH": str(ROOT)})
                if done.returncode != 0:
                    raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr[-2000:]}")
                m = json.loads([ln for ln in done.stdout.splitlines() if ln.startswith("{")][-1])
                seen[name].append({"samples_per_s": m["train_samples"] * epochs / m["train_seconds"],
                                   "wall_s": time.perf_counter() - started, "student_acc": m["student_acc"],
                                   "threads_per_rank": m.get("threads_per_rank")})
    mean = lambda name, key: sum(r[key] for r in seen[name]) / len(seen[name])
    one, many = "1", str(processes)
    return {"processes": processes, "global_batch": batch, "epochs": epochs, "rounds": rounds,
            "one_samples_per_s": mean(one, "samples_per_s"), "ddp_samples_per_s": mean(many, "samples_per_s"),
            "ddp_vs_one": mean(many, "samples_per_s") / mean(one, "samples_per_s"),
            "one_wall_s": mean(one, "wall_s"), "ddp_wall_s": mean(many, "wall_s"),
            "one_student_acc": mean(one, "student_acc"), "ddp_student_acc": mean(many, "student_acc"),
            "threads_per_rank": seen[many][0]["threads_per_rank"]}


def ddp_table(r):
    return (f"  torchrun, {r['processes']} processes x batch {r['global_batch'] // r['processes']} vs 1 x batch "
            f"{r['global_batch']}: {r['ddp_samples_per_s']:,.0f} vs {r['one_samples_per_s']:,.0f} samples/s "
            f"({r['ddp_vs_one']:.2f}x; {r['threads_per_rank']} thread(s) per rank), wall {r['ddp_wall_s']:.1f} vs "
            f"{r['one_wall_s']:.1f} s, student {r['ddp_student_acc']:.2%} vs {r['one_student_acc']:.2%}")


def run_bench(args):
    from kdapp.lab import facade as lab_lib
    threads = lab_lib.configure_threads()
    out = {"machine": f"{os.cpu_count()} CPUs, torch {torch.__version__}, {threads} threads"}
    teacher = _teacher()
    dataset = data_lib.load("sample")
    samples = 2000 if args.quick else 4000  # of the reference loop per round: it is slow
    rounds = 1 if args.quick else 6

    log = (lambda *a: None) if args.json_only else (lambda *a: print(*a, file=sys.stderr, flush=True))
    log("(a, b) seed reference loop, engine KD and plain training, interleaved ...")
    (out["reference_samples_per_s"], out["kd_samples_per_s"], out["plain_samples_per_s"],
     out["teacher_pass_s"]) = interleaved_throughputs(teacher, dataset, rounds, samples)
    out["kd_vs_reference"] = out["kd_samples_per_s"] / out["reference_samples_per_s"]
    out["kd_vs_plain"] = out["kd_samples_per_s"] / out["plain_samples_per_s"]
    # A cold run pays the teacher pass once: amortised over the default run's epochs.
    default_epochs = RunConfig().epochs
    out["kd_cold_samples_per_s"] = amortised(out["kd_samples_per_s"], out["teacher_pass_s"],
                                             len(dataset.train_y), default_epochs)
    out["kd_cold_vs_reference"] = out["kd_cold_samples_per_s"] / out["reference_samples_per_s"]
    out["kd_cold_vs_plain"] = out["kd_cold_samples_per_s"] / out["plain_samples_per_s"]

    log("(c) prediction latency ...")
    lab = lab_lib.Lab(runs_dir=ROOT / "runs" / "bench", workers=1)
    canvases, _ = redrawn_canvases(100 if args.quick else 300)
    torch.set_num_threads(lab_lib.SERVER_THREADS)  # as the app's process runs predictions
    out["predict_p50_ms"], out["predict_p95_ms"] = predict_latency(lab, canvases)
    torch.set_num_threads(threads)
    log("(c) accuracy on re-drawn held-out digits ...")
    out["redrawn_digits"] = 300 if args.quick else 2000
    out["redrawn_teacher_acc"], out["redrawn_student_acc"] = redrawn_accuracy(lab, out["redrawn_digits"])
    lab.close()

    if not args.skip_cold_start:
        log("(d) cold start ...")
        out["cold_start_s"] = cold_start()
    if not args.quick:
        log("(e) default UI run, seeds 0, 1, 2 ...")
        rows = default_runs()
        warm = [r for r in rows if not r["cold"]] or rows
        out["default_runs"] = rows
        out["default_run_s"] = sum(r["seconds"] for r in warm) / len(warm)
        out["default_run_cold_s"] = rows[0]["seconds"]
        out["default_run_student_acc"] = rows[0]["student_acc"]  # seed 0, as before
        out["default_run_baseline_acc"] = rows[0]["baseline_acc"]
        out["default_run_student_acc_mean"] = sum(r["student_acc"] for r in rows) / len(rows)
        out["default_run_baseline_acc_mean"] = sum(r["baseline_acc"] for r in rows) / len(rows)
        # The lesson the default run teaches: its KD gain, each seed's beyond its own interval,
        # and the mean over seeds with Student's t interval on their spread.
        out["default_run_gain_pts_mean"], out["default_run_gain_ci_pts"] = stats.mean_interval(
            r["gain_pts"] for r in rows)
        out["default_run_gain_clears_every_seed"] = all(stats.clears(r["gain_pts"], r["gain_ci_pts"]) for r in rows)
        log("(f) drawing capacity while the default run trains (client processes) ...")
        from kdapp.tools import loadtest
        out.update(loadtest.capacity(log=log))
        out["floor_rps"] = loadtest.floor()

    out["kd_step_flops_per_sample"] = kd_step_flops()
    out["matmul_peak_gflops"] = matmul_peak() / 1e9
    out["kd_achieved_gflops"] = out["kd_samples_per_s"] * out["kd_step_flops_per_sample"] / 1e9
    if args.scaling:
        log("scaling ...")
        out["scaling"] = scaling(teacher, [1000, 2000, 4000, 8000], [1, 2, 4])
        log("data scaling: the sample (8k) and full MNIST (60k) ...")
        out["data_scaling"] = data_scaling(teacher, args.data_dir)
        log("torchrun: 2 processes vs 1 at the same global batch ...")
        out["ddp"] = ddp()
    return out


def data_scaling_table(rows):
    lines = []
    for r in rows:
        if "skipped" in r:
            lines.append(f"  {r['data']}: skipped ({r['skipped']})")
            continue
        lines.append(f"  {r['data']:>6} ({r['train_samples']:,} digits): KD {r['kd_samples_per_s']:,.0f} samples/s "
                     f"over {r['epochs']} epochs; teacher pass {r['teacher_pass_s']:.1f} s once; data "
                     f"{r['dataset_mb']:.0f} MB in memory, process {r['rss_loaded_mb']:.0f} MB loaded, "
                     f"peak {r['peak_rss_mb']:.0f} MB")
    ok = [r for r in rows if "skipped" not in r]
    if len(ok) == 2:
        lines.append(f"  60k vs 8k: {ok[1]['kd_samples_per_s'] / ok[0]['kd_samples_per_s']:.2f}x samples/s, "
                     f"{ok[1]['teacher_pass_s'] / ok[0]['teacher_pass_s']:.1f}x teacher pass")
    return "\n".join(lines)


def table(out):
    rows = [("(a) seed's reference loop", f"{out['reference_samples_per_s']:,.0f} samples/s"),
            ("(a) KD, engine, logits cached", f"{out['kd_samples_per_s']:,.0f} samples/s"),
            ("(a) one-time teacher pass", f"{out['teacher_pass_s']:.2f} s (8,000 train + 2,000 test digits)"),
            (f"(a) KD, cold, over a {RunConfig().epochs}-epoch run", f"{out['kd_cold_samples_per_s']:,.0f} samples/s"),
            ("(a) KD vs seed loop", f"{out['kd_vs_reference']:.2f}x cached, {out['kd_cold_vs_reference']:.2f}x cold"
                                    "   (target >= 4x)"),
            ("(b) plain student training", f"{out['plain_samples_per_s']:,.0f} samples/s"),
            ("(b) KD vs plain (KD overhead)", f"{out['kd_vs_plain']:.2f}x cached, {out['kd_cold_vs_plain']:.2f}x cold"
                                              "   (target >= 0.8x)"),
            ("(c) predict p50 / p95", f"{out['predict_p50_ms']:.2f} / {out['predict_p95_ms']:.2f} ms   (target p50 <= 2 ms)"),
            (f"(c) re-drawn digits ({out['redrawn_digits']})",
             f"teacher {out['redrawn_teacher_acc']:.2%}, student {out['redrawn_student_acc']:.2%}   (targets 97% / 95%)")]
    if "cold_start_s" in out:
        rows.append(("(d) cold start to HTTP 200", f"{out['cold_start_s']:.2f} s   (target <= 5 s)"))
    if "default_run_s" in out:
        rows.append(("(e) default UI run", f"{out['default_run_s']:.1f} s with the teacher's logits cached, "
                                           f"{out['default_run_cold_s']:.1f} s cold   (target <= 25 s)"))
        rows.append(("(e) its student, seeds 0/1/2", f"{out['default_run_student_acc_mean']:.2%} mean ("
                     + " / ".join(f"{r['student_acc']:.2%}" for r in out["default_runs"])
                     + f"), baseline {out['default_run_baseline_acc_mean']:.2%}"))
        rows.append(("(e) its KD gain, seeds 0/1/2", " / ".join(
            f"{r['gain_pts']:+.2f} ± {r['gain_ci_pts']:.2f}" for r in out["default_runs"])
            + f" pts; mean {out['default_run_gain_pts_mean']:+.2f} ± {out['default_run_gain_ci_pts']:.2f}"
            + "   (target: every seed's interval excludes 0)"))
    if "predict_capacity_visitors" in out:
        rows.append(("(f) drawing capacity", f"{out['predict_capacity_visitors']} visitors (/predict every 2 s each, "
                                             f"p95 {out['capacity_p95_ms']:.0f} ms), training kept "
                                             f"{out['train_speed_kept'] or 0:.0%}"))
        rows.append(("(f) ... with training >= 50%", f"{out['predict_capacity_visitors_half_speed']} visitors, training "
                                                     f"kept {out['train_speed_kept_half_speed'] or 0:.0%}   "
                                                     "(target >= 40, >= 50%)"))
        rows.append(("(f) floor: no-op Gradio app", f"{out['floor_rps']:.0f} requests/s back to back"))
    rows += [("KD step FLOPs / sample", f"{out['kd_step_flops_per_sample'] / 1e6:.2f} MFLOP"),
             ("KD achieved vs matmul peak", f"{out['kd_achieved_gflops']:.1f} / {out['matmul_peak_gflops']:.1f} GFLOP/s "
                                            f"({out['kd_achieved_gflops'] / out['matmul_peak_gflops']:.1%})")]
    width = max(len(r[0]) for r in rows)
    lines = [f"kdapp bench on {out['machine']}"] + [f"  {k:<{width}}  {v}" for k, v in rows]
    for r in out.get("scaling", []):
        lines.append(f"  scaling: {r['train_samples']:>5} samples x {r['epochs']} epochs: {r['seconds']:6.2f} s, "
                     f"student {r['student_acc']:.2%}")
    if out.get("data_scaling"):
        lines.append(data_scaling_table(out["data_scaling"]))
    if out.get("ddp"):
        lines.append(ddp_table(out["ddp"]))
    return "\n".join(lines)


def cmd_bench(args):
    if args.drawing:
        from kdapp.tools import bench_drawing  # playwright and chromium: only this measurement needs them
        out = bench_drawing.drawing(args.drawing_strokes)
        if not args.json_only:
            print(bench_drawing.table(out))
        if args.json or args.json_only:
            print(json.dumps(out))
        return
    if args.ddp_only:
        r = ddp()
        print(ddp_table(r))
        if args.json or args.json_only:
            print(json.dumps({"ddp": r}))
        return
    if args.data_scaling_only:
        from kdapp.lab import facade as lab_lib
        lab_lib.configure_threads()
        rows = data_scaling(_teacher(), args.data_dir)
        print(data_scaling_table(rows))
        if args.json or args.json_only:
            print(json.dumps({"data_scaling": rows}))
        return
    out = run_bench(args)
    if not args.json_only:
        print(table(out))
    if args.json or args.json_only:
        print(json.dumps(out))


def add_parser(sub):
    p = sub.add_parser("bench", help="measure throughput, latency, cold start and the default run")
    p.add_argument("--json", action="store_true", help="also print one final JSON line")
    p.add_argument("--json-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="shorter measurements; skips the default run")
    p.add_argument("--scaling", action="store_true", help="also measure cost vs training-set size and epochs")
    p.add_argument("--skip-cold-start", action="store_true", help="do not time a fresh `import app`")
    p.add_argument("--data-scaling-only", action="store_true",
                   help="only samples/s and memory at 8k (sample) and 60k (full MNIST)")
    p.add_argument("--ddp-only", action="store_true",
                   help="only torchrun with 2 processes against 1 at the same global batch (samples/s)")
    p.add_argument("--drawing", action="store_true",
                   help="only the drawing panel in Chromium: pen-up to painted, requests per stroke, first-load bytes")
    p.add_argument("--drawing-strokes", type=int, default=30, help="digits drawn per condition (--drawing)")
    p.add_argument("--data-dir", default="data", help="where `data import` put full MNIST")
    p.set_defaults(func=cmd_bench)

