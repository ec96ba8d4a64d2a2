"""The reproduction report (results/reproduce.md, reproduce-mnist.md): the seed article's table, its
small-data claim, Hinton et al. (2015) (`hinton.py`), a temperature sweep and, on full MNIST, whether KD
carries robustness to other writers. Each section is a function that trains (or reads) its cells and
returns its words as a function, so each language is written from the same numbers."""
import json
import statistics
import time
from pathlib import Path

from kdapp import checkpoints, data as data_lib
from kdapp.evaluation import inference, robustness
from kdapp.models import build, count_parameters
from kdapp.training import teachers
from kdapp.tools.reproduce.common import (
    FULL, MNIST, QUICK, RESULTS_DIR, SEED_CLAIMS, SEED_LATENCY_MS, SEED_SMALL_DATA_GAIN, SMALL_FRACTION, Cells,
    Reproduction, accuracies, _say, comments, default_out, in_every_language, interval, machine, machine_note, mean_std,
    reproduction_teacher, seeds_phrase, teacher_note, versus)
from kdapp.tools.reproduce.hinton import section_hinton
from kdapp.ui.i18n import _
from kdapp.ui.sentences import known


SEED_RECIPE = dict(lr=0.005, batch_size=128)  # the seed table's KD recipe, on top of T=4, alpha=0.7


def section_seed_table(r, teacher, teacher_how, key):
    """1. The MNIST seed article's table: teacher, student alone, distilled, distilled + features."""
    kd, alone, _n = r.students("seed-table", teacher, key, epochs=r.plan["epochs"], **SEED_RECIPE)
    feat = []
    for seed in r.seeds[:r.plan["feature_seeds"]]:
        cell = r.cells(r.cell_name("seed-table-hint", seed), lambda: accuracies(
            teacher, key, r.dataset, seed, epochs=r.plan["epochs"], feature_loss="hint", feature_weight=1.0,
            baseline=False, **SEED_RECIPE))
        if cell is not None:
            feat.append(cell["student_acc"])
    teacher_acc = teachers.evaluate(teacher, r.dataset.test_x, r.dataset.test_y)
    latency = {"teacher": inference.latency_ms(teacher.cpu())[0],
               "student": inference.latency_ms(build("seed_student").eval())[0]}
    computer = machine()
    rows = [("teacher", "seed_teacher", [teacher_acc], latency["teacher"]),
            ("alone", "seed_student", alone, latency["student"]),
            ("distilled", "seed_student", kd, latency["student"]),
            ("features", "seed_student", feat, latency["student"])]
    mean = lambda accs: 100 * statistics.mean(accs) if accs else None  # noqa: E731

    def text():
        row = {role: _(f"repro.seed.row.{role}") for role in (*SEED_CLAIMS, "latency")}
        lines = [_("repro.seed_table").format(n=1) + "\n",
                 _("repro.seed.setup").format(
                     teacher=teacher_note(teacher_how), epochs=r.plan["epochs"], machine=machine_note(computer),
                     feature_seeds="" if len(feat) == len(r.seeds) else _("repro.seed.feature_one_seed")) + "\n",
                 _("repro.seed.header"), "|---|---|---:|---:|---:|---:|---:|"]
        expected = {"teacher": 1, "features": min(r.plan["feature_seeds"], len(r.seeds))}  # the others: every seed
        for role, arch, accs, ms in rows:
            shown = r.seeded(accs, expected.get(role))
            lines.append(f"| {row[role]} | {arch} | {count_parameters(arch):,} | {shown} | {SEED_CLAIMS[role]} | "
                         f"{ms:.2f} ms | {SEED_LATENCY_MS[role]} ms |")
        lines.append("\n" + _("repro.seed.gain").format(gain=mean_std([a - b for a, b in zip(kd, alone)])))
        schedule = _("repro.seed.schedule")
        lines += comments([
            (row["teacher"], versus(mean([teacher_acc]), SEED_CLAIMS["teacher"], r.n_test,
                                    _("repro.seed.teacher_why"))),
            (row["alone"], versus(mean(alone), SEED_CLAIMS["alone"], r.n_test, schedule)),
            (row["distilled"], versus(mean(kd), SEED_CLAIMS["distilled"], r.n_test, schedule)),
            (row["features"], versus(mean(feat), SEED_CLAIMS["features"], r.n_test,
                                     _("repro.seed.features_why").format(gain=f"{mean(feat) - mean(kd):+.2f}")
                                     if feat and kd else schedule)),
            (row["latency"], _("repro.seed.latency").format(
                ours=f"{latency['teacher'] / latency['student']:.1f}",
                theirs=f"{SEED_LATENCY_MS['teacher'] / SEED_LATENCY_MS['alone']:.1f}"))])
        return "\n".join(lines)
    return text, {"seed_kd": kd, "seed_alone": alone, "seed_features": feat}


