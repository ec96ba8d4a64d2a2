"""`reproduce --methods` (results/methods.md, methods-mnist.md): the methods since 2015 on one footing,
the shipped teacher for that data, the seed table's recipe and 3 seeds; and Hinton's missing 3."""
import statistics
import time

from kdapp import data as data_lib
from kdapp.config import RunConfig
from kdapp.training import train
from kdapp.tools.reproduce.common import (
    FULL, MNIST, PUBLISHED_RECIPE, QUICK, Cells, _cell, _say, comments, errors, in_every_language, interval,
    mean_std, methods_out, reproduction_teacher, seeds_phrase, teacher_note)
from kdapp.ui.i18n import _
from kdapp.ui.sentences import known


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
