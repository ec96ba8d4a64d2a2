"""The reproduction's tables from cells with known numbers: the methods table's means, spreads and
gains against a hand computation, its missing-3 counts, and the robustness section's sentences; and
each table in Chinese, with the English one's numbers in the same order and no English sentence."""
import json
import re
import statistics

import pytest

from kdapp import checkpoints
from kdapp.tools import reproduce
from kdapp.ui.i18n import CATALOGS, speaking, translated_file


def methods_cells(tmp_path):
    """A methods cells file (quick, 3 seeds) with known accuracies; DIST and the rest are not run."""
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
    return cells, accs


def test_methods_table_from_known_cells(tmp_path):
    cells, accs = methods_cells(tmp_path)
    pages, raw = reproduce.run_methods(quick=True, seeds=3, cells_path=cells, cached_only=True)
    markdown = pages["en"]
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
    pages, raw = reproduce.run_reproduce(data="mnist", data_dir=mnist_dir, seeds=1, cells_path=cells,
                                         cached_only=True)
    assert_the_same_table_in_chinese(pages, reproduce.machine()["name"])
    assert "在 UCI 的书写者上，蒸馏学生模型的准确率比基线低 1.00 个百分点" in pages["zh"]
    markdown = pages["en"]
    section = markdown[markdown.index("## 5."):]
    assert "the KD student reads 1.00 points less than its baseline and trails its teacher by 2.00." in section
    assert "the KD student reads 5.00 points more than its baseline and trails its teacher by 5.00." in section
    assert not re.search(r"targets? (missed|are met)|\(target \d", markdown, re.I)  # no bookkeeping in the page
    assert "this pass" not in markdown.lower()
    assert "one training seed (seed 0), so no spread is given" in markdown and "over seeds" not in markdown
    assert "| UCI, 43 other writers | 1,797 | 97.00% | 95.00% | 96.00% |" in section
    assert set(raw["robustness"]) == {"lenet5_wide-lenet5", "seed_teacher-seed_student"}
    assert raw["robustness"]["lenet5_wide-lenet5"]["uci"]["accuracy"]["student"] == 0.95


TABLES = ["reproduce.md", "reproduce-mnist.md", "methods.md", "methods-mnist.md"]  # the Reproduction tab's


@pytest.mark.parametrize("name", [*TABLES, "techniques.md", "techniques-mnist.md",
                                  *(translated_file(name, "zh").name for name in TABLES)])
def test_the_committed_tables_read_like_a_results_section(name):
    """What the Reproduction tab shows: no bookkeeping (how long this pass took, cells reused, targets
    met or missed), a header true to its number of seeds, and the machine named where a time is given;
    in Chinese, the English file's numbers in the same order and no English sentence."""
    text = (reproduce.RESULTS_DIR / name).read_text(encoding="utf-8")
    lang = "zh" if name.endswith(".zh.md") else "en"
    said = CATALOGS[lang]
    assert "this pass" not in text.lower() and "came from an earlier" not in text
    assert not re.search(r"targets? (missed|are met)|\(target \d", text, re.I)
    many = re.escape(said["repro.seeds_many"]).replace(r"\{n\}", r"\d+").replace(r"\{last\}", r"\d+")
    assert said["repro.seeds_one"] in text or re.search(many, text)
    assert "over seeds" not in text and "this CPU" not in text
    if said["repro.seed.row.latency"] in text.lower():
        assert re.sub(r".*\{machine\}", "", said["repro.seed.setup"]) in text  # "..., the computer that made this table."
    if lang == "zh":
        english = (reproduce.RESULTS_DIR / name.replace(".zh.md", ".md")).read_text(encoding="utf-8")
        machine = re.search(r"测于 (.+?)（\d+ 核", text)
        assert_the_same_table_in_chinese({"en": english, "zh": text}, machine.group(1) if machine else "")


