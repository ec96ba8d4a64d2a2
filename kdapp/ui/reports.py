"""Plain-text and Markdown views of runs, predictions and tables (strings only; no gradio)."""
import html
from pathlib import Path

from kdapp.stats import gain_interval
from kdapp.losses import LOGIT_LOSSES

RESULTS_PATH = Path(__file__).resolve().parents[2] / "results" / "reproduce.md"
RESULTS_MNIST_PATH = RESULTS_PATH.with_name("reproduce-mnist.md")
METHODS_PATHS = {"sample": RESULTS_PATH.with_name("methods.md"), "mnist": RESULTS_PATH.with_name("methods-mnist.md")}


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
        notes.append(f"There is no run {code(missing_run)}; showing the lab as it is.")
    if ignored:
        notes.append(f"Ignored from the link (unknown or out of range): {', '.join(code(k) for k in ignored)}.")
    return " ".join(notes)


def hint(message):
    return f"*{html.escape(message)}*"


def _duration(seconds):
    if seconds is None:
        return "…"
    seconds = max(0, seconds)
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def settings_line(config):
    """A run's settings in one line, extras included only when they are on."""
    c = config
    if c.get("kind") == "continual":  # a continual run shares the queue with distillation runs
        epochs = f"{c['epochs']} epoch{'s' * (c['epochs'] != 1)} per task"
        return html.escape(f"continual learning: {c['tasks']} tasks, {c['scenario']}-incremental, "
                           f"{', '.join(c['strategies'])}, memory {c['memory']}, {epochs}")
    parts = [f"{c['teacher']}{''.join(' + ' + t for t in c.get('extra_teachers', []))} → {c['student']}",
             f"T={c['temperature']:g}", f"α={c['alpha']:g}" + (f"→{c['alpha_end']:g}" if c.get("alpha_end") is not None
                                                            else ""),
             f"{c['epochs']} epochs"]
    if c.get("loss", "kd") != "kd":
        entry = LOGIT_LOSSES[c["loss"]]
        weights = ", ".join(f"{symbol}={c[name]:g}" for name, symbol in entry.settings.items())
        parts.insert(1, entry.short + (f" ({weights})" if weights else ""))
    if c.get("train_fraction", 1.0) != 1.0:
        parts.append(f"{c['train_fraction']:.0%} of the data")
    if c.get("omit_class") is not None:
        parts.append(f"no {c['omit_class']}s in the students' data")
    if c.get("teacher") == "self" and c.get("self_distill") == "deep":
        parts.append("deep supervision (no teacher)")
    elif c.get("teacher") == "self":
        parts.append(f"born-again, {c.get('generations', 1)} generation{'s' if c.get('generations', 1) > 1 else ''}")
    if c.get("feature_loss", "none") != "none":
        parts.append(f"{c['feature_loss']} feature loss ×{c['feature_weight']:g}")
    parts += technique_words(c)
    if c.get("clip_grad_norm"):
        parts.append(f"clip {c['clip_grad_norm']:g}")
    if c.get("consistent"):
        parts.append("consistent teaching")
    elif c.get("augment"):
        parts.append("±2 px shifts")
    return html.escape(", ".join(parts))


def gain_text(metrics):
    if not metrics or metrics.get("baseline_acc") is None:
        return ""
    gain = metrics["student_acc"] - metrics["baseline_acc"]
    ci = gain_interval(metrics["student_acc"], metrics["baseline_acc"], metrics["test_samples"])
    return f"{100 * gain:+.2f} ± {100 * ci:.2f} pts"


