"""python -m kdapp reproduce: our own numbers beside the published ones, whatever they show.

Regenerates markdown tables: the MNIST seed article's table, its small-data claim, Hinton et al.
(2015)'s MNIST setup, a temperature sweep and, on full MNIST, whether KD carries robustness to
other writers (the shipped drawing models and the articles' pair, on redrawn UCI digits).

- `--data sample` (results/reproduce.md): the bundled 8,000 / 2,000 sample, 3 seeds; --quick: 1 seed,
  few epochs. Both use the shipped teachers (trained by the plan's recipe; one is trained here only
  if its checkpoint is missing).
- `--data mnist` (results/reproduce-mnist.md): full MNIST, 60,000 / 10,000, the published numbers'
  own test set, with test errors as counts. The teachers are the shipped full-MNIST checkpoints
  (their recipes are in results/README.md); training them again here would cost most of an hour.

`--methods` (results/methods.md, or methods-mnist.md with `--data mnist`) compares the methods
since 2015 on one footing: the shipped teacher for that data, the seed table's recipe, 3 seeds.

Every finished cell (one model trained for one seed) is cached in a JSON file beside the output,
so an interrupted reproduction goes on where it stopped; `--fresh` starts over.
"""
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from kdapp import checkpoints, data as data_lib
from kdapp.evaluation import inference, robustness
from kdapp.training import teachers, train
from kdapp.checkpoints import atomic_write
from kdapp.config import RunConfig
from kdapp.models import build, count_parameters

RESULTS_DIR = Path(__file__).resolve().parents[2] / "results"

# Published numbers, as printed.
SEED_CLAIMS = {"teacher": 99.2, "alone": 98.1, "distilled": 98.7, "distilled + features": 98.9}
SEED_LATENCY_MS = {"teacher": 12.5, "alone": 4.2, "distilled": 4.2, "distilled + features": 4.2}
SEED_SMALL_DATA_GAIN = 3.2
HINTON_ERRORS = {"teacher (mlp_1200, dropout, jitter)": 67, "student alone (mlp_800)": 146,
                 "student distilled, T=20 (mlp_800)": 74}

FULL = dict(seeds=3, epochs=30, teacher_epochs={"seed_teacher": 40, "mlp_1200": 30},
            sweep=(1, 2, 4, 8, 20), hinton_epochs=30)
QUICK = dict(seeds=1, epochs=6, teacher_epochs={"seed_teacher": 6, "mlp_1200": 6},
             sweep=(1, 4, 20), hinton_epochs=6)
# Full MNIST: 10 epochs of 60,000 digits are 2.5x the steps of 30 epochs of the sample. The
# feature-distillation cell runs the teacher on every batch (4x the cost), so it gets one seed.
MNIST = dict(seeds=3, epochs=10, sweep=(1, 2, 4, 8, 20), hinton_epochs=10, feature_seeds=1)
SMALL_FRACTION = 0.1
NOT_RUN = "not run yet"


def _say(*args):
    print(*args, file=sys.stderr, flush=True)


def reproduction_teacher(arch, dataset, plan, quick):
    """The shipped teacher for this data (its recipe is the plan's: results/README.md); one is
    trained from scratch only where none is shipped (the sample's full mode)."""
    shipped = checkpoints.teacher_path(checkpoints.SHIPPED_DIR, arch, dataset.source)
    if shipped.is_file():
        model, meta = checkpoints.load(shipped)
        if meta.get("data") != dataset.source:
            raise RuntimeError(f"{shipped} records data {meta.get('data')!r}, not {dataset.source!r}")
        recipe = meta.get("config", {})
        how = f"{recipe.get('epochs', '?')} epochs, augmentation {recipe.get('augment', '?')}"
        return model, f"shipped checkpoint {shipped.name} ({how}; {meta['metrics'].get('test_acc', 0):.2%})"
    if dataset.source == "mnist":
        raise RuntimeError(f"no shipped full-MNIST {arch} teacher ({shipped}); train one with "
                           f"python -m kdapp train-teacher --teacher {arch} --data mnist --out checkpoints/")
    epochs = plan["teacher_epochs"][arch]
    _say(f"training teacher {arch} for {epochs} epochs ...")
    start = time.monotonic()
    model, acc = train.train_teacher(arch, dataset, epochs, batch_size=128)
    return model, f"trained here: {epochs} epochs, ±2 px shifts, {time.monotonic() - start:.0f} s"


