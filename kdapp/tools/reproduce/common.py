"""What every table of `python -m kdapp reproduce` shares: the published numbers, the plans, the
cell cache, the teachers, and how numbers and differences are written in each language."""
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from kdapp import checkpoints
from kdapp.checkpoints import atomic_write
from kdapp.config import RunConfig
from kdapp.training import teachers, train
# The tables' words are the page's catalogs' `repro.` entries: the Reproduction tab shows these files,
# so the page and the files share one glossary, and tests/test_i18n.py checks both against the catalogs.
# kdapp.ui.i18n is gradio-free, and tools sit above every layer (README: "may import any layer"), so
# no catalog reader needs to move down; nothing below the tools writes a translated word.
from kdapp.ui.i18n import LANGUAGES, _, speaking

RESULTS_DIR = Path(__file__).resolve().parents[3] / "results"

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
# cell of the two-teacher row is that run again (the single teacher's row is the pair shipped before).
# hinton_temperatures: the distilled student again at these T (KD only: the student alone does not
# depend on T), beside the paper's T=20.
# hinton_shifts: the distilled student again, its teacher a shift ensemble of this radius (25 readings
# of each digit at 2), the students still on the unmoved digits: the paper's cumbersome model may be an ensemble.
# hinton_copies: that row again with this many separately trained teachers (mlp_1200-mnist-copy2.pt, ...), each
# read at the same shifts: the ensemble of separately trained nets of the paper's section 2.
MNIST = dict(seeds=3, epochs=10, sweep=(1, 2, 4, 8, 20), hinton_epochs=40, feature_seeds=3,
             hinton_temperatures=(2, 4, 8, 20), hinton_shifts=2, hinton_copies=2)
SMALL_FRACTION = 0.1
NOT_RUN = "not run yet"  # the English of repro.not_run, for the techniques table (English only)


def _say(*args):
    print(*args, file=sys.stderr, flush=True)


def reproduction_teacher(arch, dataset, plan=FULL, copy=1):
    """(model, how it came to be) for the shipped teacher of this data (its recipe is the plan's:
    results/README.md), or its separately trained `copy` 2, 3, ...; one is trained from scratch only
    where none is shipped (the sample's full mode). `teacher_note(how)` says how in the language spoken then."""
    shipped = checkpoints.teacher_path(checkpoints.SHIPPED_DIR, arch, dataset.source, copy)
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
    model, acc = train.train_teacher(arch, dataset, epochs, batch_size=128, seed=teachers.copy_seed(0, copy))
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


def distill_cell(teacher, key, dataset, seed, more=(), **settings):
    """One run of the published recipe; `more`: (model, key) of teachers beside the first, whose names
    `settings` gives as extra_teachers."""
    config = RunConfig(data=dataset.source, seed=seed, **{**PUBLISHED_RECIPE, **settings})
    return train.distill(config, [teacher, *(m for m, _ in more)], dataset, teacher_keys=[key, *(k for _, k in more)])


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


def in_every_language(sections):
    """{lang: markdown}: each section's words written in each language, the numbers computed once."""
    pages = {}
    for lang in LANGUAGES:
        with speaking(lang):
            pages[lang] = "\n\n".join(section() for section in sections) + "\n"
    return pages


def default_out(data):
    return RESULTS_DIR / ("reproduce-mnist.md" if data == "mnist" else "reproduce.md")


def methods_out(data):
    return RESULTS_DIR / ("methods-mnist.md" if data == "mnist" else "methods.md")

