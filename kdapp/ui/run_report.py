"""A finished run in words, as the Distill tab shows it under its curves: the seed article's table
measured live (comparison_table), its int8 students' deployment table (quantize_report), and what
its student learned from the teacher (fidelity_markdown). Strings only, as reports."""
from kdapp.ui.i18n import _
from kdapp.ui.reports import _pct, data_name, gain_text, settings_line


def comparison_table(table):
    """The seed article's results table, measured live for a finished run."""
    if not table:
        return ""
    lines = [_("comparison.header"), "|---|---|---:|---:|---:|---:|"]
    for r in table["rows"]:
        size = "-" if r["size_mb"] is None else f"{r['size_mb']:.2f} MB"
        latency = "-" if r["latency_ms"] is None else f"{r['latency_ms']:.2f} ms"
        lines.append(f"| {model_name(r['model'])} | {r['arch']} | {r['params']:,} | {size} | {r['test_acc']:.2%} "
                     f"| {latency} |")
    m = table["metrics"]
    lines.append("\n" + _("comparison.settings").format(what=settings_line(table["config"])))
    if m.get("baseline_acc") is not None:
        lines.append("\n" + _("comparison.gain").format(gain=gain_text(m), n=f"{m['test_samples']:,}",
                                                         data=data_name(m["data"])))
    if m.get("quantized"):  # measured by the worker on the int8 files themselves
        lines.append("\n" + quantize_report(m["quantized"]))
    return "\n".join(lines)


MODEL_NAMES = {"teacher": "role.teacher", "KD student": "role.student", "student": "role.student",
               "baseline student": "role.baseline_student", "baseline": "role.baseline_short"}


def model_name(name):
    """A model's row name from the lab's tables ("teacher", "KD student", ...) in words."""
    return _(MODEL_NAMES[name]) if name in MODEL_NAMES else name


def quantize_report(quantized):
    """The deployment table of a run with int8 students (kdapp.evaluation.quantize.compare's rows),
    and the sentence that says where int8 pays on this CPU and where it does not."""
    method = quantized["method"]
    lines = [_("int8.title").format(method=_(f"int8.method.{method}") if method in ("ptq", "qat") else method), "",
             _("int8.header"), "|---|---|---:|---:|---:|---:|---:|---:|"]
    rows = quantized["rows"]
    for r in rows:
        size = f"{r['bytes'] / 1e3:.1f} kB" + (f" ({r['size_vs_fp32']:.0%})" if "size_vs_fp32" in r else "")
        lines.append(f"| {model_name(r['model'])} | {r['precision']} | {size} | {_ms(r.get('latency_ms_b1'))} | "
                     f"{_ms(r.get('latency_ms_b256'))} | {r['test_acc']:.2%} | {_pct(r['agreement_with_teacher'])} "
                     f"| {_pct(r['agreement_with_fp32'])} |")
    pairs = [(a, b) for a, b in zip(rows[::2], rows[1::2]) if "latency_ms_b1" in a]
    if pairs:
        fp32, int8 = pairs[0]
        speed = {n: fp32[f"latency_ms_b{n}"] / int8[f"latency_ms_b{n}"] for n in (1, 256)}

        def verdict(x):
            if x >= 1.05:
                return _("int8.faster").format(x=f"{x:.2f}")
            return _("int8.same") if x > 0.95 else _("int8.slower").format(x=f"{1 / x:.2f}")
        lines.append("\n" + _("int8.verdict").format(
            model=model_name(fp32["model"]), share=f"{int8['bytes'] / fp32['bytes']:.0%}", b1=verdict(speed[1]),
            b256=verdict(speed[256]), int8=f"{int8['digits_per_s_b256']:,.0f}", fp32=f"{fp32['digits_per_s_b256']:,.0f}"))
    return "\n".join(lines)


def _ms(value):
    return "-" if value is None else f"{value:.3f} ms"


def fidelity_markdown(fidelity):
    """Agreement, KL and per-class accuracy of a finished run (kdapp.evaluation.fidelity's dict)."""
    if not fidelity:
        return ""
    roles = [r for r in ("student", "baseline") if r in fidelity["accuracy"]]
    names = {"teacher": _("role.teacher"), "student": _("role.student"), "baseline": _("role.baseline")}
    T, n = fidelity["temperature"], fidelity["test_samples"]
    acc = fidelity["accuracy"]
    rows = [f"| {_('fidelity.on').format(n=f'{n:,}')} | " + " | ".join(names[r] for r in roles) + " |",
            "|---|" + "---:|" * len(roles),
            f"| {_('fidelity.accuracy')} | " + " | ".join(f"{acc[r]:.2%}" for r in roles) + " |"]
    if fidelity["agreement"]:
        rows += [f"| **{_('fidelity.agrees')}** | " + " | ".join(f"**{fidelity['agreement'][r]:.2%}**"
                                                               for r in roles) + " |",
                 f"| {_('fidelity.kl').format(T='1')} | " + " | ".join(f"{fidelity['kl'][r]['T1']:.4f}" for r in roles)
                 + " |",
                 f"| {_('fidelity.kl').format(T=f'{T:g}')} | " + " | ".join(f"{fidelity['kl'][r]['T']:.4f}"
                                                                         for r in roles) + " |"]
    lines = ["\n".join(rows)]
    if fidelity.get("teacher_readings", 1) > 1:  # the students measured against the soft targets' ensemble
        lines.append(_("fidelity.ensemble").format(n=fidelity["teacher_readings"], acc=f"{acc['teacher']:.2%}"))
    if not fidelity["agreement"]:
        lines.append(_("fidelity.no_teacher"))
    if "fixed" in fidelity:
        fixed, broken = fidelity["fixed"]["count"], fidelity["broken"]["count"]
        lines.append(_("fidelity.changed").format(fixed=fixed, broken=broken, net=f"{fixed - broken:+d}",
                                                  student=f"{acc['student']:.2%}", baseline=f"{acc['baseline']:.2%}",
                                                  n=f"{n:,}"))
    else:
        lines.append(_("fidelity.no_baseline"))
    per_class = [r for r in ("teacher", "student", "baseline") if r in fidelity["per_class"]]
    table = [f"| {_('fidelity.per_class')} | " + " | ".join(str(d) for d in range(10)) + " |",
             "|---|" + "---:|" * 10]
    for role in per_class:
        table.append(f"| {names[role]} | " + " | ".join(f"{100 * v:.1f}" for v in fidelity["per_class"][role]) + " |")
    lines.append("\n".join(table))
    return "\n\n".join(lines)