class Cells:
    """Finished cells, {name: metrics}, kept in a JSON file that is rewritten (atomically) after
    each cell: an interrupted reproduction resumes at the first unfinished one."""

    def __init__(self, path, fresh=False, cached_only=False):
        self.path, self.cached_only = Path(path), cached_only
        self.done = {}
        if self.path.is_file() and not fresh:
            try:
                self.done = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                _say(f"{self.path} is unreadable; starting over")
        self.reused = self.missing = 0

    def __call__(self, name, compute):
        if name in self.done:
            self.reused += 1
            return self.done[name]
        if self.cached_only:
            self.missing += 1
            return None
        _say(f"{name} ...")
        self.done[name] = compute()
        atomic_write(self.path, lambda f: f.write(json.dumps(self.done, indent=1).encode()))
        return self.done[name]


# The published recipes train on every digit as it is: no shifts and all the labels, whatever the
# app's default run uses (10% of the labels since the lessons; the cells before then were made so too).
PUBLISHED_RECIPE = dict(augment=False, train_fraction=1.0)


def distill_cell(teacher, key, dataset, seed, **settings):
    config = RunConfig(data=dataset.source, seed=seed, **{**PUBLISHED_RECIPE, **settings})
    return train.distill(config, [teacher], dataset, teacher_keys=[key])


def accuracies(teacher, key, dataset, seed, **settings):
    """One cell: a KD student (and its baseline) trained, as plain numbers."""
    return _cell(distill_cell(teacher, key, dataset, seed, **settings).metrics)


def _cell(metrics):
    return {k: metrics[k] for k in ("student_acc", "baseline_acc", "train_samples")}


def mean_std(values, scale=100.0, digits=2):
    if not values:
        return NOT_RUN
    values = [scale * v for v in values]
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def errors(values):
    """Error counts over seeds as text: one count, or mean ± std."""
    if not values:
        return NOT_RUN
    return f"{values[0]}" if len(values) == 1 else f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def machine():
    """The computer a time was measured on, in words: the CPU's model, its cores and torch's threads."""
    name = platform.processor() or platform.machine()
    try:
        name = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    threads = torch.get_num_threads()
    return (f"{name} ({os.cpu_count()} cores, {threads} torch thread{'s' if threads > 1 else ''}, load average "
            f"{os.getloadavg()[0]:.1f} while it ran)")


def seeds_phrase(n):
    """How a table's numbers were aggregated, true to its number of seeds."""
    return "one training seed (seed 0), so no spread is given" if n == 1 else \
        f"mean ± standard deviation over {n} training seeds (0–{n - 1})"


def interval(p, n):
    """Half-width, in points, of the 95% sampling interval of one accuracy p (0..1) measured on n digits."""
    return 196 * (p * (1 - p) / n) ** 0.5


def versus(ours, published, n, why):
    """One sentence on a row whose number differs from the published one: by how much, and `why`;
    or that the difference is within the sampling interval of ours (None: nothing to say)."""
    if ours is None:
        return None
    half = interval(ours / 100, n)
    diff = ours - published
    if abs(diff) <= half:
        return f"{diff:+.2f} points, inside the ±{half:.2f} sampling interval of one accuracy on {n:,} digits."
    return f"{diff:+.2f} points, outside the ±{half:.2f} sampling interval: {why}"


def comments(rows):
    """'Where ours differs' as a list, one line per (row name, sentence or None)."""
    lines = [f"- **{name}**: {text}" for name, text in rows if text]
    return ["", "Where ours differs from the published number:", "", *lines] if lines else []


@dataclass
class Reproduction:
    """What every section of one reproduction shares: the data, the plan, the cell cache and how
    numbers are written (accuracies, with error counts on full MNIST's published test set)."""
    dataset: object
    plan: dict
    cells: Cells
    quick: bool

    @property
    def prefix(self):
        return f"{self.dataset.source}/{'quick' if self.quick else 'full'}/e{self.plan['epochs']}"

    @property
    def seeds(self):
        return list(range(self.plan["seeds"]))

    @property
    def n_test(self):
        return len(self.dataset.test_y)

    def acc(self, values):
        """Accuracies (0..1) over seeds as text; with errors out of the test set on full MNIST."""
        text = mean_std(values)
        if self.dataset.source == "mnist" and values:
            errors = [round((1 - v) * self.n_test) for v in values]
            text += f" ({errors[0] if len(errors) == 1 else f'{statistics.mean(errors):.1f}'} errors)"
        return text

    def students(self, name, teacher, key, **settings):
        """(KD students' accuracies, baselines' accuracies, training digits) over the seeds for one
        cell family; a cell not run yet (cached_only) is left out."""
        kd, alone, n = [], [], None
        for seed in self.seeds:
            cell = self.cells(f"{self.prefix}/{name}/s{seed}", lambda: accuracies(teacher, key, self.dataset, seed,
                                                                                **settings))
            if cell is not None:
                kd.append(cell["student_acc"])
                alone.append(cell["baseline_acc"])
                n = cell["train_samples"]
        return kd, alone, n


