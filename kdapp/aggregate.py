"""Honest aggregates of finished runs: one sample per distinct seed, never one per click.

Two runs with the same settings and the same seed are the same experiment (training is
deterministic given the seed), so they count once: pressing Start twice does not halve an error
bar. A group of runs that differ only in the settings under study and the seed becomes cells,
each with its mean gain, the number of distinct seeds n, and a 95% interval: Student's t on the
seeds' spread when n >= 2, or the one run's binomial interval (test-set noise only) when n = 1.
"""
import json
from typing import NamedTuple

from kdapp import stats

# How a run was executed, not what it measured: two runs differing only in these are identical.
EXECUTION = ("device", "time_limit_s")


class Cell(NamedTuple):
    mean: float            # KD gain, points, averaged over distinct seeds
    half_width: float      # of its 95% interval, points
    n: int                 # distinct seeds
    seeds: tuple
    interval: str          # "seeds" (t on their spread) or "test" (one seed: the binomial interval)

    @property
    def clears(self):
        """The interval excludes 0: the effect is beyond the noise."""
        return stats.clears(self.mean, self.half_width)


def gain(run):
    """A finished run's KD gain in points, or None when it has no baseline."""
    m = run.get("metrics") or {}
    if m.get("baseline_acc") is None or m.get("student_acc") is None:
        return None
    return 100 * (m["student_acc"] - m["baseline_acc"])


def settings_key(config, leave_out=()):
    """The settings that define an experiment, as a hashable string, without `leave_out`."""
    drop = set(EXECUTION) | set(leave_out)
    return json.dumps({k: v for k, v in config.items() if k not in drop}, sort_keys=True)


def comparable(runs, like, vary):
    """The finished runs with a gain that differ from `like` (a config) only in `vary` and the seed."""
    key = settings_key(like, (*vary, "seed"))
    return [r for r in runs if r.get("state", "finished") == "finished" and gain(r) is not None
            and settings_key(r["config"], (*vary, "seed")) == key]


def distinct(runs):
    """Identical runs (same settings, same seed) merged into one sample: {settings key: run},
    the newest kept (listings are newest first)."""
    out = {}
    for r in runs:
        if gain(r) is not None:
            out.setdefault(settings_key(r["config"]), r)
    return list(out.values())


def cell(runs):
    """One Cell from runs of one setting: identical runs merged, then one sample per seed."""
    by_seed = {}
    for r in distinct(runs):
        by_seed.setdefault(r["config"]["seed"], []).append(gain(r))
    if not by_seed:
        return None
    seeds = tuple(sorted(by_seed))
    mean, half = stats.mean_interval(sum(g) / len(g) for g in by_seed.values())
    if half is None:  # one seed: only the test set's noise is known
        m = next(r for r in distinct(runs))["metrics"]
        half = 100 * stats.gain_interval(m["student_acc"], m["baseline_acc"], m["test_samples"])
        return Cell(mean, half, 1, seeds, "test")
    return Cell(mean, half, len(seeds), seeds, "seeds")


def cells(runs, axes):
    """{(value of each axis): Cell} over runs that differ only in `axes` and the seed."""
    groups = {}
    for r in distinct(runs):
        groups.setdefault(tuple(r["config"][a] for a in axes), []).append(r)
    return {key: cell(group) for key, group in groups.items()}
