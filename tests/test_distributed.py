"""torchrun: a 2-process gloo distillation on CPU trains the same model as one process with the
same global batch, its replicas stay identical, and rank 0's checkpoints load in the app."""
import json
import os
import subprocess
import sys

import pytest
import torch

from kdapp import checkpoints
from kdapp.training import distributed
from kdapp.lab.facade import Lab

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def distill(tmp_path, name, launcher, batch_size):
    out = tmp_path / name
    cmd = [*launcher, "-m", "kdapp", "distill", "--epochs", "1", "--batch-size", str(batch_size),
           "--train-fraction", "1",
           "--json", "--quiet", "--runs-dir", str(tmp_path / "runs"), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": ROOT}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, done.stdout  # rank 0 alone prints the JSON line
    return json.loads(lines[0]), out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    two, two_out = distill(tmp, "two", torchrun, 64)
    one, one_out = distill(tmp, "one", [sys.executable], 128)
    return two, two_out, one, one_out


@pytest.mark.slow
def test_two_processes_finish_with_identical_replicas(runs):
    two, _, one, _ = runs
    assert two["world_size"] == 2 and two["effective_batch_size"] == 128
    assert one["world_size"] == 1 and one["effective_batch_size"] == 128 and "replica_hashes" not in one
    hashes = two["replica_hashes"]
    assert len(hashes) == 2 and hashes[0] == hashes[1], hashes


@pytest.mark.slow
def test_two_processes_learn_what_one_does_with_the_same_global_batch(runs):
    """The same permutation, split across ranks, with DDP averaging the two halves' gradients:
    the same steps as one process up to float summation order, so the same accuracy within noise."""
    two, _, one, _ = runs
    assert two["train_samples"] == one["train_samples"] == 8000
    assert two["teacher_acc"] == one["teacher_acc"]
    assert abs(two["student_acc"] - one["student_acc"]) <= 0.01, (two["student_acc"], one["student_acc"])
    assert abs(two["baseline_acc"] - one["baseline_acc"]) <= 0.01, (two["baseline_acc"], one["baseline_acc"])
    assert two["student_acc"] > 0.9


@pytest.mark.slow
def test_rank_zeros_checkpoints_load_in_the_app(runs, tmp_path):
    two, two_out, _, _ = runs
    paths = checkpoints.drawing_paths(two_out)
    assert set(paths) == {"teacher", "student", "baseline"}
    student, meta = checkpoints.load(paths["student"])
    assert meta["metrics"]["world_size"] == 2 and distributed.weights_hash(student) != ""
    lab = Lab(runs_dir=tmp_path / "runs", drawing_dir=str(two_out))
    canvas = torch.zeros(280, 280, 4, dtype=torch.uint8).numpy()
    canvas[40:240, 130:150, 3] = 255  # a "1"
    answer = lab.predict({"background": None, "layers": [], "composite": canvas})
    assert f"checkpoints from {two_out}" in answer["models"]
    assert {"teacher", "student", "baseline"} <= set(answer) and max(answer["student"]["p1"]) > 0.5


def test_each_rank_takes_its_slice_of_every_global_batch():
    """The split DistributedSampler makes, without a DataLoader: disjoint, covering, same step count."""
    n, batch = 10, 2
    slices = []
    for rank in range(2):
        world = distributed.World(rank=rank, size=2)
        g = torch.Generator().manual_seed(0)
        slices.append(distributed.epoch_batches(n, batch, g, "cpu", world))
    assert len(slices[0]) == len(slices[1]) == distributed.steps_per_epoch(n, batch, distributed.World(size=2)) == 3
    g = torch.Generator().manual_seed(0)
    single = distributed.epoch_batches(n, 2 * batch, g, "cpu")
    for step, whole in enumerate(single):
        mine = torch.cat([slices[0][step], slices[1][step]])
        assert sorted(mine.tolist()) == sorted(whole.tolist())
    # An odd-sized split is padded with the permutation's head, so both ranks take as many steps.
    g = [torch.Generator().manual_seed(1) for _ in range(2)]
    odd = [distributed.epoch_batches(7, 2, g[r], "cpu", distributed.World(rank=r, size=2)) for r in range(2)]
    assert [len(b) for b in odd[0]] == [len(b) for b in odd[1]]
    assert set(torch.cat(odd[0] + odd[1]).tolist()) == set(range(7))
