"""The Lessons tab's words: a lesson's progress, and its answer from the visitor's own runs
beside what the literature reports (kdapp.lab.lessons holds the lessons and computes their
numbers: `cells`, `measured_metrics`; the app hands them here).

Says plainly when an effect is inside the noise (kdapp.stats). Words come from the catalog of the
language spoken now (kdapp.ui.i18n); numbers are formatted here.
"""
from kdapp import stats
from kdapp.ui.i18n import _, ngettext


def title(lesson_key):
    return _(f"lesson.{lesson_key}.title")


def _pts(value, half=None):
    return f"{value:+.2f}" + ("" if half is None else f" ± {half:.2f}")


def _label(lesson, value):
    if lesson.vary == "temperature":
        return f"T = {value:g}"
    if lesson.vary == "alpha":
        return f"α = {value:g}"
    if lesson.vary == "train_fraction":
        return _("lessons.of_labels").format(fraction=f"{value:.0%}")
    return _("lessons.your_runs_plain")


def summary(key, lesson, found, rows=()):
    """Markdown: the lesson's answer from the visitor's own finished runs, then the literature.
    `found` is kdapp.lab.lessons.cells of the runs; `rows`, their measured_metrics (for a lesson
    that measures the held-out class)."""
    head = f"### {title(key)}\n"
    if not found:
        return head + _("lessons.none_finished")
    if lesson.measure == "omitted":
        return head + _omitted_summary(key, found, rows)
    shown = [(v, found[v]) for v in lesson.values if v in found]
    n = min(c[2] for _v, c in shown)
    seeds = ngettext("lessons.seed_each", "lessons.seeds_each", n).format(n=n)
    parts = "; ".join(_("lessons.gain_at").format(gain=_pts(c[0], c[1]), label=_label(lesson, v)) for v, c in shown)
    lines = [_("lessons.your_runs").format(seeds=seeds, parts=parts)]
    if n < 2:
        lines.append(_("lessons.one_seed"))
    else:
        best_value, best = max(shown, key=lambda vc: vc[1][0])
        others = [c for v, c in shown if v != best_value]
        clear = [v for v, c in shown if stats.clears(c[0], c[1])]
        verdict = (_("lessons.beyond_at").format(labels=_("list.sep").join(_label(lesson, v) for v in clear)) if clear
                   else _("lessons.none_beyond"))
        # Every pair of settings whose gains differ beyond the noise, the larger gain first: the best
        # setting may tie with the runner-up and still clearly beat a third, and that is worth saying.
        ranked = [(a, b) if a[1][0] >= b[1][0] else (b, a)
                  for i, a in enumerate(shown) for b in shown[i + 1:] if stats.apart(a[1], b[1])]
        if others and all(stats.apart(best, c) for c in others):
            lines.append(_("lessons.largest").format(verdict=verdict, label=_label(lesson, best_value)))
        elif ranked:
            pairs = _("list.sep").join(_("lessons.pair").format(hi=_label(lesson, hi[0]), lo=_label(lesson, lo[0]))
                                       for hi, lo in ranked)
            lines.append(_("lessons.ranked").format(verdict=verdict, pairs=pairs))
        elif others:
            lines.append(_("lessons.overlap").format(verdict=verdict))
        else:
            lines.append(_("lessons.verdict").format(verdict=verdict))
    lines.append(_("lessons.literature").format(text=_(f"lesson.{key}.literature")))
    return head + "\n\n".join(lines)


def _omitted_summary(key, found, rows):
    mean, half, n = found[None]
    avg = lambda k: f"{100 * sum(m[k] for m in rows) / len(rows):.1f}%"
    c = rows[0]["omitted_class"]
    lines = [_("lessons.omitted").format(
        seeds=ngettext("lessons.seed", "lessons.seeds", n).format(n=n), digit=c, student=avg("student_omitted_acc"),
        baseline=avg("baseline_omitted_acc"), edge=_pts(mean, half),
        student_adjusted=avg("student_omitted_acc_adjusted"), baseline_adjusted=avg("baseline_omitted_acc_adjusted"))]
    if half is None:
        lines.append(_("lessons.omitted_one_seed"))
    elif stats.clears(mean, half):
        lines.append(_("lessons.omitted_beyond").format(digit=c))
    else:
        lines.append(_("lessons.omitted_inside").format(digit=c))
    lines.append(_("lessons.literature").format(text=_(f"lesson.{key}.literature")))
    return "\n\n".join(lines)


def progress(key, runs):
    """One line while the lesson's runs are under way."""
    done = sum(r["state"] == "finished" for r in runs)
    ended = sum(r["state"] in ("failed", "cancelled", "interrupted") for r in runs)
    return _("lessons.progress").format(title=title(key), done=done, total=len(runs),
                                        ended=_("lessons.ended").format(n=ended) if ended else "")
