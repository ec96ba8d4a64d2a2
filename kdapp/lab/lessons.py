"""Guided lessons: one-click experiments that ask one question each, run it over several seeds,
and answer it in a few sentences with the visitor's own numbers beside what the literature reports.

A lesson is plain data: the setting it varies and its values, the settings it fixes, and what it
measures (the KD gain, or the held-out class read right). `configs` turns a lesson and the form's
settings into the runs to queue (every value on every seed); `cells` turns the finished runs into
the numbers the Lessons tab tells (kdapp.ui.lessons, in the visitor's language). The texts here are
the English source of the catalogs' lesson entries (a test holds them equal).
"""
from dataclasses import dataclass, field

from kdapp import stats
from kdapp.aggregate import distinct

SEEDS = (0, 1, 2)
HINTON = "Hinton, Vinyals & Dean (2015), *Distilling the knowledge in a neural network*"


@dataclass(frozen=True)
class Lesson:
    title: str
    question: str                  # shown on the button's row
    vary: str | None               # the RunConfig field the lesson changes, or None (one setting, several seeds)
    values: tuple = (None,)
    fixed: dict = field(default_factory=dict)  # set on top of the form's settings
    measure: str = "gain"          # "gain": KD student - baseline; "omitted": the held-out class read right
    literature: str = ""
    same_digits_seen: bool = False  # scale epochs with 1 / train_fraction: every run sees as many digits


LESSONS = {
    "temperature": Lesson(
        "What T does", "Does a softer teacher teach more? KD at T = 1, 4 and 16.",
        "temperature", (1.0, 4.0, 16.0),
        literature=f"{HINTON} distilled a 1,200-unit MNIST net into an 800-unit one at T = 20: 146 test errors "
                   "became 74. For a student of 30 units a layer, T from 2.5 to 4 worked best; with 300 units or "
                   "more, every T above 8 gave about the same."),
    "scarce": Lesson(
        "Scarce labels", "Does KD help more when labels are few? 10% of the labels against all of them, "
        "each run seeing as many digits.",
        "train_fraction", (0.1, 1.0), same_digits_seen=True,
        literature=f"{HINTON}, section 6: a speech model trained on 3% of the data reached 44.5% frame accuracy "
                   "on hard labels and 57.0% on the teacher's soft targets, close to the 58.9% of a model trained "
                   "on all of it. Soft targets carry what the missing labels would have said."),
    "alpha": Lesson(
        "How much to trust the teacher (α)", "Weigh the teacher's soft targets against the labels: α = 0.1, 0.5 "
        "and 0.9.",
        "alpha", (0.1, 0.5, 0.9),
        literature=f"{HINTON} found the best results with a considerably lower weight on the labels' term than on "
                   "the soft targets, i.e. α near 1. At α = 0 the student is its baseline, step for step."),
    "missing-3": Lesson(
        "Hinton's missing 3", "Leave every 3 out of the students' data: can the KD student still read a 3?",
        None, fixed={"omit_class": 3, "temperature": 20.0, "alpha": 0.9, "augment": False,
                     "train_fraction": 1.0, "epochs": 15},  # Hinton's transfer set: all the other digits
        measure="omitted",
        literature=f"{HINTON}: a student that never saw a 3 got 877 of the 1,010 test 3s right from the teacher's "
                   "soft targets alone (T = 20), and 996 (98.6%) once the 3's bias was raised by 3.5."),
}


def configs(lesson, base, seeds=SEEDS):
    """The runs to queue: `base` (a RunConfig, the form's settings) with the lesson's fixed settings,
    at each value on each seed."""
    base = base.replace(**lesson.fixed)
    out = []
    for value in lesson.values:
        changes = {} if lesson.vary is None else {lesson.vary: value}
        if lesson.same_digits_seen:  # as many digits seen as the form's own run would see
            changes["epochs"] = max(1, round(base.epochs * base.train_fraction / value))
        out += [base.replace(**changes, seed=seed) for seed in seeds]
    return out


def measured(lesson, run):
    """The lesson's measure for one finished run, in points (or % of the held-out digits), or None."""
    m = run.get("metrics") or {}
    if lesson.measure == "omitted":  # the held-out class read right: KD student - baseline
        if m.get("student_omitted_acc") is None or m.get("baseline_omitted_acc") is None:
            return None
        return 100 * (m["student_omitted_acc"] - m["baseline_omitted_acc"])
    if m.get("baseline_acc") is None:
        return None
    return 100 * (m["student_acc"] - m["baseline_acc"])


def cells(lesson, runs):
    """{value: (mean, half-width or None, n seeds)} over the finished runs, identical runs merged."""
    groups = {}
    for r in distinct([r for r in runs if r.get("state") == "finished"]):
        value = None if lesson.vary is None else r["config"][lesson.vary]
        if measured(lesson, r) is not None:
            groups.setdefault(value, {}).setdefault(r["config"]["seed"], measured(lesson, r))
    return {value: (*stats.mean_interval(by_seed.values()), len(by_seed)) for value, by_seed in groups.items()}


def measured_metrics(lesson, runs):
    """The metrics of the distinct finished runs the lesson can measure (the held-out class's rows)."""
    return [r["metrics"] for r in distinct([r for r in runs if r.get("state") == "finished"])
            if measured(lesson, r) is not None]