# ---- the same tables in Chinese ----
NUMBER = re.compile(r"(?<![A-Za-z_\d.,])[-+±−]?\d(?:[\d,]*\d)?(?:\.\d+)?")
WORD = re.compile(r"[A-Za-z][A-Za-z_]*\d*\w*")
# What may stay Latin in a Chinese table: model, method and author names, units, symbols, formulas.
LATIN = re.compile(r"^(?:seed_\w+|mlp_\d+|lenet5\w*|KD|DKD|DIST|LS|Gram|TCKD|NCKD|FitNets|MSE|Adam|KL|T²?|M|z|ms|"
                   r"softmax|logits|dropout|torch|MNIST|mnist|UCI|Hinton|Vinyals|Dean|Zhao|Huang|Sun|Zhang|"
                   r"Furlanello|Pearson|born|again)$")
CJK = re.compile(r"[\u4e00-\u9fff]")


def numbers(text):
    """The numbers of a text as written ("98.25", "+1.24", "2,000", "±0.14"), in their order."""
    return NUMBER.findall(text)


def english_words(markdown, machine=""):
    """Latin words of a Chinese table beyond LATIN: code spans (commands, files, settings' values),
    a link to a file and the computer's name are names, not sentences."""
    text = markdown.replace(machine, " ") if machine else markdown
    text = re.sub(r"\[[^\]]*\]\([^)]*\)", " ", re.sub(r"`[^`]*`", " ", text))
    return sorted({w for w in WORD.findall(text) if not LATIN.match(w)})


def assert_the_same_table_in_chinese(pages, machine=""):
    english, chinese = pages["en"], pages["zh"]
    assert numbers(chinese) == numbers(english)
    assert english_words(chinese, machine) == []
    assert not CJK.search(english) and CJK.search(chinese)
    columns = [[line.count("|") for line in text.splitlines() if line.startswith("|")] for text in (english, chinese)]
    assert columns[0] == columns[1]  # every table keeps its rows and columns


def sample_cells(tmp_path, seeds=2):
    """The sample reproduction's quick cells with known accuracies; the T=20 sweep's last seed is not run."""
    done = {}
    for seed in range(seeds):
        for name, kd, alone in (("seed-table", 0.981, 0.970), ("seed-table-hint", 0.983, 0.970),
                                ("small-data", 0.915, 0.910), ("hinton", 0.972, 0.962), ("sweep-T1", 0.975, 0.970),
                                ("sweep-T20", 0.979, 0.970)):
            if (name, seed) != ("sweep-T20", seeds - 1):
                done[f"sample/quick/e6/{name}/s{seed}"] = {"student_acc": kd + seed / 1000,
                                                           "baseline_acc": alone - seed / 1000, "train_samples": 8000}
    cells = tmp_path / "reproduce.cells.json"
    cells.write_text(json.dumps(done))
    return cells


def test_each_table_is_written_in_chinese_with_the_same_numbers(tmp_path, monkeypatch):
    """One pass writes the English and the Chinese table: the numbers (computed once) are the same,
    in the same order; every sentence, header and comment is Chinese."""
    machine = {"name": "Intel(R) Xeon(R) Processor", "cores": 2, "threads": 2, "load": "1.5"}
    monkeypatch.setattr(reproduce.report, "machine", lambda: machine)  # the seed table reads it there
    monkeypatch.setattr(reproduce.report.inference, "latency_ms",
                        lambda model, *a, **k: (sum(p.numel() for p in model.parameters()) / 1e6, 0.0))
    pages, raw = reproduce.run_reproduce(quick=True, seeds=2, cells_path=sample_cells(tmp_path), cached_only=True)
    assert set(pages) == {"en", "zh"}
    assert_the_same_table_in_chinese(pages, machine["name"])
    english, chinese = pages["en"], pages["zh"]
    assert "mean ± standard deviation over 2 training seeds (0–1)" in english
    assert "2 个训练随机种子（0–1）上的均值 ± 标准差" in chinese
    assert "our gain is 2.60 points below the article's." in english and "我们的增益比原文低 2.60 个百分点。" in chinese
    # T=20's last seed is not run: its row says how many of the table's seeds it has; the teacher, one
    # model, never does
    teacher_row = next(line for line in english.splitlines() if line.startswith("| teacher | seed_teacher"))
    assert "seeds so far" not in teacher_row and english.count("seeds so far") == 2
    assert "| 20 | 97.90 (1 of 2 seeds so far) | 97.00 (1 of 2 seeds so far) | 0.90 |" in english
    assert "| 20 | 97.90（目前完成 1/2 个随机种子） | 97.00（目前完成 1/2 个随机种子） | 0.90 |" in chinese
    assert "**1 cells are not run yet**" in english and "**还有 1 项训练尚未运行**" in chinese
    for heading in ("# 我们的结果与已发表结果对照", "## 1. MNIST 知识蒸馏原文中的表格", "## 4. 温度扫描"):
        assert heading in chinese
    assert raw["sweep"]["20"] == [0.979]

    pages, _ = reproduce.run_methods(quick=True, seeds=3, cells_path=methods_cells(tmp_path)[0], cached_only=True)
    assert_the_same_table_in_chinese(pages)
    assert "在同等条件下明显更好（领先超过跨随机种子的一个标准差）：DKD。" in pages["zh"]
    assert "| 深度监督 | 特征蒸馏文章中的自蒸馏" in pages["zh"] and "| 再生网络 | Furlanello 等 2018（born-again）：" in pages["zh"]


