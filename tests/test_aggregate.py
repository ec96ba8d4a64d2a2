"""Honest aggregates: identical runs count once, n is the number of distinct seeds, and the
interval is Student's t on the seeds' spread (or one run's binomial interval)."""
import pytest

from kdapp.config import RunConfig
from kdapp import stats
from kdapp import aggregate
from kdapp.ui import runs_plots


def run(gain_pts, seed=0, test_samples=2000, **settings):
    config = RunConfig(seed=seed, **settings).to_dict()
    baseline = 0.90
    return {"state": "finished", "config": config,
            "metrics": {"student_acc": baseline + gain_pts / 100, "baseline_acc": baseline,
                        "test_samples": test_samples}}


def test_mean_interval_is_students_t_by_hand():
    mean, half = stats.mean_interval([3.55, 4.05, 3.45])
    sd = (((3.55 - mean) ** 2 + (4.05 - mean) ** 2 + (3.45 - mean) ** 2) / 2) ** 0.5
    assert mean == pytest.approx(3.6833, abs=1e-4) and half == pytest.approx(4.303 * sd / 3 ** 0.5)
    assert stats.mean_interval([1.0]) == (1.0, None)
    assert stats.clears(3.68, 0.80) and not stats.clears(0.6, 0.88) and not stats.clears(1.0, None)


def test_identical_runs_count_once():
    """The issue's T=4 cell: two identical runs (same settings, same seed) were shown as n=2."""
    twice = [run(0.6, seed=0, temperature=4.0), run(0.6, seed=0, temperature=4.0, device="cpu")]
    cell = aggregate.cells(twice, ("temperature", "alpha"))[(4.0, 0.7)]
    assert cell.n == 1 and cell.seeds == (0,) and cell.interval == "test"
    assert cell.half_width == pytest.approx(100 * stats.gain_interval(0.906, 0.90, 2000))
    assert not cell.clears  # +0.6 ± 0.9: inside the noise


def test_three_seeds_give_n_3_and_a_t_interval():
    runs = [run(g, seed=s) for g, s in ((3.55, 0), (4.05, 1), (3.45, 2))] + [run(3.55, seed=0)]
    cell = aggregate.cells(runs, ("temperature", "alpha"))[(4.0, 0.7)]
    mean, half = stats.mean_interval([3.55, 4.05, 3.45])
    assert (cell.n, cell.seeds, cell.interval) == (3, (0, 1, 2), "seeds")
    assert cell.mean == pytest.approx(mean) and cell.half_width == pytest.approx(half) and cell.clears


def test_only_runs_that_differ_in_the_studied_settings_and_the_seed_are_compared():
    like = RunConfig().to_dict()
    runs = [run(1.0, temperature=8.0), run(2.0, seed=1, alpha=0.5), run(9.0, epochs=3), run(9.0, student="mlp_30")]
    assert [r["config"]["epochs"] for r in aggregate.comparable(runs, like, ("temperature", "alpha"))] == [40, 40]


def test_the_gain_map_shows_distinct_seeds_and_intervals():
    runs = [run(0.6, seed=0, temperature=4.0), run(0.6, seed=0, temperature=4.0)]
    runs += [run(g, seed=s, temperature=8.0) for g, s in ((3.55, 0), (4.05, 1), (3.45, 2))]
    heat = runs_plots.gain_map(runs).to_plotly_json()["data"][0]
    cells = {x: text for x, text in zip(heat["x"], heat["text"][0])}
    assert cells["T=4"] == "+0.60 ± 1.83<br>n=1 seed"  # one sample, not two; inside the noise: not bold
    assert cells["T=8"].startswith("<b>+3.68 ± 0.80<br>n=3 seeds")
    title = runs_plots.gain_map(runs).layout.title.text
    assert "4 distinct runs, 3 seeds" in title  # the duplicate at T=4 counts once
    assert "1 distinct run, 1 seed ·" in runs_plots.gain_map(runs[:1]).layout.title.text
