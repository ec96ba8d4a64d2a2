"""python -m kdapp reproduce: our own numbers beside the published ones, whatever they show.

Regenerates markdown tables: the MNIST seed article's table, its small-data claim, Hinton et al.
(2015)'s MNIST setup, a temperature sweep and, on full MNIST, whether KD carries robustness to
other writers (the shipped drawing models and the articles' pair, on redrawn UCI digits).

- `--data sample` (results/reproduce.md): the bundled 8,000 / 2,000 sample, 3 seeds; --quick: 1 seed,
  few epochs. Both use the shipped teachers (trained by the full recipe; one is trained here only
  if its checkpoint is missing).
- `--data mnist` (results/reproduce-mnist.md): full MNIST, 60,000 / 10,000, the published numbers'
  own test set, with test errors as counts. The teachers are the shipped full-MNIST checkpoints
  (their recipes are in results/README.md); training them again here would cost most of an hour.

`--methods` (results/methods.md, or methods-mnist.md with `--data mnist`) compares the methods
since 2015 on one footing: the shipped teacher for that data, the seed table's recipe, 3 seeds.

Each table is written in every language of the page's catalogs (reproduce.md, reproduce.zh.md, ...):
the numbers are computed once, then each section's words are written per language (`_`, under
`i18n.speaking`), so the files differ in their words only.

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
# The tables' words are the page's catalogs' `repro.` entries: the Reproduction tab shows these files,
# so the page and the files share one glossary, and tests/test_i18n.py checks both against the catalogs.
# kdapp.ui.i18n is gradio-free, and tools sit above every layer (README: "may import any layer"), so
# no catalog reader needs to move down; nothing below the tools writes a translated word.
from kdapp.ui.i18n import LANGUAGES, _, known, speaking, translated_file

RESULTS_DIR = Path(__file__).resolve().parents[2] / "results"

# Published numbers, as printed.
# Rows are named by role; their words are the catalogs' repro.seed.row.<role> and repro.hinton.row.<role>.
SEED_CLAIMS = {"teacher": 99.2, "alone": 98.1, "distilled": 98.7, "features": 98.9}
SEED_LATENCY_MS = {"teacher": 12.5, "alone": 4.2, "distilled": 4.2, "features": 4.2}
SEED_SMALL_DATA_GAIN = 3.2
HINTON_ERRORS = {"teacher": 67, "alone": 146, "distilled": 74}

FULL = dict(seeds=3, epochs=30, teacher_epochs={"seed_teacher": 40, "mlp_1200": 30},
            sweep=(1, 2, 4, 8, 20), hinton_epochs=30)
QUICK = dict(seeds=1, epochs=6, teacher_epochs={"seed_teacher": 6, "mlp_1200": 6},
             sweep=(1, 4, 20), hinton_epochs=6)
# Full MNIST: 10 epochs of 60,000 digits are 2.5x the steps of 30 epochs of the sample. The
# feature-distillation cell runs the teacher on every batch (4x the cost, ~7 min a seed here);
# feature_seeds < seeds would give it fewer, and the table would say so.
# Hinton's student gets the shipped mlp_800 pair's 40 epochs (scripts/train_checkpoints.sh): seed 0's
# cell is that run again.
# hinton_temperatures: the distilled student again at these T (KD only: the student alone does not
# depend on T), beside the paper's T=20.
MNIST = dict(seeds=3, epochs=10, sweep=(1, 2, 4, 8, 20), hinton_epochs=40, feature_seeds=3,
             hinton_temperatures=(2, 4, 8, 20))
SMALL_FRACTION = 0.1
NOT_RUN = "not run yet"  # the English of repro.not_run, for the techniques table (English only)


def _say(*args):
    print(*args, file=sys.stderr, flush=True)


def reproduction_teacher(arch, dataset, plan=FULL):
    """(model, how it came to be) for the shipped teacher of this data (its recipe is the plan's:
    results/README.md); one is trained from scratch only where none is shipped (the sample's full
    mode). `teacher_note(how)` says how in the language spoken then."""
    shipped = checkpoints.teacher_path(checkpoints.SHIPPED_DIR, arch, dataset.source)
    if shipped.is_file():
        model, meta = checkpoints.load(shipped)
        if meta.get("data") != dataset.source:
            raise RuntimeError(f"{shipped} records data {meta.get('data')!r}, not {dataset.source!r}")
        recipe = meta.get("config", {})
        how = {"file": shipped.name, "epochs": recipe.get("epochs", "?"), "augment": recipe.get("augment", "?"),
               "acc": f"{meta['metrics'].get('test_acc', 0):.2%}", "max_norm": recipe.get("max_norm"),
               "fingerprint": checkpoints.fingerprint([shipped])}
        if recipe.get("swa") and isinstance(recipe.get("init"), dict):  # trained, then its weights averaged
            how.update(trained=recipe["init"].get("epochs", "?"), averaged=recipe.get("epochs", "?"))
        return model, how
    if dataset.source == "mnist":
        raise RuntimeError(f"no shipped full-MNIST {arch} teacher ({shipped}); scripts/train_checkpoints.sh "
                           "trains it (its recipe is there)")
    epochs = plan.get("teacher_epochs", FULL["teacher_epochs"])[arch]  # full MNIST's plan names none
    _say(f"training teacher {arch} for {epochs} epochs ...")
    start = time.monotonic()
    model, acc = train.train_teacher(arch, dataset, epochs, batch_size=128)
    return model, {"epochs": epochs, "seconds": f"{time.monotonic() - start:.0f}"}


def teacher_note(how):
    """reproduction_teacher's `how` as words: a shipped checkpoint's recipe, or the training done here."""
    if "file" not in how:
        return _("repro.teacher.trained").format(**how)
    if "averaged" in how:
        return _("repro.teacher.shipped_swa").format(**how)
    return _("repro.teacher.shipped").format(**how)


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
        self._reused, self._missing = set(), set()  # names: a cell two sections read counts once

    @property
    def reused(self):
        return len(self._reused)

    @property
    def missing(self):
        return len(self._missing)

    def __call__(self, name, compute):
        if name in self.done:
            self._reused.add(name)
            return self.done[name]
        if self.cached_only:
            self._missing.add(name)
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
        return _("repro.not_run")
    values = [scale * v for v in values]
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def errors(values):
    """Error counts over seeds as text: one count, or mean ± std."""
    if not values:
        return _("repro.not_run")
    return f"{values[0]}" if len(values) == 1 else f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def machine():
    """The computer a time was measured on: the CPU's model, its cores, torch's threads and the load
    while it ran (measured once; `machine_note` says it in each file's language)."""
    name = platform.processor() or platform.machine()
    try:
        name = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"name": name, "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "load": f"{os.getloadavg()[0]:.1f}"}


def machine_note(facts):
    return (_("repro.machine") if facts["threads"] > 1 else _("repro.machine_one")).format(**facts)


def seeds_phrase(n):
    """How a table's numbers were aggregated, true to its number of seeds."""
    return _("repro.seeds_one") if n == 1 else _("repro.seeds_many").format(n=n, last=n - 1)


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
        return _("repro.versus.inside").format(diff=f"{diff:+.2f}", half=f"{half:.2f}", n=f"{n:,}")
    return _("repro.versus.outside").format(diff=f"{diff:+.2f}", half=f"{half:.2f}", why=why)


def comments(rows):
    """'Where ours differs' as a list, one line per (row name, sentence or None)."""
    lines = [_("repro.comment").format(name=name, text=text) for name, text in rows if text]
    return ["", _("repro.differs"), "", *lines] if lines else []


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
        """Accuracies (0..1) over seeds as text; with errors out of the test set on full MNIST, and
        the seed count where a row has fewer seeds than the table (a pass cut short)."""
        text = mean_std(values)
        if self.dataset.source == "mnist" and values:
            errors = [round((1 - v) * self.n_test) for v in values]
            text = _("repro.acc_errors").format(
                acc=text, errors=errors[0] if len(errors) == 1 else f"{statistics.mean(errors):.1f}")
        return text

    def seeded(self, values, expected=None):
        """acc() of a row trained over the table's seeds (`expected` of them, default all), marked
        ' (1 of 3 seeds so far)' while a pass cut short has left it fewer."""
        return self.acc(values) + self.fewer_seeds(values, expected)

    def fewer_seeds(self, values, expected=None):
        expected = expected or len(self.seeds)
        return _("repro.fewer_seeds").format(n=len(values), total=expected) if 0 < len(values) < expected else ""

    def cell_name(self, family, seed):
        return f"{self.prefix}/{family}/s{seed}"

    def students(self, name, teacher, key, **settings):
        """(KD students' accuracies, baselines' accuracies, training digits) over the seeds for one
        cell family; a cell not run yet (cached_only) is left out."""
        kd, alone, n = [], [], None
        for seed in self.seeds:
            cell = self.cells(self.cell_name(name, seed), lambda: accuracies(teacher, key, self.dataset, seed,
                                                                                **settings))
            if cell is not None:
                kd.append(cell["student_acc"])
                alone.append(cell["baseline_acc"])
                n = cell["train_samples"]
        return kd, alone, n


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


def section_hinton(r):
    """3. Hinton, Vinyals & Dean (2015)'s MNIST setup, in error counts as the paper gives them."""
    big, big_how = reproduction_teacher("mlp_1200", r.dataset, r.plan)
    big_errors = round((1 - teachers.evaluate(big, r.dataset.test_x, r.dataset.test_y)) * r.n_test)
    # Full MNIST's student trains longer than the plan's other cells, and its teacher has been
    # reshipped: its cells are named by both (cells from an earlier full-MNIST teacher are not read).
    family = "hinton" if r.plan["hinton_epochs"] == r.plan["epochs"] else \
        f"hinton-e{r.plan['hinton_epochs']}-{big_how.get('fingerprint', 'trained')}"
    key = ("reproduce", "mlp_1200", id(big))
    recipe = dict(student="mlp_800", alpha=0.9, epochs=r.plan["hinton_epochs"], lr=0.001, batch_size=128)
    kd, alone, _n = r.students(family, big, key, temperature=20.0, **recipe)
    kd_errors, alone_errors = ([round((1 - a) * r.n_test) for a in accs] for accs in (kd, alone))
    by_temperature = {}  # T -> the distilled student's errors over the seeds
    for T in r.plan.get("hinton_temperatures", ()):
        if T == 20:  # the table's own cells
            by_temperature[T] = kd_errors
            continue
        cells = [r.cells(r.cell_name(f"{family}-T{T:g}", seed), lambda: accuracies(
            big, key, r.dataset, seed, temperature=float(T), baseline=False, **recipe)) for seed in r.seeds]
        by_temperature[T] = [round((1 - c["student_acc"]) * r.n_test) for c in cells if c is not None]

    def rate(values):
        return f"{100 * statistics.mean(values) / r.n_test:.2f}%" if values else _("repro.not_run")

    def text():
        ours = {"teacher": (big_errors, f"{100 * big_errors / r.n_test:.2f}%"),
                "alone": (errors(alone_errors) + r.fewer_seeds(alone_errors), rate(alone_errors)),
                "distilled": (errors(kd_errors) + r.fewer_seeds(kd_errors), rate(kd_errors))}
        row = {role: _(f"repro.hinton.row.{role}") for role in HINTON_ERRORS}
        recipe = _("repro.hinton.recipe_2012").format(c=f"{big_how['max_norm']:g}") if big_how.get("max_norm") \
            else _("repro.hinton.recipe_plain")
        return "\n".join([
            _("repro.hinton").format(n=3) + "\n",
            _("repro.hinton.setup").format(recipe=recipe, teacher=teacher_note(big_how), epochs=r.plan["hinton_epochs"],
                                           n=f"{r.n_test:,}") + "\n",
            _("repro.hinton.header").format(n=f"{r.n_test:,}"), "|---|---:|---:|---:|",
            *(f"| {row[role]} | {ours[role][0]} | {ours[role][1]} | {paper} |" for role, paper in HINTON_ERRORS.items()),
            *comments((row[role], said) for role, said in
                      _hinton_comments(r, big_errors, big_how, alone_errors, kd_errors)),
            *_hinton_temperatures(r, by_temperature)])
    return text, {"hinton_teacher_errors": big_errors, "hinton_kd_errors": kd_errors,
                  "hinton_alone_errors": alone_errors,
                  **({"hinton_kd_errors_by_T": {str(T): e for T, e in by_temperature.items()}} if by_temperature else {})}


def _hinton_temperatures(r, by_temperature):
    """The distilled student's errors at each T, and what they say against the paper's claim that
    every T above 8 did about as well for students of 300 or more units."""
    if not by_temperature:
        return []
    lines = ["", _("repro.hinton.temperatures").format(epochs=r.plan["hinton_epochs"], n=len(r.seeds)), "",
             _("repro.hinton.temperatures.header").format(n=f"{r.n_test:,}"), "|---:|---:|",
             *(f"| {T:g} | {errors(e) + r.fewer_seeds(e)} |" for T, e in by_temperature.items())]
    done = {T: statistics.mean(e) for T, e in by_temperature.items() if len(e) == len(r.seeds)}
    if 20 not in done or len(done) < 2 or len(r.seeds) < 2:  # a verdict needs every row, each over seeds
        return lines
    # A T differs from T=20 when their means are further apart than both spreads together.
    spread = {T: statistics.stdev(by_temperature[T]) for T in done}
    better = sorted((T for T in done if done[20] - done[T] > spread[20] + spread[T]), key=done.get)
    worse = [T for T in done if done[T] - done[20] > spread[20] + spread[T]]
    if not better and not worse:
        lines += ["", _("repro.hinton.temperatures_alike")]
    elif better and better[0] < 8:
        lines += ["", _("repro.hinton.temperatures_low").format(
            best=f"{better[0]:g}", errors=f"{done[better[0]]:.1f}", at20=f"{done[20]:.1f}")]
    else:
        lines += ["", _("repro.hinton.temperatures_differ").format(
            better=", ".join(f"{T:g}" for T in better) or "–", worse=", ".join(f"{T:g}" for T in worse) or "–")]
    return lines


def _hinton_comments(r, big_errors, big_how, alone_errors, kd_errors):
    """(role, sentence) for each Hinton row against the paper's error rate, on our test set's size."""
    acc = lambda errors: 100 - 100 * statistics.mean(errors) / r.n_test if errors else None  # noqa: E731
    paper = {role: 100 - errors / 100 for role, errors in HINTON_ERRORS.items()}
    taken = f"{statistics.mean(alone_errors) - statistics.mean(kd_errors):.0f}" if kd_errors and alone_errors else "?"
    fewer = big_errors * 10_000 / r.n_test - HINTON_ERRORS["teacher"]  # how many fewer the paper's teacher made
    if "averaged" in big_how:
        teacher_why = _("repro.hinton.teacher_why_swa").format(**big_how)
    elif big_how.get("max_norm"):
        teacher_why = _("repro.hinton.teacher_why_2012").format(epochs=big_how.get("epochs", "?"))
    else:
        teacher_why = _("repro.hinton.teacher_why").format(teacher=teacher_note(big_how))
    # Our teacher is called weaker (or better) than the paper's only beyond our count's 95% interval.
    half = interval(acc([big_errors]) / 100, r.n_test) * 100  # in errors per 10,000, as `fewer`
    if fewer > half:
        distilled_why = _("repro.hinton.distilled_why").format(taken=taken, fewer=f"{fewer:.0f}")
    elif fewer < -half:
        distilled_why = _("repro.hinton.distilled_why_better").format(taken=taken)
    else:
        distilled_why = _("repro.hinton.distilled_why_as_good").format(taken=taken)
    return [
        ("teacher", versus(acc([big_errors]), paper["teacher"], r.n_test, teacher_why)),
        ("alone", versus(acc(alone_errors), paper["alone"], r.n_test,
                         _("repro.hinton.alone_why").format(epochs=r.plan["hinton_epochs"]))),
        ("distilled", versus(acc(kd_errors), paper["distilled"], r.n_test, distilled_why))]


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


def in_every_language(sections):
    """{lang: markdown}: each section's words written in each language, the numbers computed once."""
    pages = {}
    for lang in LANGUAGES:
        with speaking(lang):
            pages[lang] = "\n\n".join(section() for section in sections) + "\n"
    return pages


def run_reproduce(quick=False, seeds=None, data="sample", data_dir="data", cells_path=None, fresh=False,
                  cached_only=False):
    """The whole report: ({lang: markdown}, raw numbers). Each section is its own function above."""
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


# ---- the methods since 2015, side by side ----
# (row, its settings over the seed table's recipe). The row is the cells' name; what a row is and its name
# on the page are the catalogs' repro.method.<slug>.what / .name. The missing-3 row has its own table.
METHODS = [
    ("KD", {}),
    ("DKD", {"loss": "dkd"}),
    ("DIST", {"loss": "dist"}),
    ("LS-KD", {"loss": "lskd"}),
    ("KD + Gram", {"feature_loss": "gram", "feature_weight": 1.0}),
    ("born-again", {"teacher": "self", "generations": 1}),
    ("deep supervision", {"teacher": "self", "self_distill": "deep"}),
]
MISSING = {"omit_class": 3, "temperature": 20.0, "alpha": 0.9}  # the app's preset, Hinton's T
HINTON_MISSING = {"errors": 206, "omitted_errors": 133, "errors_adjusted": 109, "omitted_errors_adjusted": 14}


def method_slug(name):
    """"KD + Gram" -> "kd_gram": the catalog key of a method's row."""
    return "_".join(name.lower().replace("+", " ").replace("-", " ").split())


def method_name(name):
    return _(f"repro.method.{method_slug(name)}.name")


def method_cell(teacher_model, key, dataset, seed, **settings):
    """One method, one seed: the KD student's and its baseline's test accuracy, and for a held-out
    class the Hinton counts (errors overall and on the class, before and after the bias shift)."""
    config = RunConfig(data=dataset.source, seed=seed, **{**PUBLISHED_RECIPE, **settings})
    result = train.train_students(config, [teacher_model], dataset, teacher_keys=[key])
    return {**_cell(result.metrics), **train.omitted_class_reports(result, dataset, config.omit_class)}


def run_methods(quick=False, seeds=None, data="sample", data_dir="data", cells_path=None, fresh=False,
                cached_only=False):
    """The methods table: ({lang: markdown}, raw numbers)."""
    plan = QUICK if quick else (MNIST if data == "mnist" else FULL)
    seeds = list(range(seeds or plan["seeds"]))
    started = time.monotonic()
    dataset = data_lib.load(data, data_dir)
    cells = Cells(cells_path or methods_out(data).with_suffix(".cells.json"), fresh, cached_only)
    prefix = f"{dataset.source}/{'quick' if quick else 'full'}/e{plan['epochs']}"
    n_test = len(dataset.test_y)
    recipe = dict(epochs=plan["epochs"], lr=0.005, batch_size=128)
    teacher, teacher_how = reproduction_teacher("seed_teacher", dataset, plan)
    key = ("reproduce", "seed_teacher", id(teacher))
    command = "python -m kdapp reproduce --methods" + (" --data mnist" if data == "mnist" else "") + \
        (" --quick" if quick else "")

    raw = {}
    for name, settings in METHODS:
        done = [c for c in (cells(f"{prefix}/methods/{name}/s{seed}",
                                  lambda: method_cell(teacher, key, dataset, seed, **recipe, **settings))
                            for seed in seeds) if c is not None]
        raw[name] = {"student": [c["student_acc"] for c in done], "baseline": [c["baseline_acc"] for c in done]}
    gains = {name: [a - b for a, b in zip(r["student"], r["baseline"])] for name, r in raw.items()}
    spread = {name: statistics.stdev(g) if len(g) > 1 else 0.0 for name, g in gains.items()}
    kd_gain = statistics.mean(gains["KD"]) if gains["KD"] else None
    # "Clearly" = by more than one standard deviation over seeds, of either method's gain.
    clearly = [name for name, g in gains.items() if name != "KD" and g and kd_gain is not None
               and statistics.mean(g) - kd_gain > max(spread[name], spread["KD"])]
    close = [name for name, g in gains.items() if name != "KD" and g and kd_gain is not None and name not in clearly
             and statistics.mean(g) > kd_gain]

    def table():
        rows = [f"| {method_name(name)} | {_(f'repro.method.{method_slug(name)}.what')} | "
                f"{mean_std(raw[name]['student'])} | {mean_std(raw[name]['baseline'])} | {mean_std(gains[name])} |"
                for name, _settings in METHODS]
        return "\n\n".join([
            _("repro.methods_title") + "\n\n" + _("repro.methods.intro").format(
                data=known(dataset.describe()), teacher=teacher_note(teacher_how), epochs=recipe["epochs"],
                lr=recipe["lr"], seeds=seeds_phrase(len(seeds)), command=command),
            "\n".join([_("repro.methods.header"), "|---|---|---:|---:|---:|", *rows]),
            _("repro.methods.shows").format(text=what_this_shows())])

    def what_this_shows():
        if kd_gain is None:
            return _("repro.not_run")
        names = lambda rows: _("repro.list_sep").join(method_name(name) for name in rows)  # noqa: E731
        said = [_("repro.methods.kd_gain").format(gain=f"{100 * kd_gain:+.2f}"),
                _("repro.methods.clearly").format(names=names(clearly)) if clearly else _("repro.methods.none_clearly"),
                *([_("repro.methods.close").format(names=names(close))] if close else []),
                _("repro.methods.without_teacher")]
        return _("repro.sentence_sep").join(said)

    # Hinton's missing 3
    done = [c for c in (cells(f"{prefix}/methods/missing-3/s{seed}",
                              lambda: method_cell(teacher, key, dataset, seed, **recipe, **MISSING))
                        for seed in seeds) if c is not None]
    raw["missing-3"] = done
    threes = done[0]["student"]["omitted_test_digits"] if done else "?"

    def cells_of(role):
        return " | ".join(errors([c[role][field] for c in done])
                          for field in ("errors", "omitted_errors", "errors_adjusted", "omitted_errors_adjusted"))

    def missing_three():
        scale = "" if n_test == 10_000 else _("repro.missing.scale").format(n=f"{n_test:,}", threes=threes)
        return "\n".join([
            _("repro.missing_3") + "\n",
            _("repro.missing.setup").format(scale=scale) + "\n",
            _("repro.missing.header"), "|---|---:|---:|---:|---:|",
            f"| {_('repro.missing.row.student')} | {cells_of('student')} |",
            f"| {_('repro.missing.row.baseline')} | {cells_of('baseline')} |",
            f"| {_('repro.missing.row.hinton')} | " + " | ".join(str(v) for v in HINTON_MISSING.values()) + " |",
            *comments([(_("repro.missing.row.student_short"), _missing_three_comment(done, threes, recipe["epochs"]))])])

    sections = [table, missing_three]
    seconds = time.monotonic() - started
    if cells.missing:
        sections.append(lambda: _("repro.missing_cells").format(n=cells.missing, command=command))
    _say(f"this pass: {seconds / 60:.1f} minutes on this machine; {cells.reused} cells from an earlier run")
    return in_every_language(sections), {"seconds": seconds, "data": dataset.source, "quick": quick,
                                         "seeds": len(seeds), "methods": raw}


def _missing_three_comment(done, threes, epochs):
    """Our KD student's 3s against Hinton's, as shares of the 3s (the test sets differ in size)."""
    if not done or not isinstance(threes, int):
        return None
    ours = [100 * (1 - c["student"]["omitted_errors_adjusted"] / threes) for c in done]
    theirs = 100 * (1 - HINTON_MISSING["omitted_errors_adjusted"] / 1010)
    before = [100 * (1 - c["student"]["omitted_errors"] / threes) for c in done]
    mean = statistics.mean(ours)
    half = interval(mean / 100, threes)
    said = dict(ours=f"{mean:.1f}", threes=f"{threes:,}", before=f"{statistics.mean(before):.1f}",
                theirs=f"{theirs:.1f}")
    if abs(mean - theirs) <= half:
        return _("repro.missing.inside").format(**said, half=f"{half:.1f}")
    return _("repro.missing.outside").format(**said, epochs=epochs)


def default_out(data):
    return RESULTS_DIR / ("reproduce-mnist.md" if data == "mnist" else "reproduce.md")


def methods_out(data):
    return RESULTS_DIR / ("methods-mnist.md" if data == "mnist" else "methods.md")


def cmd_reproduce(args):
    run, out_for = (run_methods, methods_out) if args.methods else (run_reproduce, default_out)
    if args.techniques:
        from kdapp.tools.techniques_table import run_techniques, techniques_out  # it imports this module
        run, out_for = run_techniques, techniques_out
    pages, raw = run(args.quick, args.seeds, args.data, args.data_dir, fresh=args.fresh,
                     cached_only=args.cached_only,
                     cells_path=Path(args.out).with_suffix(".cells.json") if args.out else None)
    out = Path(args.out) if args.out else out_for(args.data)
    out.parent.mkdir(parents=True, exist_ok=True)
    pages = pages if isinstance(pages, dict) else {LANGUAGES[0]: pages}  # the techniques table is English only
    for lang, markdown in pages.items():
        translated_file(out, lang).write_text(markdown, encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(raw, indent=1), encoding="utf-8")
    print(pages[LANGUAGES[0]])
    _say(f"wrote {', '.join(str(translated_file(out, lang)) for lang in pages)} and {out.with_suffix('.json')}")


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
                        "adversarial): results/techniques.md, or techniques-mnist.md")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3, quick 1)")
    p.add_argument("--fresh", action="store_true", help="ignore the cells cached by an earlier run")
    p.add_argument("--cached-only", action="store_true",
                   help="train nothing: write the tables from the finished cells, marking the rest not run yet")
    p.add_argument("--out", default=None, help="default results/reproduce.md, or reproduce-mnist.md for mnist "
                                               "(methods.md, methods-mnist.md with --methods)")
    p.set_defaults(func=cmd_reproduce)
