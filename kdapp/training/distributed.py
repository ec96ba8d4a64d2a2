"""Data-parallel distillation under torchrun: one process per CPU share or GPU.

    torchrun --standalone --nproc_per_node=2 -m kdapp distill --json

What each rank does (kdapp.training.distillation.distill calls these helpers; with one process they are no-ops):
- it holds the whole data set in memory, as a single process does, and trains on its own slice
  of every global batch: the epoch's permutation comes from the same seed on every rank, and
  rank r takes positions r, r+W, r+2W, ... of each global batch (DistributedSampler's split,
  without a DataLoader). The effective batch is batch_size x W;
- its KD student and baseline are wrapped in DistributedDataParallel and start from the same
  weights (the same seed, and DDP broadcasts rank 0's weights anyway), so gradients are averaged
  over the global batch and every replica takes the same steps;
- the teacher is not wrapped: it is frozen, and its cached logits are indexed by the *global*
  example index. Rank 0 computes (and caches) them first, then the other ranks read the cache;
- test accuracies are counted on a slice of the test set per rank and all-reduced; only rank 0
  reports progress, computes the fidelity panel, writes checkpoints and prints the JSON line.
"""
import hashlib
import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place in the launch: rank of size, and its rank/size on this node."""
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    threads: int | None = None  # CPU threads per rank, when we set them

    @property
    def main(self):
        return self.rank == 0

    @property
    def distributed(self):
        return self.size > 1


SINGLE = World()


def launched():
    """True in a process started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def cpus():
    """CPUs this process may run on (the container's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def init(device):
    """Join the torchrun launch: gloo on CPU, nccl on CUDA (one GPU per local rank), the process
    group from the environment torchrun sets. Returns (World, the device this rank trains on).

    torchrun sets OMP_NUM_THREADS=1 for every rank when it is unset, which starves a CPU run on a
    big machine; each rank gets its share of the CPUs instead (KDAPP_THREADS overrides)."""
    if not launched():
        return SINGLE, device
    env = {k: int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    threads = None
    if device.type == "cuda":
        device = torch.device("cuda", env["LOCAL_RANK"])
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        if device.type != "cpu":
            raise ValueError(f"distributed runs use CPU (gloo) or CUDA (nccl), not {device.type}")
        threads = int(os.environ.get("KDAPP_THREADS") or max(1, cpus() // env["LOCAL_WORLD_SIZE"]))
        torch.set_num_threads(threads)
        backend = "gloo"
    dist.init_process_group(backend)
    world = World(env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"], env["LOCAL_WORLD_SIZE"], threads)
    return world, device


def finish(world):
    if world.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier(world):
    if world.distributed:
        dist.barrier()


@contextmanager
def main_first(world):
    """Rank 0 runs the block first (it trains or caches what the others then just load)."""
    if not world.main:
        barrier(world)
    yield
    if world.main:
        barrier(world)


def wrap(module, world):
    """DDP around a module that trains, or the module itself in a single process."""
    if not world.distributed:
        return module
    device = next(module.parameters()).device
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda"
                                                     else None)


def epoch_batches(n, batch_size, generator, device, world=SINGLE):
    """One epoch of this rank's index batches. The permutation is the same on every rank (same
    generator state); it is padded with its own head to a multiple of W (as DistributedSampler
    does, so every rank takes the same number of steps), cut into global batches of
    batch_size x W, and rank r keeps positions r, r+W, ... of each. W=1: plain shuffled slices."""
    order = torch.randperm(n, generator=generator).to(device)
    W = world.size
    if n % W:
        order = torch.cat([order, order[:W - n % W]])
    step = batch_size * W
    return [order[i:i + step][world.rank::W] for i in range(0, len(order), step)]


def steps_per_epoch(n, batch_size, world=SINGLE):
    padded = -(-n // world.size) * world.size
    return -(-padded // (batch_size * world.size))


def sum_over_ranks(tensor, world):
    """All-reduce (sum) in place; returns the tensor."""
    if world.distributed:
        dist.all_reduce(tensor)
    return tensor


def shard(x, world):
    """This rank's slice of a split for evaluation: positions rank, rank+W, ..."""
    return x[world.rank::world.size] if world.distributed else x


def weights_hash(*models):
    """A short hash of the models' parameters and buffers, bit for bit."""
    h = hashlib.sha256()
    for model in models:
        if model is None:
            continue
        for name, t in sorted(model.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def gather_strings(value, world):
    """Every rank's string, in rank order, on every rank."""
    if not world.distributed:
        return [value]
    out = [None] * world.size
    dist.all_gather_object(out, value)
    return out
