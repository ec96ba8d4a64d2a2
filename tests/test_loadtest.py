"""The load test's arithmetic, on made-up observations whose answers are known."""
from kdapp.tools.loadtest import TrainingWatch, summarise


def test_training_speed_counts_steps_within_runs_and_skips_the_gap_between_them():
    watch = TrainingWatch(None, None, None)
    # Run a: 50 steps/s, persisted every 1 s (an epoch), seen every 0.25 s; then 3 s with no run;
    # then run b at 25 steps/s.
    for i in range(41):
        t = i * 0.25
        watch.samples.append((t, "a", 50 * int(t)))
    for i in range(41):
        t = 13 + i * 0.25
        watch.samples.append((t, "b", 25 * int(t - 13)))
    assert abs(watch.steps_per_s(0, 10) - 50) < 1e-9
    # Both runs: (400 + 200) steps over (8 + 8) s of observed change, the gap left out.
    assert abs(watch.steps_per_s(1, 21) - (450 + 200) / (9 + 8)) < 1e-9
    assert watch.steps_per_s(10.5, 12.5) is None  # no run trained then


def test_summary_of_a_load_step():
    results = [(0.1 * i, float(i + 1), True) for i in range(100)] + [(5.0, 1.0, None), (5.1, 2.0, False)]
    s = summarise(results, (0.0, 10.0))
    assert s["requests"] == 102 and s["errors"] == 1 and s["correct"] == 100
    assert s["rps"] == 10.2 and s["max_ms"] == 100.0
    assert 49 <= s["p50_ms"] <= 52 and 94 <= s["p95_ms"] <= 97
