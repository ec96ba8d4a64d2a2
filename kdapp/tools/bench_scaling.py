"""The bench's measurements of scale: a KD step's FLOPs against this CPU's matmul peak, the cost of
training against data and epochs, the sample against full MNIST (speed and memory), and torchrun's
2 processes against 1. `python -m kdapp bench` (kdapp.tools.bench) runs and prints them."""
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from kdapp import data as data_lib
from kdapp.config import RunConfig
from kdapp.models import build
from kdapp.tools.serving import ROOT
from kdapp.training import teachers, train


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
