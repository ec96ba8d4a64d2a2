"""The methods table (python -m kdapp reproduce --methods) from cells with known numbers: its
means, spreads and gains against a hand computation, and its missing-3 counts."""
import json
import statistics

from kdapp.tools import reproduce


def test_methods_table_from_known_cells(tmp_path):
    cells = tmp_path / "methods.cells.json"
    accs = {"KD": ([0.980, 0.978, 0.982], [0.968, 0.967, 0.969]),
            "DKD": ([0.990, 0.991, 0.992], [0.968, 0.967, 0.969]),   # clearly ahead of KD's +1.2
            "LS-KD": ([0.981, 0.980, 0.982], [0.968, 0.967, 0.969])}  # ahead, within the spread
    done = {}
    for name, (kd, base) in accs.items():
        for seed, (a, b) in enumerate(zip(kd, base)):
            done[f"sample/quick/e6/methods/{name}/s{seed}"] = {"student_acc": a, "baseline_acc": b,
                                                               "train_samples": 8000}
    missing = {"errors": 60, "omitted_errors": 30, "errors_adjusted": 48, "omitted_errors_adjusted": 9,
               "omitted_test_digits": 200}
    for seed in range(3):
        done[f"sample/quick/e6/methods/missing-3/s{seed}"] = {
            "student": dict(missing, omitted_errors=30 + seed), "baseline": dict(missing, omitted_errors=200)}
    cells.write_text(json.dumps(done))
    markdown, raw = reproduce.run_methods(quick=True, seeds=3, cells_path=cells, cached_only=True)
    kd_gain = [100 * (a - b) for a, b in zip(*accs["KD"])]
    row = next(line for line in markdown.splitlines() if line.startswith("| KD |"))
    assert f"{statistics.mean(kd_gain):.2f} ± {statistics.stdev(kd_gain):.2f}" in row
    assert "98.00 ± 0.20" in row  # the KD student's mean ± std
    assert "Clearly better on this footing (by more than a standard deviation over seeds): DKD" in markdown
    assert "Ahead of KD but within that spread: LS-KD" in markdown
    assert "| DIST |" in markdown and "not run yet" in markdown  # cells missing are said so, not invented
    assert "| KD student (ours) | 60.0 ± 0.0 | 31.0 ± 1.0 | 48.0 ± 0.0 | 9.0 ± 0.0 |" in markdown
    assert raw["methods"]["KD"]["student"] == accs["KD"][0]
