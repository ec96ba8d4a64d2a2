"""`python -m kdapp reproduce --techniques`: the articles' remaining techniques side by side
(results/techniques.md), in the shape of the methods table (methods.run_methods).

A short recipe, so that 3 seeds of every row fit on a shared 2-core machine: a quarter of the
sample's training digits (where KD has room to help), 4 epochs, the shipped teacher. Every row's
baseline is the same student alone, from the same initial weights, for as many epochs.
"""
import statistics
import sys
import time

from kdapp import data as data_lib
from kdapp.config import RunConfig
from kdapp.tools.reproduce.common import (NOT_RUN, RESULTS_DIR, Cells, mean_std, reproduction_teacher, seeds_phrase,
                                           teacher_note)
from kdapp.training import train

RECIPE = dict(epochs=4, lr=0.005, batch_size=128, train_fraction=0.25, augment=False)
HINT = dict(feature_loss="hint", feature_weight=1.0)
# (row, its settings over RECIPE, what it is). "KD" and "KD + hint" are the references.
TECHNIQUES = [
    ("KD", {}, "Hinton et al. 2015: T=4 throughout, α=0.7"),
    ("T linear 8→2", dict(temperature=8.0, temperature_end=2.0, temperature_schedule="linear"),
     "the KD article §6.2: high T early, low T late, linearly"),
    ("T cosine 8→2", dict(temperature=8.0, temperature_end=2.0, temperature_schedule="cosine"),
     "the same on a cosine"),
    ("CTKD", dict(temperature=8.0, temperature_end=1.0, temperature_schedule="ctkd"),
     "Li et al. 2023: T learned against the student (gradient reversal), within [1, 8]"),
    ("progressive", dict(epochs=3, joint_epochs=1),
     "the KD article §6.1: 3 epochs from the fixed teacher, then 1 in which the teacher learns too"),
    ("mutual", dict(teacher="mutual"),
     "Zhang et al. 2018: no pretrained teacher; a peer of the student learns beside it"),
    ("shift ensemble", dict(teacher_shifts=2),
     "KD from the teacher's probabilities averaged over each digit moved by −2…2 px (25 readings); the "
     "students see the digits unmoved"),
    ("KD + hint", HINT, "KD plus the FitNets hint through the adapter, weight 1"),
    ("+ collapse", dict(HINT, collapse_weight=0.01),
     "the feature article §5.3: KD + hint + 0.01·‖Cov(F_S) − I‖²_F"),
    ("+ adversarial", dict(HINT, adversarial_weight=0.5),
     "the feature article §5.3: KD + hint + 0.5·discriminator loss through a gradient reversal layer"),
]
REFERENCE = {"+ collapse": "KD + hint", "+ adversarial": "KD + hint"}  # rows compared with another row than KD


def technique_cell(teacher_model, key, dataset, seed, **settings):
    config = RunConfig(data=dataset.source, seed=seed, **{**RECIPE, **settings})
    m = train.train_students(config, [teacher_model], dataset, teacher_keys=[key]).metrics
    return {k: m[k] for k in ("student_acc", "baseline_acc", "teacher_acc", "train_samples")}


def techniques_out(data):
    return RESULTS_DIR / ("techniques-mnist.md" if data == "mnist" else "techniques.md")


