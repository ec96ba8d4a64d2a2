"""Plain-text and Markdown views of runs, predictions and tables (strings only; no gradio).

Every word comes from the catalog of the language spoken now (kdapp.ui.i18n: `_("key")`), and
every number is formatted here, the same in both languages.
"""
import html

from kdapp.stats import gain_interval
from kdapp.losses import LOGIT_LOSSES
from kdapp.ui.i18n import _, ngettext, with_lang
from kdapp.ui.sentences import known

ROLES = ("teacher", "student", "baseline")


def notice(message, ok=None):
    """One of our sentences for the visitor who acted (text from a URL goes through `code`)."""
    # Plain words, no emoji: a browser without an emoji font (headless Chromium) shows boxes.
    return f"**{html.escape(message)}**" if ok is False else html.escape(message)


def code(text, limit=60):
    """A value from a stranger (a URL), shown verbatim: a code span is neither HTML, Markdown nor
    a link, whatever it holds."""
    text = str(text)[:limit].replace("`", "'").replace("\n", " ")
    return f"`{text}`"


def url_notice(missing_run, ignored):
    """What a link asked for that the lab could not do."""
    notes = []
    if missing_run is not None:
        notes.append(_("link.no_run").format(id=code(missing_run)))
    if ignored:
        notes.append(_("link.ignored").format(names=", ".join(code(k) for k in ignored)))
    return " ".join(notes)


def hint(message):
    return f"*{html.escape(message)}*"


def _duration(seconds):
    if seconds is None:
        return "…"
    seconds = max(0, seconds)
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"  # units, as numbers


def settings_line(config):
    """A run's settings in one line, extras included only when they are on."""
    c = config
    if c.get("kind") == "continual":  # a continual run shares the queue with distillation runs
        return html.escape(_("settings.continual").format(tasks=c["tasks"],
                                                           scenario=_(f"continual.scenario.{c['scenario']}"),
                                                           strategies=_("list.sep").join(
                                                               _(f"continual.short.{s}") for s in c["strategies"]),
                                                           memory=c["memory"], epochs=c["epochs"]))
    parts = [f"{c['teacher']}{''.join(' + ' + t for t in c.get('extra_teachers', []))} → {c['student']}",
             f"T={c['temperature']:g}", f"α={c['alpha']:g}" + (f"→{c['alpha_end']:g}" if c.get("alpha_end") is not None
                                                            else ""),
             ngettext("settings.epoch", "settings.epochs", c["epochs"]).format(n=c["epochs"])]
    if c.get("loss", "kd") != "kd":
        entry = LOGIT_LOSSES[c["loss"]]
        weights = ", ".join(f"{symbol}={c[name]:g}" for name, symbol in entry.settings.items())
        parts.insert(1, entry.short + (f" ({weights})" if weights else ""))
    if c.get("train_fraction", 1.0) != 1.0:
        parts.append(_("settings.fraction").format(fraction=f"{c['train_fraction']:.0%}"))
    if c.get("omit_class") is not None:
        parts.append(_("settings.omit").format(digit=c["omit_class"]))
    if c.get("teacher") == "self" and c.get("self_distill") == "deep":
        parts.append(_("settings.deep"))
    elif c.get("teacher") == "self":
        n = c.get("generations", 1)
        parts.append(ngettext("settings.born_again", "settings.born_again_n", n).format(n=n))
    if c.get("feature_loss", "none") != "none":
        parts.append(_("settings.feature").format(loss=c["feature_loss"], weight=f"{c['feature_weight']:g}"))
    parts += technique_words(c)
    if c.get("clip_grad_norm"):
        parts.append(_("settings.clip").format(clip=f"{c['clip_grad_norm']:g}"))
    if c.get("consistent"):
        parts.append(_("settings.consistent"))
    elif c.get("augment"):
        parts.append(_("settings.shifts"))
    return html.escape(_("list.sep").join(parts))


