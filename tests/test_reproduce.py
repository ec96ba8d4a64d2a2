"""The reproduction's tables from cells with known numbers: the methods table's means, spreads and
gains against a hand computation, its missing-3 counts, and the robustness section's sentences."""
import json
import re
import statistics

import pytest

from kdapp import checkpoints
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


def _robustness_report(teacher, student, baseline):
    accuracy = {"teacher": teacher, "student": student, "baseline": baseline}
    agreement = {"student": 0.9, "baseline": 0.9}
    return {"seed": 0, "mnist": {"source": "mnist", "n": 2000, "accuracy": {"teacher": 0.995, "student": 0.99,
                                                                            "baseline": 0.99}, "agreement": agreement},
            "uci": {"source": "UCI", "n": 1797, "accuracy": accuracy, "agreement": agreement}}


@pytest.mark.slow
def test_robustness_section_from_known_cells(tmp_path, mnist_dir):
    """Section 5 of the full-MNIST reproduction: one cell per trio, keyed by its checkpoints'
    fingerprint (a cell for other files is never read), its sentences computed from the cell."""
    done = {}
    for roles, uci in ((checkpoints.SHIPPED_DRAWING, (0.97, 0.95, 0.96)),
                       (checkpoints.ARTICLES_DRAWING, (0.94, 0.89, 0.84))):
        paths = checkpoints.shipped_drawing_paths(roles=roles).values()
        trio = f"{roles['teacher'][0]}-{roles['student'][0]}"
        done[f"mnist/robustness/{trio}/{checkpoints.fingerprint(paths)}"] = _robustness_report(*uci)
        done[f"mnist/robustness/{trio}/000000000000"] = _robustness_report(0.5, 0.5, 0.5)  # older checkpoints
    cells = tmp_path / "reproduce-mnist.cells.json"
    cells.write_text(json.dumps(done))
    markdown, raw = reproduce.run_reproduce(data="mnist", data_dir=mnist_dir, seeds=1, cells_path=cells,
                                            cached_only=True)
    section = markdown[markdown.index("## 5."):]
    assert "the KD student reads 1.00 points less than its baseline and trails its teacher by 2.00." in section
    assert "the KD student reads 5.00 points more than its baseline and trails its teacher by 5.00." in section
    assert not re.search(r"targets? (missed|are met)|\(target \d", markdown, re.I)  # no bookkeeping in the page
    assert "this pass" not in markdown.lower()
    assert "one training seed (seed 0), so no spread is given" in markdown and "over seeds" not in markdown
    assert "| UCI, 43 other writers | 1,797 | 97.00% | 95.00% | 96.00% |" in section
    assert set(raw["robustness"]) == {"lenet5_wide-lenet5", "seed_teacher-seed_student"}
    assert raw["robustness"]["lenet5_wide-lenet5"]["uci"]["accuracy"]["student"] == 0.95


@pytest.mark.parametrize("name", ["reproduce.md", "reproduce-mnist.md", "methods.md", "methods-mnist.md",
                                  "techniques.md"])
def test_the_committed_tables_read_like_a_results_section(name):
    """What the Reproduction tab shows: no bookkeeping (how long this pass took, cells reused, targets
    met or missed), a header true to its number of seeds, and the machine named where a time is given."""
    text = (reproduce.RESULTS_DIR / name).read_text(encoding="utf-8")
    assert "this pass" not in text.lower() and "came from an earlier" not in text
    assert not re.search(r"targets? (missed|are met)|\(target \d", text, re.I)
    assert "one training seed (seed 0)" in text or re.search(r"over \d+ training seeds", text)
    assert "over seeds" not in text and "this CPU" not in text
    if "latency" in text.lower():
        assert "the computer that made this table" in text


def test_the_published_recipes_train_on_every_digit_as_it_is(monkeypatch):
    """The reproduction's cells use all the labels and no shifts, whatever the app's default run
    (10% of the labels) says: a cell trained on a tenth of the data would sit in a full-data table."""
    from kdapp.training import train
    seen = []
    monkeypatch.setattr(train, "distill", lambda config, *a, **k: seen.append(config))
    monkeypatch.setattr(train, "train_students", lambda config, *a, **k: seen.append(config))
    dataset = type("D", (), {"source": "sample"})()
    reproduce.distill_cell(None, None, dataset, 0, epochs=3)
    with pytest.raises(AttributeError):  # method_cell reads the result's metrics, which the stand-in lacks
        reproduce.method_cell(None, None, dataset, 0, epochs=3)
    assert [(c.train_fraction, c.augment, c.epochs) for c in seen] == [(1.0, False, 3), (1.0, False, 3)]