def section_small_data(r, teacher, key):
    """2. The seed article's small-data claim: 10% of the training set."""
    # The same number of steps as the full-data runs: 10x the epochs on a tenth of the data.
    small_epochs = min(100, round(r.plan["epochs"] / SMALL_FRACTION))
    kd, alone, n = r.students("small-data", teacher, key, epochs=small_epochs, train_fraction=SMALL_FRACTION,
                              **SEED_RECIPE)
    n = n or round(SMALL_FRACTION * len(r.dataset.train_y))

    def text():
        return "\n".join([
            _("repro.small_data").format(n=2) + "\n",
            _("repro.small.setup").format(n=f"{n:,}", epochs=small_epochs) + "\n",
            _("repro.small.header"), "|---|---:|---:|---:|---:|",
            f"| {_('repro.small.row')} | {r.seeded(kd)} | {r.seeded(alone)} | "
            f"{mean_std([a - b for a, b in zip(kd, alone)])} | +{SEED_SMALL_DATA_GAIN} |",
            *comments([(_("repro.small.row"), _small_data_comment(kd, alone, r.n_test))])])
    return text, {"small_kd": kd, "small_alone": alone}


def _small_data_comment(kd, alone, n_test):
    """The small-data gain against the article's +3.2 points."""
    if not kd:
        return None
    gain = 100 * statistics.mean(a - b for a, b in zip(kd, alone))
    half = (interval(statistics.mean(kd), n_test) ** 2 + interval(statistics.mean(alone), n_test) ** 2) ** 0.5
    if abs(gain - SEED_SMALL_DATA_GAIN) <= half:
        return _("repro.small.within").format(half=f"{half:.2f}")
    return _("repro.small.below" if gain < SEED_SMALL_DATA_GAIN else "repro.small.above").format(
        diff=f"{abs(gain - SEED_SMALL_DATA_GAIN):.2f}", default_run=_default_run_gains())


def _default_run_gains():
    """The lab's default run's measured gains (results/default-run.json), as a sentence, if measured."""
    path = RESULTS_DIR / "default-run.json"
    if not path.is_file():
        return ""
    gains = [run["gain_pts"] for run in json.loads(path.read_text(encoding="utf-8"))["runs"]]
    return _("repro.small.default_run").format(low=f"{min(gains):+.2f}", high=f"{max(gains):+.2f}", n=len(gains))


def section_sweep(r, teacher, key):
    """4. A temperature sweep of the seed table's recipe. The student alone does not depend on T
    (the same initial weights, the same batches, the labels only), so every row's is the seed
    table's and the sweep's own cells train the KD student alone."""
    sweep, rows = {}, []
    for T in r.plan["sweep"]:
        # T=4 is the seed table's setting: the same cells, trained once (section 1 trained them).
        name = "seed-table" if T == 4 else f"sweep-T{T}"
        r.students(name, teacher, key, temperature=float(T), epochs=r.plan["epochs"], baseline=T == 4, **SEED_RECIPE)
        pairs = [(cell["student_acc"], base["baseline_acc"]) for seed in r.seeds
                 if (cell := r.cells.done.get(r.cell_name(name, seed)))
                 and (base := r.cells.done.get(r.cell_name("seed-table", seed)))]  # seed by seed
        kd, alone = [k for k, _b in pairs], [b for _k, b in pairs]
        sweep[str(T)] = kd
        rows.append((T, kd, alone))

    def text():
        return "\n".join([_("repro.sweep").format(n=4, pair="seed_teacher → seed_student, α=0.7") + "\n",
                          _("repro.sweep.header"), "|---:|---:|---:|---:|",
                          *(f"| {T} | {r.seeded(kd)} | {r.seeded(alone)} | {mean_std([a - b for a, b in zip(kd, alone)])} |"
                            for T, kd, alone in rows)])
    return text, {"sweep": sweep}