def gain_text(metrics):
    if not metrics or metrics.get("baseline_acc") is None:
        return ""
    gain = metrics["student_acc"] - metrics["baseline_acc"]
    ci = gain_interval(metrics["student_acc"], metrics["baseline_acc"], metrics["test_samples"])
    return _("gain.pts").format(gain=f"{100 * gain:+.2f}", ci=f"{100 * ci:.2f}")


def status(run, mine, newest_finished=None):
    """The run on show: its progress, its place in the queue, or how it ended."""
    if run is None:
        return _("status.idle")
    who = _("status.yours") if mine else _("status.another")
    rid = html.escape(run["id"])
    what = settings_line(run["config"])
    where = _("status.where").format(device=html.escape(run["device"]), data=html.escape(data_name(run["data"]))) \
        if run.get("device") else ""
    if run.get("resumed_from_epoch") is not None:  # a server restart (or a worker's death) in between
        where += _("status.resumed").format(epoch=run["resumed_from_epoch"])
    state = run["state"]
    if state == "queued":
        eta = _("status.starts_in").format(eta=_duration(run.get("starts_in_s"))) \
            if run.get("starts_in_s") is not None else ""
        position = _("status.position").format(position=run["position"]) if run.get("position") else ""
        return _("status.queued").format(id=rid, who=who, position=position, eta=eta, what=what)
    if state == "running":
        p = run["progress"]
        progress = ""
        if p["steps"]:
            progress = _("status.progress").format(epoch=p["epoch"], epochs=p["epochs"], step=p["step"],
                                                   steps=p["steps"], eta=_duration(p["eta_s"]))
        return _("status.running").format(id=rid, who=who, phase=html.escape(phase_name(p["phase"])),
                                          progress=progress, message=html.escape(known(run["message"] or "")),
                                          what=what, where=where, elapsed=_duration(run.get("elapsed_s")))
    if state == "finished":
        m = run["metrics"]
        base = m["baseline_acc"]
        gain = _("status.gain").format(gain=gain_text(m)) if base is not None else ""
        warn = "".join("  \n" + _("status.warning").format(warning=html.escape(known(w))) for w in run["warnings"])
        files = "" if run["has_checkpoints"] else _("status.pruned")
        teacher = _("status.no_teacher") if m["teacher_acc"] is None \
            else _("status.teacher_acc").format(acc=f"{m['teacher_acc']:.2%}")
        return _("status.finished").format(
            id=rid, who=who, time=_duration(m["seconds"]), teacher=teacher, student=f"{m['student_acc']:.2%}",
            baseline="-" if base is None else format(base, ".2%"), gain=gain, what=what, where=where,
            files=files) + warn + method_results(m)
    label = {"failed": _("state.failed"), "cancelled": _("state.stopped"),
             "interrupted": _("state.interrupted")}.get(state, state)
    newest = ""
    if newest_finished is not None:
        newest = "  \n" + _("status.newest").format(id=html.escape(newest_finished["id"]),
                                                    what=settings_line(newest_finished["config"]),
                                                    student=f"{newest_finished['metrics']['student_acc']:.2%}")
    message = run["message"] or ""
    if state == "cancelled" and message == STOPPED:  # "Stopped: ... : cancelled: stopped" said it twice
        return _("status.stopped").format(label=label, id=rid, who=who, what=what) + newest
    return _("status.ended").format(label=label, id=rid, who=who, message=html.escape(known(message)),
                                    what=what) + newest


STOPPED = "cancelled: stopped"  # kdapp.lab.worker's message for a run its owner stopped


PHASES = ("starting", "loading data", "teacher", "training teacher", "teacher logits", "distilling", "generation 0",
          "fidelity", "saving", "quantizing", "quantization-aware training", "continual")


def phase_name(phase):
    """A training phase (kdapp.events.phase's name) in words."""
    return _(f"phase.{phase}") if phase in PHASES else phase