SEED_RECIPE = dict(lr=0.005, batch_size=128)  # the seed table's KD recipe, on top of T=4, alpha=0.7


def section_seed_table(r, teacher, teacher_note, key):
    """1. The MNIST seed article's table: teacher, student alone, distilled, distilled + features."""
    kd, alone, _ = r.students("seed-table", teacher, key, epochs=r.plan["epochs"], **SEED_RECIPE)
    feat = []
    for seed in r.seeds[:r.plan["feature_seeds"]]:
        cell = r.cells(f"{r.prefix}/seed-table-hint/s{seed}", lambda: accuracies(
            teacher, key, r.dataset, seed, epochs=r.plan["epochs"], feature_loss="hint", feature_weight=1.0,
            baseline=False, **SEED_RECIPE))
        if cell is not None:
            feat.append(cell["student_acc"])
    teacher_acc = teachers.evaluate(teacher, r.dataset.test_x, r.dataset.test_y)
    latency = {"teacher": inference.latency_ms(teacher.cpu())[0],
               "student": inference.latency_ms(build("seed_student").eval())[0]}
    rows = [("teacher", "seed_teacher", [teacher_acc], latency["teacher"]),
            ("alone", "seed_student", alone, latency["student"]),
            ("distilled", "seed_student", kd, latency["student"]),
            ("distilled + features", "seed_student", feat, latency["student"])]
    feature_seeds = "" if len(feat) == len(r.seeds) else " (1 seed: the teacher runs on every batch)"
    lines = ["## 1. The MNIST seed article's table\n",
             f"Teacher: {teacher_note}. KD: T=4, α=0.7, {r.plan['epochs']} epochs, Adam 0.005 cosine, batch 128. "
             "Features: the same, plus a FitNets hint (MSE through a 1×1-conv adapter) from the student's conv "
             f"map to the teacher's second conv map, weight 1{feature_seeds}. "
             f"Latency: the median of 200 batch-1 calls on {machine()}, the computer that made this table.\n",
             "| model | architecture | parameters | ours: accuracy | article: accuracy | ours: latency | article: latency |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, arch, accs, ms in rows:
        lines.append(f"| {name} | {arch} | {count_parameters(arch):,} | {r.acc(accs)} | {SEED_CLAIMS[name]} | "
                     f"{ms:.2f} ms | {SEED_LATENCY_MS[name]} ms |")
    lines.append(f"\nKD gain over the student alone: **{mean_std([a - b for a, b in zip(kd, alone)])} points** "
                 "(article: +0.6). The article's student has \"0.3M\" parameters; its code, shape bug fixed, "
                 "has 173,930.")
    mean = lambda accs: 100 * statistics.mean(accs) if accs else None  # noqa: E731
    schedule = ("ours learns with Adam from 0.005, decayed to 0 by a cosine; the article's code keeps Adam at "
                "0.001. Both students share it, so the gain between them is the number to compare.")
    lines += comments([
        ("teacher", versus(mean([teacher_acc]), SEED_CLAIMS["teacher"], r.n_test,
                           "the article prints no recipe for its teacher; ours is described above.")),
        ("alone", versus(mean(alone), SEED_CLAIMS["alone"], r.n_test, schedule)),
        ("distilled", versus(mean(kd), SEED_CLAIMS["distilled"], r.n_test, schedule)),
        ("distilled + features", versus(mean(feat), SEED_CLAIMS["distilled + features"], r.n_test,
                                        f"the hint adds {mean(feat) - mean(kd):+.2f} points over logit KD here "
                                        "(the article: +0.2)." if feat and kd else schedule)),
        ("latency", f"the article names neither its hardware nor how it timed, so only ratios carry over: "
                    f"teacher / student is {latency['teacher'] / latency['student']:.1f}× here and "
                    f"{SEED_LATENCY_MS['teacher'] / SEED_LATENCY_MS['alone']:.1f}× in the article.")])
    return "\n".join(lines), {"seed_kd": kd, "seed_alone": alone, "seed_features": feat}


def section_small_data(r, teacher, key):
    """2. The seed article's small-data claim: 10% of the training set."""
    # The same number of steps as the full-data runs: 10x the epochs on a tenth of the data.
    small_epochs = min(100, round(r.plan["epochs"] / SMALL_FRACTION))
    kd, alone, n = r.students("small-data", teacher, key, epochs=small_epochs, train_fraction=SMALL_FRACTION,
                              **SEED_RECIPE)
    n = n or round(SMALL_FRACTION * len(r.dataset.train_y))
    return "\n".join([
        "## 2. Small data: 10% of the training set\n",
        f"{n:,} training digits, same teacher and settings as above, trained for the same number of "
        f"steps as the full-data runs ({small_epochs} epochs).\n",
        "| | distilled | alone | KD gain (points) | article's gain |", "|---|---:|---:|---:|---:|",
        f"| 10% data | {r.acc(kd)} | {r.acc(alone)} | "
        f"{mean_std([a - b for a, b in zip(kd, alone)])} | +{SEED_SMALL_DATA_GAIN} |",
        *comments([("10% data", _small_data_comment(kd, alone, r.n_test))])]), \
        {"small_kd": kd, "small_alone": alone}


def _small_data_comment(kd, alone, n_test):
    """The small-data gain against the article's +3.2 points."""
    if not kd:
        return None
    gain = 100 * statistics.mean(a - b for a, b in zip(kd, alone))
    half = (interval(statistics.mean(kd), n_test) ** 2 + interval(statistics.mean(alone), n_test) ** 2) ** 0.5
    if abs(gain - SEED_SMALL_DATA_GAIN) <= half:
        return f"the gain is within ±{half:.2f} points (the two accuracies' sampling intervals) of the article's."
    return (f"our gain is {abs(gain - SEED_SMALL_DATA_GAIN):.2f} points {'below' if gain < SEED_SMALL_DATA_GAIN else 'above'} "
            "the article's. The article says neither how long its 10% runs trained nor which 10% it kept; ours "
            "train for as many steps as the full-data runs, with the learning rate decayed to 0." + _default_run_gains())


def _default_run_gains():
    """The lab's default run's measured gains (results/default-run.json), as a sentence, if measured."""
    path = RESULTS_DIR / "default-run.json"
    if not path.is_file():
        return ""
    gains = [run["gain_pts"] for run in json.loads(path.read_text(encoding="utf-8"))["runs"]]
    return (f" The lab's default run (10% of the 8,000-digit sample, no shifts, 40 epochs) gained "
            f"{min(gains):+.2f} to {max(gains):+.2f} points over {len(gains)} seeds (results/default-run.json).")


def section_hinton(r):
    """3. Hinton, Vinyals & Dean (2015)'s MNIST setup, in error counts as the paper gives them."""
    big, big_note = reproduction_teacher("mlp_1200", r.dataset, r.plan, r.quick)
    big_errors = round((1 - teachers.evaluate(big, r.dataset.test_x, r.dataset.test_y)) * r.n_test)
    kd, alone, _ = r.students("hinton", big, ("reproduce", "mlp_1200", id(big)), student="mlp_800",
                              temperature=20.0, alpha=0.9, epochs=r.plan["hinton_epochs"], lr=0.001, batch_size=128)
    kd_errors, alone_errors = ([round((1 - a) * r.n_test) for a in accs] for accs in (kd, alone))

    def rate(values):
        return f"{100 * statistics.mean(values) / r.n_test:.2f}%" if values else NOT_RUN
    ours = {"teacher (mlp_1200, dropout, jitter)": (big_errors, f"{100 * big_errors / r.n_test:.2f}%"),
            "student alone (mlp_800)": (errors(alone_errors), rate(alone_errors)),
            "student distilled, T=20 (mlp_800)": (errors(kd_errors), rate(kd_errors))}
    return "\n".join([
        "## 3. Hinton, Vinyals & Dean (2015), MNIST\n",
        f"Teacher mlp_1200 (784-1200-1200-10, dropout 0.5, ±2 px jitter): {big_note}. Student mlp_800 "
        f"(784-800-800-10), no dropout, no jitter, alone and distilled at T=20 (α=0.9 on the soft term), "
        f"{r.plan['hinton_epochs']} epochs. Test **errors as counts**: ours out of {r.n_test:,}, the paper's out "
        "of 10,000.\n",
        f"| model | ours: errors / {r.n_test:,} | ours: error rate | paper: errors / 10,000 |", "|---|---:|---:|---:|",
        *(f"| {row} | {ours[row][0]} | {ours[row][1]} | {paper} |" for row, paper in HINTON_ERRORS.items()),
        *comments(_hinton_comments(r, big_errors, big_note, alone_errors, kd_errors))]), \
        {"hinton_teacher_errors": big_errors, "hinton_kd_errors": kd_errors, "hinton_alone_errors": alone_errors}


def _hinton_comments(r, big_errors, big_note, alone_errors, kd_errors):
    """(row, sentence) for each Hinton row against the paper's error rate, on our test set's size."""
    acc = lambda errors: 100 - 100 * statistics.mean(errors) / r.n_test if errors else None  # noqa: E731
    paper = {row: 100 - errors / 100 for row, errors in HINTON_ERRORS.items()}
    teacher, alone, distilled = HINTON_ERRORS
    taken = f"{statistics.mean(alone_errors) - statistics.mean(kd_errors):.0f}" if kd_errors and alone_errors else "?"
    return [
        (teacher, versus(acc([big_errors]), paper[teacher], r.n_test,
                         f"the paper's teacher trained far longer, with dropout on the inputs too and a max-norm "
                         f"limit on each unit's weights (Hinton et al. 2012); ours: {big_note}.")),
        (alone, versus(acc(alone_errors), paper[alone], r.n_test,
                       f"ours trains {r.plan['hinton_epochs']} epochs with Adam; the paper gives no schedule.")),
        (distilled, versus(acc(kd_errors), paper[distilled], r.n_test,
                           f"KD took {taken} errors off our student alone, the paper's 72, but the paper's teacher "
                           f"made {big_errors * 10_000 / r.n_test - HINTON_ERRORS[teacher]:.0f} fewer errors per "
                           "10,000 than ours: a student distilled from a weaker teacher inherits its mistakes."))]


def section_sweep(r, teacher, key):
    """4. A temperature sweep of the seed table's recipe."""
    lines = ["## 4. Temperature sweep: seed_teacher → seed_student, α=0.7\n",
             "| T | distilled | alone (same batches) | KD gain (points) |", "|---:|---:|---:|---:|"]
    sweep = {}
    for T in r.plan["sweep"]:
        # T=4 is the seed table's setting: the same cells, trained once.
        kd, alone, _ = r.students("seed-table" if T == 4 else f"sweep-T{T}", teacher, key, temperature=float(T),
                                  epochs=r.plan["epochs"], **SEED_RECIPE)
        sweep[str(T)] = kd
        lines.append(f"| {T} | {r.acc(kd)} | {r.acc(alone)} | {mean_std([a - b for a, b in zip(kd, alone)])} |")
    return "\n".join(lines), {"sweep": sweep}


def section_robustness(r, data_dir):
    """5. On full MNIST: does KD carry robustness to other writers? (the drawing models' trios)"""
    lines = ["## 5. Does KD carry robustness to other writers?\n",
             "Full-MNIST drawing models, each trio trained with the same recipe: a pen-augmented teacher, "
             "a KD student taught consistently (the teacher reads the student's augmented batch) and a "
             "baseline trained on the same augmented batches without the teacher. They read digits redrawn "
             "on the 280×280 canvas at random size, position, stroke width and slant, through the app's "
             "preprocessing (`python -m kdapp robustness`). UCI's digits come from 43 writers who are not "
             "MNIST's and are used only to evaluate.\n"]
    robust = {}
    for label, roles in (("shipped", checkpoints.SHIPPED_DRAWING),
                         ("the articles' pair", checkpoints.ARTICLES_DRAWING)):
        trio = f"{roles['teacher'][0]}-{roles['student'][0]}"
        lines.append(f"**{roles['teacher'][0]} → {roles['student'][0]}** ({label}):\n")
        paths = checkpoints.shipped_drawing_paths(roles=roles)
        if set(paths) != set(roles) or not all(Path(p).is_file() for p in paths.values()):
            lines.append("Its full-MNIST checkpoints are not in checkpoints/ "
                         "(`scripts/train_checkpoints.sh` trains them).\n")
            continue
        # A reshipped checkpoint is a new cell: the name carries the files' fingerprint.
        report = r.cells(f"mnist/robustness/{trio}/{checkpoints.fingerprint(paths.values())}",
                         lambda: robustness.evaluate(robustness.shipped_models(roles), data_dir=data_dir,
                                                     trained_on=("mnist",)))
        if report is None:
            lines.append(NOT_RUN + "\n")
            continue
        robust[trio] = report
        uci = report["uci"]["accuracy"]
        gain = 100 * (uci["student"] - uci["baseline"])
        lines.append(robustness.table(report))
        lines.append(f"\nOn UCI's writers the KD student reads {abs(gain):.2f} points "
                     f"{'more' if gain >= 0 else 'less'} than its baseline and trails its teacher by "
                     f"{100 * (uci['teacher'] - uci['student']):.2f}.\n")
    if robust:  # the sampling error of one accuracy on n digits, at 95%
        n = next(iter(robust.values()))["uci"]["n"]
        lines.append(f"One trained seed per trio. One accuracy near 95% on {n:,} digits has a 95% sampling "
                     f"interval of about ±{196 * (0.95 * 0.05 / n) ** 0.5:.1f} points.")
    return "\n".join(lines), {"robustness": robust}


def run_reproduce(quick=False, seeds=None, data="sample", data_dir="data", cells_path=None, fresh=False,
                  cached_only=False):
    """The whole report: (markdown, raw numbers). Each section is its own function above."""
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
    sections = [f"# Our numbers beside the published ones\n\n"
                f"Data: **{dataset.describe()}**; student epochs {plan['epochs']}. "
                f"Accuracies are test accuracy in %, {seeds_phrase(len(r.seeds))}"
                f"{', with test errors out of 10,000 in brackets' if counts else ''}. Regenerate with `{command}`."]
    if not counts:
        sections.append("The published numbers were measured on full MNIST (60,000 training digits, 10,000 "
                        "test); ours use the 8,000 / 2,000 bundled sample, so expect lower accuracies overall. "
                        "Compare the *gaps*, not the absolute values. The same tables on full MNIST: "
                        "[reproduce-mnist.md](reproduce-mnist.md).")
    teacher, teacher_note = reproduction_teacher("seed_teacher", dataset, plan, quick)
    key = ("reproduce", "seed_teacher", id(teacher))
    raw = {}
    for text, numbers in (section_seed_table(r, teacher, teacher_note, key), section_small_data(r, teacher, key),
                          section_hinton(r), section_sweep(r, teacher, key),
                          *((section_robustness(r, data_dir),) if counts else ())):
        sections.append(text)
        raw.update(numbers)
    raw.setdefault("robustness", {})
    seconds = time.monotonic() - started
    resumed = f"; {r.cells.reused} of its cells came from an earlier, interrupted or shorter run" \
        if r.cells.reused else ""
    if r.cells.missing:
        sections.append(f"**{r.cells.missing} cells are not run yet** (marked so above): `{command}` trains them.")
    _say(f"this pass: {seconds / 60:.1f} minutes on this machine ({mode} mode){resumed}")  # bookkeeping: not in the page
    return "\n\n".join(sections) + "\n", {"seconds": seconds, "data": dataset.source, "quick": quick,
                                           "seeds": len(r.seeds), "reused_cells": r.cells.reused, **raw}


# ---- the methods since 2015, side by side ----
# (row, its settings over the seed table's recipe, what it is). The missing-3 row has its own table.
METHODS = [
    ("KD", {}, "Hinton et al. 2015: T²·KL at T=4, α=0.7"),
    ("DKD", {"loss": "dkd"}, "Zhao et al. 2022: TCKD + 8·NCKD"),
    ("DIST", {"loss": "dist"}, "Huang et al. 2022: inter- + intra-class Pearson"),
    ("LS-KD", {"loss": "lskd"}, "Sun et al. 2024: KD on z-scored logits"),
    ("KD + Gram", {"feature_loss": "gram", "feature_weight": 1.0},
     "KD plus Gram matrices of the student's conv map (through the adapter) and the teacher's, weight 1"),
    ("born-again", {"teacher": "self", "generations": 1},
     "Furlanello et al. 2018: no teacher; generation 0 (the baseline) teaches generation 1"),
    ("deep supervision", {"teacher": "self", "self_distill": "deep"},
     "the feature article's self-distillation, as in Zhang et al. 2019: no teacher; heads on the shallower "
     "layers learn from the deepest (hint weight 1, softmax at T=4)"),
]
MISSING = {"omit_class": 3, "temperature": 20.0, "alpha": 0.9}  # the app's preset, Hinton's T
HINTON_MISSING = {"errors": 206, "omitted_errors": 133, "errors_adjusted": 109, "omitted_errors_adjusted": 14}


def method_cell(teacher_model, key, dataset, seed, **settings):
    """One method, one seed: the KD student's and its baseline's test accuracy, and for a held-out
    class the Hinton counts (errors overall and on the class, before and after the bias shift)."""
    config = RunConfig(data=dataset.source, seed=seed, **{**PUBLISHED_RECIPE, **settings})
    result = train.train_students(config, [teacher_model], dataset, teacher_keys=[key])
    return {**_cell(result.metrics), **train.omitted_class_reports(result, dataset, config.omit_class)}


def run_methods(quick=False, seeds=None, data="sample", data_dir="data", cells_path=None, fresh=False,
                cached_only=False):
    plan = QUICK if quick else (MNIST if data == "mnist" else FULL)
    seeds = list(range(seeds or plan["seeds"]))
    started = time.monotonic()
    dataset = data_lib.load(data, data_dir)
    cells = Cells(cells_path or methods_out(data).with_suffix(".cells.json"), fresh, cached_only)
    prefix = f"{dataset.source}/{'quick' if quick else 'full'}/e{plan['epochs']}"
    n_test = len(dataset.test_y)
    recipe = dict(epochs=plan["epochs"], lr=0.005, batch_size=128)
    teacher, teacher_note = reproduction_teacher("seed_teacher", dataset, plan, quick=True)
    key = ("reproduce", "seed_teacher", id(teacher))
    command = "python -m kdapp reproduce --methods" + (" --data mnist" if data == "mnist" else "") + \
        (" --quick" if quick else "")

    rows, raw = [], {}
    for name, settings, what in METHODS:
        done = [c for c in (cells(f"{prefix}/methods/{name}/s{seed}",
                                  lambda: method_cell(teacher, key, dataset, seed, **recipe, **settings))
                            for seed in seeds) if c is not None]
        kd, base = [c["student_acc"] for c in done], [c["baseline_acc"] for c in done]
        raw[name] = {"student": kd, "baseline": base}
        rows.append(f"| {name} | {what} | {mean_std(kd)} | {mean_std(base)} | "
                    f"{mean_std([a - b for a, b in zip(kd, base)])} |")
    gains = {name: [a - b for a, b in zip(r["student"], r["baseline"])] for name, r in raw.items()}
    spread = {name: statistics.stdev(g) if len(g) > 1 else 0.0 for name, g in gains.items()}
    kd_gain = statistics.mean(gains["KD"]) if gains["KD"] else None
    # "Clearly" = by more than one standard deviation over seeds, of either method's gain.
    clearly = [name for name, g in gains.items() if name != "KD" and g and kd_gain is not None
               and statistics.mean(g) - kd_gain > max(spread[name], spread["KD"])]
    close = [name for name, g in gains.items() if name != "KD" and g and kd_gain is not None and name not in clearly
             and statistics.mean(g) > kd_gain]
    sections = [
        f"# The methods since 2015, side by side\n\n"
        f"Data: **{dataset.describe()}**. Teacher: seed_teacher, {teacher_note}. Student: seed_student, "
        f"{recipe['epochs']} epochs, Adam {recipe['lr']} cosine, batch 128, no shifts (the seed table's recipe). "
        f"Test accuracy in %, {seeds_phrase(len(seeds))}; "
        f"each baseline is the same student from the same initial weights on the labels alone. "
        f"Regenerate with `{command}`.",
        "\n".join(["| method | what | KD student | baseline | gain (points) |", "|---|---|---:|---:|---:|", *rows]),
        ("**What this shows.** " + (
            f"Classic KD gains {100 * kd_gain:+.2f} points here. "
            + (f"Clearly better on this footing (by more than a standard deviation over seeds): "
               f"{', '.join(clearly)}. " if clearly else
               "No method beats it by more than the seed-to-seed spread: on MNIST, with a strong teacher and "
               "this small a gap, the newer losses do not help measurably. ")
            + (f"Ahead of KD but within that spread: {', '.join(close)}. " if close else "")
            + "The two rows without a teacher show what a model gets from teaching itself: compare their "
              "gain with KD's, which had a 1.2M-parameter teacher. Born-again's baseline is its own "
              "generation 0, trained by the teacher-training loop, so it differs a little from the others'."
            if kd_gain is not None else NOT_RUN))]

    # Hinton's missing 3
    done = [c for c in (cells(f"{prefix}/methods/missing-3/s{seed}",
                              lambda: method_cell(teacher, key, dataset, seed, **recipe, **MISSING))
                        for seed in seeds) if c is not None]
    raw["missing-3"] = done

    def cell(role, field):
        return errors([c[role][field] for c in done])
    threes = done[0]["student"]["omitted_test_digits"] if done else "?"
    scale = "" if n_test == 10_000 else f" (ours out of {n_test:,} test digits, {threes} of them 3s)"
    sections.append("\n".join([
        "## Hinton's missing 3\n",
        f"Neither student saw a 3: every 3 is removed from the transfer set. KD at T=20, α=0.9; the rest as above. "
        f"Errors are counts{scale}; 'after the bias shift' raises the 3's output bias until 3 is the answer as "
        f"often as 3s occur in the test set (Hinton et al. 2015, section 3: full MNIST, 1,010 3s).\n",
        "| model | errors | errors on 3s | errors after the bias shift | on 3s after the shift |",
        "|---|---:|---:|---:|---:|",
        f"| KD student (ours) | {cell('student', 'errors')} | {cell('student', 'omitted_errors')} | "
        f"{cell('student', 'errors_adjusted')} | {cell('student', 'omitted_errors_adjusted')} |",
        f"| baseline (ours) | {cell('baseline', 'errors')} | {cell('baseline', 'omitted_errors')} | "
        f"{cell('baseline', 'errors_adjusted')} | {cell('baseline', 'omitted_errors_adjusted')} |",
        f"| Hinton et al. 2015 (distilled) | {HINTON_MISSING['errors']} | {HINTON_MISSING['omitted_errors']} | "
        f"{HINTON_MISSING['errors_adjusted']} | {HINTON_MISSING['omitted_errors_adjusted']} |",
        *comments([("KD student", _missing_three_comment(done, threes, recipe["epochs"]))])]))

    seconds = time.monotonic() - started
    if cells.missing:
        sections.append(f"**{cells.missing} cells are not run yet** (marked so above): `{command}` trains them.")
    _say(f"this pass: {seconds / 60:.1f} minutes on this machine; {cells.reused} cells from an earlier run")
    return "\n\n".join(sections) + "\n", {"seconds": seconds, "data": dataset.source, "quick": quick,
                                           "seeds": len(seeds), "methods": raw}


def _missing_three_comment(done, threes, epochs):
    """Our KD student's 3s against Hinton's, as shares of the 3s (the test sets differ in size)."""
    if not done or not isinstance(threes, int):
        return None
    ours = [100 * (1 - c["student"]["omitted_errors_adjusted"] / threes) for c in done]
    theirs = 100 * (1 - HINTON_MISSING["omitted_errors_adjusted"] / 1010)
    before = [100 * (1 - c["student"]["omitted_errors"] / threes) for c in done]
    mean = statistics.mean(ours)
    said = (f"after the bias shift it reads {mean:.1f}% of the {threes:,} test 3s it never saw (before: "
            f"{statistics.mean(before):.1f}%); Hinton's read {theirs:.1f}% of 1,010")
    half = interval(mean / 100, threes)
    if abs(mean - theirs) <= half:
        return f"{said}, inside the ±{half:.1f} sampling interval of ours."
    return (f"{said}. Ours learns from a convolutional teacher in {epochs} epochs, the paper's from a large dropout "
            "net trained far longer.")


def default_out(data):
    return RESULTS_DIR / ("reproduce-mnist.md" if data == "mnist" else "reproduce.md")


def methods_out(data):
    return RESULTS_DIR / ("methods-mnist.md" if data == "mnist" else "methods.md")


def cmd_reproduce(args):
    run, out_for = (run_methods, methods_out) if args.methods else (run_reproduce, default_out)
    if args.techniques:
        from kdapp.tools.techniques_table import run_techniques, techniques_out  # it imports this module
        run, out_for = run_techniques, techniques_out
    markdown, raw = run(args.quick, args.seeds, args.data, args.data_dir, fresh=args.fresh,
                        cached_only=args.cached_only,
                        cells_path=Path(args.out).with_suffix(".cells.json") if args.out else None)
    out = Path(args.out) if args.out else out_for(args.data)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown, encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(raw, indent=1), encoding="utf-8")
    print(markdown)
    _say(f"wrote {out} and {out.with_suffix('.json')}")