def section_robustness(r, data_dir):
    """5. On full MNIST: does KD carry robustness to other writers? (the drawing models' trios)"""
    robust, trios = {}, []
    for label, roles in (("shipped", checkpoints.SHIPPED_DRAWING), ("articles", checkpoints.ARTICLES_DRAWING)):
        trio = f"{roles['teacher'][0]}-{roles['student'][0]}"
        paths = checkpoints.shipped_drawing_paths(roles=roles)
        report = "no checkpoints"
        if set(paths) == set(roles) and all(Path(p).is_file() for p in paths.values()):
            # A reshipped checkpoint is a new cell: the name carries the files' fingerprint.
            report = r.cells(f"mnist/robustness/{trio}/{checkpoints.fingerprint(paths.values())}",
                             lambda: robustness.evaluate(robustness.shipped_models(roles), data_dir=data_dir,
                                                         trained_on=("mnist",)))
        if isinstance(report, dict):
            robust[trio] = report
        trios.append((label, roles, report))

    def text():
        lines = [_("repro.robustness").format(n=5) + "\n", _("repro.robust.setup") + "\n"]
        words = {name: _(f"repro.robust.table.{name}") for name in robustness.TABLE_WORDS}
        for label, roles, report in trios:
            lines.append(_("repro.robust.trio").format(teacher=roles["teacher"][0], student=roles["student"][0],
                                                       label=_(f"repro.robust.{label}")) + "\n")
            if report == "no checkpoints":
                lines.append(_("repro.robust.no_checkpoints") + "\n")
                continue
            if report is None:
                lines.append(_("repro.not_run") + "\n")
                continue
            uci = report["uci"]["accuracy"]
            gain = 100 * (uci["student"] - uci["baseline"])
            lines.append(robustness.table(report, words))
            lines.append("\n" + _("repro.robust.more" if gain >= 0 else "repro.robust.less").format(
                gain=f"{abs(gain):.2f}", trail=f"{100 * (uci['teacher'] - uci['student']):.2f}") + "\n")
        if robust:  # the sampling error of one accuracy on n digits, at 95%
            n = next(iter(robust.values()))["uci"]["n"]
            lines.append(_("repro.robust.interval").format(n=f"{n:,}", half=f"{196 * (0.95 * 0.05 / n) ** 0.5:.1f}"))
        return "\n".join(lines)
    return text, {"robustness": robust}


def run_reproduce(quick=False, seeds=None, data="sample", data_dir="data", cells_path=None, fresh=False,
                  cached_only=False):
    """The whole report: ({lang: markdown}, raw numbers). Each section is its own function (section_*)."""
    if data == "mnist":
        plan = dict(MNIST, seeds=seeds or MNIST["seeds"])
    else:
        plan = dict(QUICK if quick else FULL)
        plan["seeds"] = seeds or plan["seeds"]
        plan["feature_seeds"] = plan["seeds"]
    started = time.monotonic()
    dataset = data_lib.load(data, data_dir)
    r = Reproduction(dataset, plan, Cells(cells_path or default_out(data).with_suffix(".cells.json"), fresh,
                                          cached_only), quick)
    counts = dataset.source == "mnist"  # on the published test set, errors are counted as published
    mode = "full MNIST" if counts else "quick" if quick else "full"
    command = "python -m kdapp reproduce" + (" --data mnist" if counts else "") + (" --quick" if quick else "")

    def introduction():
        return _("repro.title") + "\n\n" + _("repro.intro_counts" if counts else "repro.intro").format(
            data=known(dataset.describe()), epochs=plan["epochs"], seeds=seeds_phrase(len(r.seeds)), command=command)
    sections = [introduction] + ([] if counts else [lambda: _("repro.sample_note")])
    teacher, teacher_how = reproduction_teacher("seed_teacher", dataset, plan)
    key = ("reproduce", "seed_teacher", id(teacher))
    raw = {}
    for text, numbers in (section_seed_table(r, teacher, teacher_how, key), section_small_data(r, teacher, key),
                          section_hinton(r), section_sweep(r, teacher, key),
                          *((section_robustness(r, data_dir),) if counts else ())):
        sections.append(text)
        raw.update(numbers)
    raw.setdefault("robustness", {})
    seconds = time.monotonic() - started
    resumed = f"; {r.cells.reused} of its cells came from an earlier, interrupted or shorter run" \
        if r.cells.reused else ""
    if r.cells.missing:
        sections.append(lambda: _("repro.missing_cells").format(n=r.cells.missing, command=command))
    _say(f"this pass: {seconds / 60:.1f} minutes on this machine ({mode} mode){resumed}")  # bookkeeping: not in the page
    return in_every_language(sections), {"seconds": seconds, "data": dataset.source, "quick": quick,
                                         "seeds": len(r.seeds), "reused_cells": r.cells.reused, **raw}