def status(run, mine, newest_finished=None):
    """The run on show: its progress, its place in the queue, or how it ended."""
    if run is None:
        return "**Status:** idle. No finished run yet: the drawing below uses the shipped checkpoints."
    who = "your run" if mine else "a run started by another visitor"
    rid = html.escape(run["id"])
    what = settings_line(run["config"])
    where = f" on {html.escape(run['device'])}, {html.escape(run['data'])} data" if run.get("device") else ""
    if run.get("resumed_from_epoch") is not None:  # a server restart (or a worker's death) in between
        where += f" · resumed from epoch {run['resumed_from_epoch']} after a restart"
    state = run["state"]
    if state == "queued":
        eta = f" · starts in about {_duration(run.get('starts_in_s'))}" if run.get("starts_in_s") is not None else ""
        position = f", position {run['position']}" if run.get("position") else ""
        return f"**Run {rid}** ({who}) is queued{position}{eta}  \n{what}"
    if state == "running":
        p = run["progress"]
        progress = ""
        if p["steps"]:
            progress = f" · epoch {p['epoch']}/{p['epochs']} · step {p['step']}/{p['steps']} · ETA {_duration(p['eta_s'])}"
        return (f"**Running: run {rid}** ({who}): {html.escape(p['phase'])}{progress}  \n"
                f"{html.escape(run['message'] or '')} · {what}{where} · {_duration(run.get('elapsed_s'))} elapsed")
    if state == "finished":
        m = run["metrics"]
        base = m["baseline_acc"]
        gain = f" · KD gain **{gain_text(m)}**" if base is not None else ""
        warn = "".join(f"  \nWarning: {html.escape(w)}" for w in run["warnings"])
        files = "" if run["has_checkpoints"] else " Its model files were pruned (only the newest runs keep them)."
        teacher = "no teacher" if m["teacher_acc"] is None else f"teacher {m['teacher_acc']:.2%}"
        return (f"**Finished: run {rid}** in {_duration(m['seconds'])}: {teacher}, KD student "
                f"**{m['student_acc']:.2%}**, baseline {'-' if base is None else format(base, '.2%')}{gain}  \n"
                f"{what}{where}.{files}{warn}{method_results(m)}")
    label = {"failed": "Failed", "cancelled": "Stopped", "interrupted": "Interrupted"}.get(state, state)
    newest = ""
    if newest_finished is not None:
        newest = (f"  \nThe newest finished run is run {html.escape(newest_finished['id'])} "
                  f"({settings_line(newest_finished['config'])}, student {newest_finished['metrics']['student_acc']:.2%}).")
    return f"**{label}: run {rid}** ({who}): {html.escape(run['message'] or '')}  \n{what}.{newest}"


def method_results(m):
    """What a method's own experiment measured: the omitted class (Hinton's missing 3), the
    born-again generations. Empty for other runs."""
    lines = []
    if m.get("omitted_class") is not None:
        c, n = m["omitted_class"], m["omitted_test_digits"]
        for role, name in (("student", "KD student"), ("baseline", "baseline")):
            if f"{role}_omitted_errors" in m:
                lines.append(f"{name}: {n - m[f'{role}_omitted_errors']} of {n} test {c}s right "
                             f"({m[f'{role}_omitted_acc']:.1%}; {m[f'{role}_errors']} errors in all); after raising "
                             f"the {c}'s bias by {m[f'{role}_bias_shift']:.2f}: {m[f'{role}_omitted_acc_adjusted']:.1%} "
                             f"({m[f'{role}_errors_adjusted']} errors in all)")
        lines.insert(0, f"**Neither student saw a {c}.** Hinton et al. (2015), full MNIST, T=20: 133 of 1,010 3s "
                        "wrong, 14 after the bias correction.")
    if m.get("generations"):
        lines.append("Born-again generations (0 = labels only): " +
                     " → ".join(f"{acc:.2%}" for acc in m["generations"]))
    return "".join(f"  \n{line}" for line in lines)


def queue(active):
    """Everyone's queued and running runs, in order, with whose they are and when they should end."""
    if not active:
        return ""
    lines = ["| # | run | whose | settings | done in |", "|---:|---|---|---|---:|"]
    for r in active:
        place = "training" if r["position"] == 0 else str(r["position"])
        lines.append(f"| {place} | {html.escape(r['id'])} | {'yours' if r['mine'] else 'another visitor'} | "
                     f"{settings_line(r['config'])} | ~{_duration(r['eta_s'])} |")
    return "**Queue**\n\n" + "\n".join(lines)


def comparison_table(table):
    """The seed article's results table, measured live for a finished run."""
    if not table:
        return ""
    lines = ["| model | architecture | parameters | size on disk | test accuracy | latency, one digit |",
             "|---|---|---:|---:|---:|---:|"]
    for r in table["rows"]:
        size = "-" if r["size_mb"] is None else f"{r['size_mb']:.2f} MB"
        latency = "-" if r["latency_ms"] is None else f"{r['latency_ms']:.2f} ms"
        lines.append(f"| {r['model']} | {r['arch']} | {r['params']:,} | {size} | {r['test_acc']:.2%} | {latency} |")
    m = table["metrics"]
    lines.append(f"\nSettings: {settings_line(table['config'])}.")
    if m.get("baseline_acc") is not None:
        lines.append(f"\n**KD gain (student − baseline): {gain_text(m)}** on {m['test_samples']:,} held-out "
                     f"{m['data']} digits (one run; ± is the 95% sampling interval of the difference, "
                     "binomial on the test size).")
    if m.get("quantized"):  # measured by the worker on the int8 files themselves
        lines.append("\n" + quantize_report(m["quantized"]))
    return "\n".join(lines)


QUANTIZE_NAMES = {"ptq": "post-training int8", "qat": "quantization-aware int8 (KD student with its teacher)"}


