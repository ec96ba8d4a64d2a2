"""Bookkeeping the training loops share: an ETA clock, running loss meters that cost no per-step
GPU sync, and the steps at which a loop logs."""
import time

import torch

from kdapp.training import distributed


class Clock:
    """Steps done of a phase's total -> ETA, from the phase's own pace."""

    def __init__(self, total_steps):
        self.total, self.start = max(total_steps, 1), time.monotonic()

    def eta(self, done):
        return None if done == 0 else (time.monotonic() - self.start) / done * (self.total - done)


class Meter:
    """Running sums of a few losses, kept on the device and read once per log interval, so
    logging costs no per-step GPU sync."""

    def __init__(self, names, device):
        self.names, self.sums, self.count = names, torch.zeros(len(names), device=device), 0

    def add(self, *values):
        zero = self.sums.new_zeros(())
        self.sums += torch.stack([zero if v is None else v.detach() for v in values])
        self.count += 1

    def read(self, world=distributed.SINGLE):
        """Means since the last read, averaged over ranks (every rank reads at the same steps)."""
        sums = distributed.sum_over_ranks(self.sums.clone(), world) / world.size
        means = dict(zip(self.names, (sums / max(self.count, 1)).tolist()))
        self.sums.zero_()
        self.count = 0
        return means


def log_points(steps_per_epoch, per_epoch):
    every = max(1, steps_per_epoch // per_epoch)
    return lambda i: (i + 1) % every == 0 or i + 1 == steps_per_epoch