def run_techniques(quick=False, seeds=None, data="sample", data_dir="data", cells_path=None, fresh=False,
                   cached_only=False):
    seeds = list(range(seeds or (1 if quick else 3)))
    started = time.monotonic()
    dataset = data_lib.load(data, data_dir)
    cells = Cells(cells_path or techniques_out(data).with_suffix(".cells.json"), fresh, cached_only)
    teacher, teacher_how = reproduction_teacher("seed_teacher", dataset)
    note = teacher_note(teacher_how)  # techniques.md is English only
    key = ("reproduce", "seed_teacher", id(teacher))
    command = "python -m kdapp reproduce --techniques" + (" --data mnist" if data == "mnist" else "")
    cell = lambda name, settings, seed: cells(f"{dataset.source}/techniques/{name}/s{seed}",
                                              lambda: technique_cell(teacher, key, dataset, seed, **settings))
    finished = lambda name, settings, seed: cells.done.get(f"{dataset.source}/techniques/{name}/s{seed}")
    for seed in [] if cached_only else seeds:  # seed by seed: a pass cut short has every row at least once
        for name, settings, _ in TECHNIQUES:
            cell(name, settings, seed)
    gains, raw, rows = {}, {}, []
    for name, settings, what in TECHNIQUES:
        done = [c for c in ((cell if cached_only else finished)(name, settings, seed) for seed in seeds)
                if c is not None]  # cached only: cell() counts the missing ones
        kd, base = [c["student_acc"] for c in done], [c["baseline_acc"] for c in done]
        raw[name], gains[name] = done, [a - b for a, b in zip(kd, base)]
        peer = mean_std([c["teacher_acc"] for c in done]) if name in ("progressive", "mutual") else ""
        rows.append(f"| {name} | {what} | {mean_std(kd)} | {mean_std(base)} | {mean_std(gains[name])} | {peer} |")
    table = "\n".join(["| technique | what | KD student | baseline | gain (points) | teacher after |",
                       "|---|---|---:|---:|---:|---:|", *rows])
    header = (f"# The articles' remaining techniques, side by side\n\n"
              f"Data: **{dataset.describe()}**, {RECIPE['train_fraction']:.0%} of its training digits. Teacher: "
              f"seed_teacher, {note}. Student: seed_student, {RECIPE['epochs']} epochs, Adam "
              f"{RECIPE['lr']} cosine, batch 128, no shifts. "
              f"Test accuracy in %, {seeds_phrase(len(seeds))}; each baseline is the same student "
              f"from the same initial weights on the labels alone, for the same number of epochs. 'Teacher after' "
              f"is the teacher's (or peer's) accuracy at the end, for the rows where it learns. "
              f"Regenerate with `{command}`.")
    seconds = time.monotonic() - started
    sections = [header, table, verdict(gains)]
    if cells.missing:
        sections.append(f"**{cells.missing} cells are not run yet** (marked so above): `{command}` trains them.")
    print(f"this pass: {seconds / 60:.1f} minutes on this machine; {cells.reused} cells from an earlier run",
          file=sys.stderr)
    return "\n\n".join(sections) + "\n", {"seconds": seconds, "data": dataset.source, "seeds": len(seeds),
                                           "recipe": RECIPE, "techniques": raw}


def verdict(gains):
    """Which rows help, in plain words: a row helps when its gain beats its reference's (KD's, or
    KD + hint's for the feature regularisers) by more than a standard deviation over seeds."""
    if not gains.get("KD"):
        return f"**What this shows.** {NOT_RUN}."
    spread = lambda g: statistics.stdev(g) if len(g) > 1 else 0.0
    helps, same, hurts = [], [], []
    for name, g in gains.items():
        ref = REFERENCE.get(name, "KD")
        if name in ("KD", "KD + hint") or not g or not gains.get(ref):
            continue
        diff = statistics.mean(g) - statistics.mean(gains[ref])
        margin = max(spread(g), spread(gains[ref]))
        (helps if diff > margin else hurts if diff < -margin else same).append(f"{name} ({100 * diff:+.2f} vs {ref})")
    kd_gain = statistics.mean(gains["KD"])
    words = [f"Classic KD gains {100 * kd_gain:+.2f} points over the student alone here."]
    if kd_gain <= 0:
        words.append("In a recipe this short KD itself does not beat the student alone (α = 0.7 of its loss goes "
                     "to the soft targets, and 4 epochs are too few for that to pay off), so these rows compare "
                     "the techniques with KD; they do not show what distillation is worth.")
    words.append(f"Better than their reference by more than the seed-to-seed spread: {', '.join(helps)}."
                 if helps else "**No technique beats its reference by more than the seed-to-seed spread on MNIST.**")
    if same:
        words.append(f"Within the spread, so not shown to help here: {', '.join(same)}.")
    if hurts:
        words.append(f"Worse than their reference by more than the spread: {', '.join(hurts)}.")
    words.append("MNIST is nearly solved by a 174k-parameter student: a technique that helps on harder data can "
                 "have no room to show here. The mutual row has no pretrained teacher at all: its gain is what two "
                 "students teach each other.")
    return "**What this shows.** " + " ".join(words)