def quantize_report(quantized):
    """The deployment table of a run with int8 students (kdapp.evaluation.quantize.compare's rows),
    and the sentence that says where int8 pays on this CPU and where it does not."""
    lines = [f"**int8 students: {QUANTIZE_NAMES.get(quantized['method'], quantized['method'])}** (ONNX, "
             "measured in onnxruntime on one CPU thread)", "",
             "| model | precision | size on disk | batch 1 | batch 256 | test accuracy | agrees with teacher "
             "| agrees with fp32 |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    rows = quantized["rows"]
    for r in rows:
        size = f"{r['bytes'] / 1e3:.1f} kB" + (f" ({r['size_vs_fp32']:.0%})" if "size_vs_fp32" in r else "")
        lines.append(f"| {r['model']} | {r['precision']} | {size} | {_ms(r.get('latency_ms_b1'))} | "
                     f"{_ms(r.get('latency_ms_b256'))} | {r['test_acc']:.2%} | {_pct(r['agreement_with_teacher'])} "
                     f"| {_pct(r['agreement_with_fp32'])} |")
    pairs = [(a, b) for a, b in zip(rows[::2], rows[1::2]) if "latency_ms_b1" in a]
    if pairs:
        fp32, int8 = pairs[0]
        speed = {n: fp32[f"latency_ms_b{n}"] / int8[f"latency_ms_b{n}"] for n in (1, 256)}
        verdict = lambda x: f"{x:.2f}× as fast" if x >= 1.05 else ("no faster" if x > 0.95 else f"{1 / x:.2f}× slower")
        lines.append(f"\nThe int8 {fp32['model']} is {int8['bytes'] / fp32['bytes']:.0%} of the fp32 file's bytes; "
                     f"at batch 1 it is {verdict(speed[1])}, at batch 256 {verdict(speed[256])} "
                     f"({int8['digits_per_s_b256']:,.0f} digits/s against {fp32['digits_per_s_b256']:,.0f}).")
    return "\n".join(lines)


def _ms(value):
    return "-" if value is None else f"{value:.3f} ms"


def technique_words(c, short=False):
    """The techniques of kdapp.training.techniques a run uses, in words (or short, for the runs table)."""
    words = []
    schedule = c.get("temperature_schedule", "constant")
    if schedule == "ctkd":
        words.append(f"CTKD T in [{c['temperature']:g}, {c['temperature_end']:g}]" if c.get("temperature_end")
                     is not None else "CTKD T")
    elif schedule != "constant":
        words.append(f"T {c['temperature']:g}→{c['temperature_end']:g} ({schedule})")
    if c.get("teacher") == "mutual":
        words.append("DML" if short else "deep mutual learning (no pretrained teacher)")
    if c.get("joint_epochs"):
        words.append(f"+{c['joint_epochs']} joint" if short else f"then {c['joint_epochs']} joint epochs")
    if c.get("collapse_weight"):
        words.append(f"collapse λ={c['collapse_weight']:g}")
    if c.get("adversarial_weight"):
        words.append(f"adversarial μ={c['adversarial_weight']:g}")
    return words


# The gain beside the id: on a phone it shows without scrolling the table sideways.
RUN_COLUMNS = ["id", "KD gain (95%)", "state", "teacher → student", "T", "α", "epochs", "fraction", "extras",
               "student", "baseline", "time"]


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
        extras += [f"clip {c['clip_grad_norm']:g}"] if c.get("clip_grad_norm") else []
        rows.append([r["id"], gain_text(m), r["state"], f"{c['teacher']} → {c['student']}", c["temperature"],
                     c["alpha"], c["epochs"], c["train_fraction"], " ".join(extras), _pct(m.get("student_acc")),
                     _pct(m.get("baseline_acc")), _duration(m["seconds"]) if m.get("seconds") else ""])
    return {"headers": RUN_COLUMNS, "data": rows or [[""] * len(RUN_COLUMNS)]}


def _pct(value):
    return "" if value is None else f"{value:.2%}"


def config_diff(records):
    """What differs between the selected runs' settings, as a small table."""
    if len(records) < 2:
        return "Select two or more runs to see what differs between them." if records else ""
    keys = [k for k in records[0]["config"] if len({repr(r["config"].get(k)) for r in records}) > 1]
    if not keys:
        return "These runs have the same settings (they differ only by chance, or by seed)."
    lines = ["| setting | " + " | ".join(html.escape(r["id"]) for r in records) + " |",
             "|---|" + "---:|" * len(records)]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(html.escape(str(r["config"].get(k))) for r in records) + " |")
    return "\n".join(lines)


