"""Section 3 of the reproduction: Hinton, Vinyals & Dean (2015)'s MNIST setup, mlp_1200 distilled
into mlp_800 at T=20, in error counts as the paper gives them, with the distilled student again from
ensembles (the teacher's shift ensemble; two separately trained teachers) and at other temperatures."""
import statistics

from kdapp.training import targets, teachers
from kdapp.tools.reproduce.common import (
    HINTON_ERRORS, accuracies, comments, errors, interval, reproduction_teacher, teacher_note, versus)
from kdapp.ui.i18n import _


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
    shifts = r.plan.get("hinton_shifts")  # the teacher as a shift ensemble: the KD student only
    ensemble_errors, shifted_errors = None, []
    if shifts:
        probs = targets.shift_ensemble_probs(big, r.dataset.test_x, shifts)
        ensemble_errors = int((probs.argmax(1) != r.dataset.test_y).sum())
        cells = [r.cells(r.cell_name(f"{family}-shifts{shifts}", seed), lambda: accuracies(
            big, key, r.dataset, seed, temperature=20.0, baseline=False, teacher_shifts=shifts, **recipe))
            for seed in r.seeds]
        shifted_errors = [round((1 - c["student_acc"]) * r.n_test) for c in cells if c is not None]
    copies = r.plan.get("hinton_copies", 1) if shifts else 1
    together = _copies(r, family, big, key, probs, copies, shifts, recipe) if copies > 1 else None
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
        shifted_row = _("repro.hinton.row.shifts").format(readings=(2 * shifts + 1) ** 2) if shifts else None
        copies_row = _("repro.hinton.row.copies").format(copies=copies, readings=(2 * shifts + 1) ** 2) \
            if together else None
        recipe = _("repro.hinton.recipe_2012").format(c=f"{big_how['max_norm']:g}") if big_how.get("max_norm") \
            else _("repro.hinton.recipe_plain")
        return "\n".join([
            _("repro.hinton").format(n=3) + "\n",
            _("repro.hinton.setup").format(recipe=recipe, teacher=teacher_note(big_how), epochs=r.plan["hinton_epochs"],
                                           n=f"{r.n_test:,}") + "\n",
            _("repro.hinton.header").format(n=f"{r.n_test:,}"), "|---|---:|---:|---:|",
            *(f"| {row[role]} | {ours[role][0]} | {ours[role][1]} | {paper} |" for role, paper in HINTON_ERRORS.items()),
            *([f"| {shifted_row} | {errors(shifted_errors) + r.fewer_seeds(shifted_errors)} | "
               f"{rate(shifted_errors)} | {HINTON_ERRORS['distilled']} |"] if shifts else []),
            *([f"| {copies_row} | {errors(together['kd']) + r.fewer_seeds(together['kd'])} | "
               f"{rate(together['kd'])} | {HINTON_ERRORS['distilled']} |"] if together else []),
            *comments([*((row[role], said) for role, said in
                         _hinton_comments(r, big_errors, big_how, alone_errors, kd_errors)),
                       *([(shifted_row, _shifts_comment(r, shifts, ensemble_errors, kd_errors, shifted_errors))]
                         if shifts else []),
                       *([(copies_row, _copies_comment(r, shifts, big_errors, shifted_errors, together))]
                         if together else [])]),
            *_hinton_temperatures(r, by_temperature)])
    return text, {"hinton_teacher_errors": big_errors, "hinton_kd_errors": kd_errors,
                  "hinton_alone_errors": alone_errors,
                  **({"hinton_shift_ensemble_errors": ensemble_errors, "hinton_kd_shifts_errors": shifted_errors}
                     if shifts else {}),
                  **({"hinton_kd_errors_by_T": {str(T): e for T, e in by_temperature.items()}} if by_temperature else {}),
                  **({"hinton_copy_teacher_errors": together["teachers"], "hinton_copies_ensemble_errors":
                      together["ensemble"], "hinton_kd_copies_errors": together["kd"]} if together else {})}


def _copies(r, family, big, key, probs, copies, shifts, recipe):
    """The shift-ensemble row again, with the shipped teacher's separately trained copies 2..`copies`
    (mlp_1200-mnist-copy2.pt: the same recipe, the next seed) beside it, each read at the same shifts:
    {"teachers": the copies' test errors, "ensemble": all readings' test errors, "kd": the students' errors}."""
    more, fingerprints, teacher_errors = [], [], []
    for copy in range(2, copies + 1):
        model, how = reproduction_teacher("mlp_1200", r.dataset, r.plan, copy=copy)
        more.append((model, ("reproduce", "mlp_1200", id(model))))
        fingerprints.append(how.get("fingerprint", "trained"))
        teacher_errors.append(round((1 - teachers.evaluate(model, r.dataset.test_x, r.dataset.test_y)) * r.n_test))
        probs = probs + targets.shift_ensemble_probs(model, r.dataset.test_x, shifts)  # each teacher weighs the same
    name = f"{family}-copies-{'-'.join(fingerprints)}-shifts{shifts}"  # a reshipped copy is a new cell
    cells = [r.cells(r.cell_name(name, seed), lambda: accuracies(
        big, key, r.dataset, seed, more=more, extra_teachers=("mlp_1200",) * (copies - 1), temperature=20.0,
        baseline=False, teacher_shifts=shifts, **recipe)) for seed in r.seeds]
    return {"teachers": teacher_errors, "ensemble": int((probs.argmax(1) != r.dataset.test_y).sum()),
            "kd": [round((1 - c["student_acc"]) * r.n_test) for c in cells if c is not None]}


def _copies_comment(r, shifts, big_errors, shifted_errors, together):
    """What separately trained teachers added to the first one's shift ensemble."""
    if len(together["kd"]) != len(r.seeds) or len(shifted_errors) != len(r.seeds):  # the same seeds on both sides
        return None
    mean = statistics.mean(together["kd"])
    return _("repro.hinton.copies_why").format(
        copies=len(together["teachers"]) + 1, first=big_errors, others=", ".join(map(str, together["teachers"])),
        readings=(len(together["teachers"]) + 1) * (2 * shifts + 1) ** 2, ensemble=together["ensemble"],
        together=f"{mean:.1f}", shifted=f"{statistics.mean(shifted_errors):.1f}",
        reached=_("repro.hinton.shifts_reached" if mean <= 90 else "repro.hinton.shifts_short"))


def _shifts_comment(r, shifts, ensemble_errors, kd_errors, shifted_errors):
    """What the shift-ensemble teacher did to the distilled student, against the plain teacher's."""
    if len(shifted_errors) != len(r.seeds) or len(kd_errors) != len(r.seeds):  # the same seeds on both sides
        return None
    shifted = statistics.mean(shifted_errors)
    return _("repro.hinton.shifts_why").format(
        readings=(2 * shifts + 1) ** 2, k=shifts, ensemble=ensemble_errors,
        plain=f"{statistics.mean(kd_errors):.1f}", shifted=f"{shifted:.1f}",
        reached=_("repro.hinton.shifts_reached" if shifted <= 90 else "repro.hinton.shifts_short"))


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