def method_results(m):
    """What a method's own experiment measured: the omitted class (Hinton's missing 3), the soft
    targets' ensemble (several teachers, a shift ensemble), the born-again generations. Empty for other runs."""
    lines = []
    if m.get("omitted_class") is not None:
        c, n = m["omitted_class"], m["omitted_test_digits"]
        for role, name in (("student", _("role.student")), ("baseline", _("role.baseline_short"))):
            if f"{role}_omitted_errors" in m:
                lines.append(_("missing.result").format(
                    model=name, right=n - m[f"{role}_omitted_errors"], n=n, digit=c,
                    acc=f"{m[f'{role}_omitted_acc']:.1%}", errors=m[f"{role}_errors"],
                    shift=f"{m[f'{role}_bias_shift']:.2f}", acc_adjusted=f"{m[f'{role}_omitted_acc_adjusted']:.1%}",
                    errors_adjusted=m[f"{role}_errors_adjusted"]))
        lines.insert(0, _("missing.neither").format(digit=c))
    if m.get("targets_acc") is not None:  # the soft targets came from an ensemble (kdapp.training.train.ensemble_metrics)
        baseline = _("targets.baseline").format(agree=f"{m['baseline_targets_agreement']:.2%}") \
            if m.get("baseline_targets_agreement") is not None else ""
        lines.append(_("targets.ensemble").format(readings=m["targets_readings"], T=f"{m['targets_temperature']:g}",
                                                  acc=f"{m['targets_acc']:.2%}",
                                                  student=f"{m['student_targets_agreement']:.2%}", baseline=baseline))
    if m.get("generations"):
        lines.append(_("generations.line").format(accs=" → ".join(f"{acc:.2%}" for acc in m["generations"])))
    return "".join(f"  \n{line}" for line in lines)


def queue(active):
    """Everyone's queued and running runs, in order, with whose they are and when they should end."""
    if not active:
        return ""
    lines = [_("queue.header"), "|---:|---|---|---|---:|"]
    for r in active:
        place = _("queue.training") if r["position"] == 0 else str(r["position"])
        lines.append(f"| {place} | {html.escape(r['id'])} | {_('queue.yours') if r['mine'] else _('queue.another')} | "
                     f"{settings_line(r['config'])} | ~{_duration(r['eta_s'])} |")
    return _("queue.title") + "\n\n" + "\n".join(lines)


def technique_words(c, short=False):
    """The techniques of kdapp.training.techniques a run uses, in words (or short, for the runs table)."""
    words = []
    schedule = c.get("temperature_schedule", "constant")
    if schedule == "ctkd":
        words.append(f"CTKD T in [{c['temperature']:g}, {c['temperature_end']:g}]" if c.get("temperature_end")
                     is not None else "CTKD T")
    elif schedule != "constant":
        words.append(f"T {c['temperature']:g}→{c['temperature_end']:g} ({_('schedule.' + schedule)})")
    if c.get("teacher") == "mutual":
        words.append("DML" if short else _("technique.dml"))
    if c.get("joint_epochs"):
        words.append((_("technique.joint_short") if short else _("technique.joint")).format(n=c["joint_epochs"]))
    if c.get("teacher_shifts"):
        words.append(_("technique.shifts_short" if short else "technique.shifts").format(k=c["teacher_shifts"]))
    if c.get("collapse_weight"):
        words.append(_("technique.collapse").format(weight=f"{c['collapse_weight']:g}"))
    if c.get("adversarial_weight"):
        words.append(_("technique.adversarial").format(weight=f"{c['adversarial_weight']:g}"))
    return words


# The gain beside the id: on a phone it shows without scrolling the table sideways.
RUN_COLUMNS = ["id", "gain", "state", "pair", "T", "α", "epochs", "fraction", "extras", "student", "baseline", "time"]