def link(label, url):
    """A relative link (it works wherever the app is served), shown as its own text to copy. `url`
    is ours (urlencoded, validated values), so it needs no escaping; a code span would show &amp;."""
    return f"{html.escape(label)}: [`{url}`]({url})"


def run_link(run_id):
    return link(f"Link to run {run_id}", f"/?run={run_id}")


def top_labels(probs):
    """{"0": p0, ..., "9": p9} for gr.Label (it shows the top classes)."""
    return {str(digit): float(p) for digit, p in enumerate(probs)}


def prediction_note(result):
    top = {role: max(range(10), key=result[role]["p1"].__getitem__) for role in ROLES if role in result}
    T = result["temperature"]
    if "teacher" in result:
        agree = "agree" if top["teacher"] == top["student"] else "**disagree**"
        lines = [f"Teacher says **{top['teacher']}**, student says **{top['student']}**: they {agree}. "
                 f"KL(teacher‖student) at T={T:g} is {result['kl_T']:.4f}."]
    else:
        lines = [f"The student says **{top['student']}**. This run has no teacher: the student taught itself "
                 "(deep supervision), so there is no teacher to agree with."]
    lines.append(f"Models: {html.escape(result['models'])}.")
    if "baseline" in result:
        kl = f"; its KL to the teacher at T={T:g} is {result['baseline']['kl_T']:.4f}" if "teacher" in result else ""
        lines.append(f"The baseline (no KD) says **{top['baseline']}**{kl}.")
    lines += [f"**Note:** {html.escape(n)}" for n in result["notes"]]
    return "  \n".join(lines)


def reproduction_markdown(path=RESULTS_PATH):
    if not Path(path).is_file():
        methods = " --methods" if Path(path) in METHODS_PATHS.values() else ""
        mnist = " --data mnist" if Path(path) in (RESULTS_MNIST_PATH, METHODS_PATHS["mnist"]) else ""
        return (f"No reproduction results yet at `{Path(path).name}`. Run "
                f"`python -m kdapp reproduce{methods}{mnist}` to regenerate them.")
    return Path(path).read_text(encoding="utf-8")


def fidelity_markdown(fidelity):
    """Agreement, KL and per-class accuracy of a finished run (kdapp.evaluation.fidelity's dict)."""
    if not fidelity:
        return ""
    roles = [r for r in ("student", "baseline") if r in fidelity["accuracy"]]
    names = {"teacher": "teacher", "student": "KD student", "baseline": "baseline (no KD)"}
    T, n = fidelity["temperature"], fidelity["test_samples"]
    acc = fidelity["accuracy"]
    rows = [f"| on {n:,} test digits | " + " | ".join(names[r] for r in roles) + " |",
            "|---|" + "---:|" * len(roles),
            "| accuracy | " + " | ".join(f"{acc[r]:.2%}" for r in roles) + " |"]
    if fidelity["agreement"]:
        rows += ["| **agrees with the teacher** (top-1) | " + " | ".join(f"**{fidelity['agreement'][r]:.2%}**"
                                                                        for r in roles) + " |",
                 "| KL(teacher ‖ model) at T=1 | " + " | ".join(f"{fidelity['kl'][r]['T1']:.4f}" for r in roles) + " |",
                 f"| KL(teacher ‖ model) at T={T:g} | " + " | ".join(f"{fidelity['kl'][r]['T']:.4f}" for r in roles)
                 + " |"]
    lines = ["\n".join(rows)]
    if not fidelity["agreement"]:
        lines.append("This run has no teacher (deep supervision: the student's deepest layer taught its shallower "
                     "ones), so there is no agreement with a teacher to measure.")
    if "fixed" in fidelity:
        fixed, broken = fidelity["fixed"]["count"], fidelity["broken"]["count"]
        net = fixed - broken
        lines.append(f"**Where KD changed the answer:** the KD student is right and the baseline wrong on "
                     f"**{fixed}** digits, and the other way round on **{broken}**: net **{net:+d}** digits, "
                     f"which is the KD gain ({acc['student']:.2%} − {acc['baseline']:.2%}) × {n:,}. "
                     "Click a digit below to see the three models' answers.")
    else:
        lines.append("This run trained no baseline, so there is nothing to say where KD changed the answer.")
    per_class = [r for r in ("teacher", "student", "baseline") if r in fidelity["per_class"]]
    table = ["| accuracy per class | " + " | ".join(str(d) for d in range(10)) + " |",
             "|---|" + "---:|" * 10]
    for role in per_class:
        table.append(f"| {names[role]} | " + " | ".join(f"{100 * v:.1f}" for v in fidelity["per_class"][role]) + " |")
    lines.append("\n".join(table))
    return "\n\n".join(lines)
