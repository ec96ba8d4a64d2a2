"""Plain-text and Markdown views of runs, predictions and tables (strings only; no gradio)."""
import html
from pathlib import Path

RESULTS_PATH = Path(__file__).resolve().parents[1] / "results" / "reproduce.md"


def notice(message, ok=None):
    # Plain words, no emoji: a browser without an emoji font (headless Chromium) shows boxes.
    return f"**{html.escape(message)}**" if ok is False else html.escape(message)


def hint(message):
    return f"*{html.escape(message)}*"


def _duration(seconds):
    if seconds is None:
        return "…"
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def status(snap, mine):
    """One line: phase, epoch, step and ETA, or how the run ended."""
    if snap is None:
        return "**Status:** idle. No run yet: the drawing below uses the shipped checkpoints."
    cfg = snap["config"]
    who = "your run" if mine else "a run started by another visitor"
    what = (f"{cfg['teacher']} → {cfg['student']}, T={cfg['temperature']:g}, α={cfg['alpha']:g}, "
            f"{cfg['epochs']} epochs")
    where = f" on {snap['device']}, {snap['data']} data" if snap["device"] else ""
    state = snap["state"]
    if state == "running":
        progress = ""
        if snap["steps"]:
            progress = (f" · epoch {snap['epoch']}/{snap['epochs']} · step {snap['step']}/{snap['steps']}"
                        f" · ETA {_duration(snap['eta_s'])}")
        return (f"**Running** ({who}): {html.escape(snap['phase'])}{progress}  \n"
                f"{html.escape(snap['message'])} · {what}{where} · {_duration(snap['elapsed_s'])} elapsed")
    if state == "finished":
        m = snap["metrics"]
        base = m["baseline_acc"]
        gain = "" if base is None else f" · KD gain **{100 * (m['student_acc'] - base):+.2f} pts**"
        warn = "".join(f"  \nWarning: {html.escape(w)}" for w in snap["warnings"])
        return (f"**Finished** in {_duration(m['seconds'])}: teacher {m['teacher_acc']:.2%}, KD student "
                f"**{m['student_acc']:.2%}**, baseline {'-' if base is None else format(base, '.2%')}{gain}  \n"
                f"{what}{where}. The drawing below now uses these models.{warn}")
    label = "Failed" if state == "failed" else "Stopped"
    return (f"**{label}:** {html.escape(snap['message'])}  \n{what}. The models of the last finished run "
            "are unchanged; you can start a new run.")


def comparison_table(table):
    """The seed article's results table, measured live for the finished run."""
    if not table:
        return ""
    lines = ["| model | architecture | parameters | size on disk | test accuracy | batch-1 latency |",
             "|---|---|---:|---:|---:|---:|"]
    for r in table["rows"]:
        lines.append(f"| {r['model']} | {r['arch']} | {r['params']:,} | {r['size_mb']:.2f} MB | "
                     f"{r['test_acc']:.2%} | {r['latency_ms']:.2f} ms |")
    if table["kd_gain"] is not None:
        lines.append(f"\n**KD gain (student − baseline): {100 * table['kd_gain']:+.2f} points** on "
                     f"{table['test_samples']:,} held-out {table['data']} digits "
                     f"(one run; ±{100 * 1.96 * (0.02 * 0.98 / table['test_samples']) ** 0.5:.2f} pts is the "
                     "95% sampling noise of one accuracy near 98%).")
    return "\n".join(lines)


def top_labels(probs):
    """{"0": p0, ..., "9": p9} for gr.Label (it shows the top classes)."""
    return {str(digit): float(p) for digit, p in enumerate(probs)}


def prediction_note(result):
    t, s = result["teacher"]["p1"], result["student"]["p1"]
    t_top, s_top = max(range(10), key=t.__getitem__), max(range(10), key=s.__getitem__)
    agree = "agree" if t_top == s_top else "**disagree**"
    lines = [f"Teacher says **{t_top}**, student says **{s_top}**: they {agree}. "
             f"KL(teacher‖student) at T={result['temperature']:g} is {result['kl_T']:.4f}.",
             f"Models: {html.escape(result['models'])}."]
    lines += [f"**Note:** {html.escape(n)}" for n in result["notes"]]
    return "  \n".join(lines)


def reproduction_markdown(path=RESULTS_PATH):
    if not Path(path).is_file():
        return ("No reproduction results yet. Run `python -m kdapp reproduce --quick` (a few minutes) "
                "or `python -m kdapp reproduce` to regenerate them.")
    return Path(path).read_text(encoding="utf-8")