def runs_rows(records):
    """The Runs tab's table: one row per run, newest first."""
    rows = []
    for r in records:
        c, m = r["config"], r["metrics"] or {}
        extras = [LOGIT_LOSSES[c["loss"]].short] if c.get("loss", "kd") != "kd" else []
        extras += [f"{c['feature_loss']}×{c['feature_weight']:g}"] if c.get("feature_loss", "none") != "none" else []
        extras += [f"+{t}" for t in c.get("extra_teachers", [])]
        extras += [c.get("self_distill", "born-again")] if c["teacher"] == "self" else []
        extras += [f"α→{c['alpha_end']:g}"] if c.get("alpha_end") is not None else []
        extras += technique_words(c, short=True)
        extras += [_("settings.clip").format(clip=f"{c['clip_grad_norm']:g}")] if c.get("clip_grad_norm") else []
        rows.append([r["id"], gain_text(m), state_name(r["state"]), f"{c['teacher']} → {c['student']}",
                     c["temperature"], c["alpha"], c["epochs"], c["train_fraction"], " ".join(extras),
                     _pct(m.get("student_acc")), _pct(m.get("baseline_acc")),
                     _duration(m["seconds"]) if m.get("seconds") else ""])
    headers = [_(f"runs.column.{name}") if name not in ("T", "α") else name for name in RUN_COLUMNS]
    return {"headers": headers, "data": rows or [[""] * len(RUN_COLUMNS)]}


STATES = ("queued", "running", "finished", "failed", "cancelled", "interrupted")


def data_name(source):
    """A dataset ("sample", "mnist") in words: in English its name, as the CLI's --data says it."""
    return _(f"data.name.{source}") if source in ("sample", "mnist") else source


def state_name(state):
    return _(f"state.name.{state}") if state in STATES else state


def _pct(value):
    return "" if value is None else f"{value:.2%}"


def config_diff(records):
    """What differs between the selected runs' settings, as a small table."""
    if len(records) < 2:
        return _("diff.select_two") if records else ""
    keys = [k for k in records[0]["config"] if len({repr(r["config"].get(k)) for r in records}) > 1]
    if not keys:
        return _("diff.same")
    lines = [f"| {_('diff.setting')} | " + " | ".join(html.escape(r["id"]) for r in records) + " |",
             "|---|" + "---:|" * len(records)]
    for k in keys:  # the settings' own names: they are what links and the CLI take
        lines.append(f"| {k} | " + " | ".join(html.escape(str(r["config"].get(k))) for r in records) + " |")
    return "\n".join(lines)


def link(label, url):
    """A relative link (it works wherever the app is served), shown as its own text to copy. `url`
    is ours (urlencoded, validated values), so it needs no escaping; a code span would show &amp;.
    The link keeps the page's language (?lang=)."""
    url = with_lang(url)
    return f"{html.escape(label)}: [`{url}`]({url})"


def run_link(run_id):
    return link(_("link.run").format(id=run_id), f"/?run={run_id}")


def top_labels(probs):
    """{"0": p0, ..., "9": p9} for gr.Label (it shows the top classes)."""
    return {str(digit): float(p) for digit, p in enumerate(probs)}


def prediction_note(result):
    top = {role: max(range(10), key=result[role]["p1"].__getitem__) for role in ROLES if role in result}
    T = f"{result['temperature']:g}"
    if "teacher" in result:
        agree = _("note.agree") if top["teacher"] == top["student"] else f"**{_('note.disagree')}**"
        lines = [_("note.says").format(teacher=top["teacher"], student=top["student"], agree=agree, T=T,
                                       kl=f"{result['kl_T']:.4f}")]
    else:
        lines = [_("note.no_teacher").format(student=top["student"])]
    lines.append(_("note.models").format(models=html.escape(known(result["models"]))))
    if "baseline" in result:
        kl = _("note.baseline_kl").format(T=T, kl=f"{result['baseline']['kl_T']:.4f}") if "teacher" in result else ""
        lines.append(_("note.baseline").format(baseline=top["baseline"], kl=kl))
    lines += [_("note.note").format(note=html.escape(known(n))) for n in result["notes"]]
    return "  \n".join(lines)