def add_parser(sub):
    p = sub.add_parser("reproduce", help="regenerate the results tables (seed article, Hinton 2015, T sweep)")
    p.add_argument("--data", default="sample", choices=["sample", "mnist"],
                   help="sample: results/reproduce.md; mnist: full MNIST, results/reproduce-mnist.md")
    p.add_argument("--data-dir", default="data", help="where `data import` put full MNIST")
    p.add_argument("--quick", action="store_true", help="shipped teachers, 1 seed, few epochs: a few minutes")
    p.add_argument("--methods", action="store_true",
                   help="the methods table instead (KD, DKD, DIST, LS-KD, Gram, born-again, deep supervision, "
                        "missing 3): results/methods.md, or methods-mnist.md")
    p.add_argument("--techniques", action="store_true",
                   help="the techniques table instead (T schedules, CTKD, progressive, mutual, collapse, "
                        "adversarial): results/techniques.md")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3, quick 1)")
    p.add_argument("--fresh", action="store_true", help="ignore the cells cached by an earlier run")
    p.add_argument("--cached-only", action="store_true",
                   help="train nothing: write the tables from the finished cells, marking the rest not run yet")
    p.add_argument("--out", default=None, help="default results/reproduce.md, or reproduce-mnist.md for mnist "
                                               "(methods.md, methods-mnist.md with --methods)")
    p.set_defaults(func=cmd_reproduce)