def test_the_generator_writes_a_file_per_language(tmp_path, monkeypatch):
    """`python -m kdapp reproduce --methods --out X.md` writes X.md and X.zh.md (and X.json once)."""
    import argparse
    cells, _ = methods_cells(tmp_path)
    out = tmp_path / "methods.md"  # its cells file is methods.cells.json, the one methods_cells wrote
    args = argparse.Namespace(methods=True, techniques=False, quick=True, seeds=3, data="sample", data_dir="data",
                              fresh=False, cached_only=True, out=str(out))
    reproduce.cmd_reproduce(args)
    assert out.read_text(encoding="utf-8").startswith("# The methods since 2015, side by side")
    assert (tmp_path / "methods.zh.md").read_text(encoding="utf-8").startswith("# 2015 年以来的各种方法对比")
    assert json.loads((tmp_path / "methods.json").read_text())["methods"]["KD"]["student"] == [0.980, 0.978, 0.982]


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


def test_the_hinton_comments_call_a_teacher_weaker_only_beyond_the_sampling_interval():
    """The paper's teacher made 67 errors; one of ours with 68 is within the 95% interval of a count on
    10,000 digits (about 16 errors), one with 100 is not. An averaged teacher's recipe is said as such."""
    from types import SimpleNamespace
    r = SimpleNamespace(n_test=10_000, plan={"hinton_epochs": 40})
    how = {"max_norm": 3.5, "epochs": 40, "trained": 250, "averaged": 40}

    def said(teacher_errors):
        return dict(reproduce._hinton_comments(r, teacher_errors, how, [135, 140, 144], [97, 100, 90]))
    close, far, better = said(68), said(100), said(40)
    assert "within the sampling interval" in close["distilled"] and "fewer errors" not in close["distilled"]
    assert "made fewer errors than the paper's" in better["distilled"]
    assert "made 33 fewer errors per 10,000" in far["distilled"]
    assert "250 epochs" in far["teacher"] and "40 more at a constant rate" in far["teacher"]
    assert "250 epochs" not in close["teacher"]  # within the interval: nothing to explain


def test_the_shift_ensemble_row_is_said_against_the_plain_teacher_on_the_same_seeds():
    """Hand-made error counts: the ensemble row's sentence gives both means and says whether 90 was
    reached; a row short of seeds gives none; the Chinese says the same numbers in the same order."""
    from types import SimpleNamespace
    from kdapp.tools.reproduce.hinton import _shifts_comment
    r = SimpleNamespace(seeds=[0, 1, 2])
    short = _shifts_comment(r, 2, 63, [100, 100, 102], [98, 93, 93])
    assert "25 readings" in short and "94.7 errors on average, against 100.7" in short
    assert "still above the 90 errors" in short
    assert "at or under the 90" in _shifts_comment(r, 2, 63, [100, 100, 102], [88, 90, 89])
    assert _shifts_comment(r, 2, 63, [100, 100, 102], [98]) is None  # 1 seed against 3: nothing said
    with speaking("zh"):
        assert numbers(_shifts_comment(r, 2, 63, [100, 100, 102], [98, 93, 93])) == numbers(short)


def test_the_two_teacher_row_is_said_against_the_first_teachers_shift_ensemble():
    """Hand-made error counts: the two-teacher row's sentence names both teachers' errors, the 50 readings,
    both means and whether 90 was reached; a row short of seeds gives none; the Chinese keeps the numbers' order."""
    from types import SimpleNamespace
    from kdapp.tools.reproduce.hinton import _copies_comment
    r = SimpleNamespace(seeds=[0, 1, 2])
    together = {"teachers": [71], "ensemble": 61, "kd": [93, 88, 92]}
    said = _copies_comment(r, 2, 68, [98, 93, 93], together)
    assert "(71 test errors, the first 68)" in said and "the 2 teachers' 50 readings" in said
    assert "61 test errors" in said and "91.0 errors on average, against 94.7" in said and "still above the 90" in said
    assert "at or under the 90" in _copies_comment(r, 2, 68, [98, 93, 93], dict(together, kd=[88, 90, 89]))
    assert _copies_comment(r, 2, 68, [98, 93, 93], dict(together, kd=[93])) is None
    with speaking("zh"):
        assert numbers(_copies_comment(r, 2, 68, [98, 93, 93], together)) == numbers(said)


def test_the_hinton_temperature_rows_say_a_low_t_helps_only_beyond_the_seeds_spread():
    """Hand-made error counts: T=2 better than T=20 by more than both spreads is said as such, with its
    mean; a difference within the spreads reads as the paper's "about as good"; a T better or worse
    otherwise is named; a row cut short, or one seed, gives no verdict."""
    from types import SimpleNamespace
    r = SimpleNamespace(n_test=10_000, plan={"hinton_epochs": 40}, seeds=[0, 1, 2])
    r.fewer_seeds = lambda values: reproduce.Reproduction.fewer_seeds(r, values)
    low = "\n".join(reproduce._hinton_temperatures(r, {2: [89, 90, 91], 8: [102, 100, 104], 20: [100, 100, 102]}))
    assert "| 2 | 90.0 ± 1.0 |" in low and "| 20 | 100.7 ± 1.2 |" in low
    assert "T=2 does best: 90.0 errors against 100.7 at T=20" in low
    alike = "\n".join(reproduce._hinton_temperatures(r, {2: [95, 101, 99], 20: [100, 100, 102]}))
    assert "better or worse than T=20 by more than the seeds' spread" in alike and "does best" not in alike
    cut = "\n".join(reproduce._hinton_temperatures(r, {2: [89], 20: [100, 100, 102]}))
    assert "| 2 | 89 (1 of 3 seeds so far) |" in cut and "does best" not in cut and "spread" not in cut
    worse = "\n".join(reproduce._hinton_temperatures(r, {2: [120, 121, 119], 20: [100, 100, 102]}))
    assert "T = –; worse: T = 2." in worse and "matters little" not in worse
    eight = "\n".join(reproduce._hinton_temperatures(r, {2: [99, 101, 100], 8: [90, 91, 89], 20: [100, 100, 102]}))
    assert "by more than the seeds' spread: T = 8; worse: T = –." in eight and "does best" not in eight
    one = SimpleNamespace(n_test=10_000, plan={"hinton_epochs": 40}, seeds=[0])
    one.fewer_seeds = lambda values: ""
    assert "does best" not in "\n".join(reproduce._hinton_temperatures(one, {2: [80], 20: [100]}))
    assert reproduce._hinton_temperatures(r, {}) == []
    for case in ({2: [89, 90, 91], 20: [100, 100, 102]}, {2: [95, 101, 99], 20: [100, 100, 102]},
                 {2: [120, 121, 119], 20: [100, 100, 102]}):  # the Chinese says the same numbers in the same order
        english = "\n".join(reproduce._hinton_temperatures(r, case))
        with speaking("zh"):
            assert numbers("\n".join(reproduce._hinton_temperatures(r, case))) == numbers(english)
