"""python -m kdapp quantization: the int8 reproduction, results/quantization-mnist.md (+ .json).

For each shipped full-MNIST pair (lenet5_wide → lenet5, seed_teacher → seed_student) and each
seed: the fp32 students, post-training int8 (PTQ) of both, QAT of the baseline with the labels
alone, and QAT-with-KD of the KD student from its fp32 teacher. QAT fine-tunes the shipped
students (as a deployment would) for qat.QAT_EPOCHS epochs; the seed sets the calibration
digits, the batch order and the augmentation. The students learnt with consistent teaching (pen
strokes, the teacher asked about every batch); to keep a shared 2-core CPU's cost low, QAT here
uses ±2 px shifts and the teacher's soft targets computed once per pair (RECIPE).
Every accuracy is onnxruntime's, on the int8 file.
Finished cells are kept in the .json, so a rerun continues where an interrupted one stopped.
"""
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from kdapp import checkpoints, data as data_lib
from kdapp.config import RunConfig
from kdapp.evaluation import quantize
from kdapp.training import qat
from kdapp.training.teachers import evaluate, predict_logits

RESULTS = Path(__file__).resolve().parents[2] / "results" / "quantization-mnist.md"
PAIRS = (("lenet5_wide", "lenet5"), ("seed_teacher", "seed_student"))
ROWS = (("fp32", "student", "KD student, fp32"), ("fp32", "baseline", "baseline, fp32"),
        ("ptq", "student", "KD student, int8 PTQ"), ("ptq", "baseline", "baseline, int8 PTQ"),
        ("qat", "baseline", "baseline, int8 QAT (labels only)"),
        ("qat-kd", "student", "KD student, int8 QAT with KD"))


RECIPE = {"consistent": False, "augment": True}  # see the docstring


def _config(meta, seed):
    """The run config the shipped student was trained with, at this seed, with RECIPE's augmentation."""
    known = set(RunConfig.__dataclass_fields__)
    return RunConfig.from_dict({k: v for k, v in meta["config"].items() if k in known}).replace(seed=seed, **RECIPE)


_TRAIN_LOGITS = {}  # teacher arch -> its logits over the training digits: the same for every seed


def cell(teacher_arch, student_arch, seed, dataset, tmp):
    """One (pair, seed): accuracies and agreements of every row, from the int8 files."""
    directory = checkpoints.SHIPPED_DIR
    teacher, _ = checkpoints.load(checkpoints.teacher_path(directory, teacher_arch, "mnist"))
    students = {role: checkpoints.load(checkpoints.student_path(directory, student_arch, kind, "mnist"))
                for role, kind in (("student", "kd"), ("baseline", "baseline"))}
    config = _config(students["student"][1], seed)
    calibration = quantize.calibration_images(dataset.train_x, seed=seed)
    teacher_logits = predict_logits(teacher, dataset.test_x).numpy()
    if teacher_arch not in _TRAIN_LOGITS:
        _TRAIN_LOGITS[teacher_arch] = predict_logits(teacher, dataset.train_x)
    out, fp32_logits = {"teacher_acc": evaluate(teacher, dataset.test_x, dataset.test_y)}, {}
    tmp = Path(tmp)

    def score(name, role, onnx_path):
        row, logits = quantize.measure(onnx_path, dataset.test_x, dataset.test_y, teacher_logits,
                                       fp32_logits.get(role), timing=False)
        out[f"{name}/{role}"] = row
        return logits

    for role, (model, _) in students.items():
        fp32_path = quantize.export_fp32(model, student_arch, tmp / f"{role}-fp32.onnx", "mnist")
        fp32_logits[role] = score("fp32", role, fp32_path)
        score("ptq", role, quantize.quantize_onnx(fp32_path, tmp / f"{role}-ptq.onnx", calibration))
    for name, role, teachers in (("qat", "baseline", ()), ("qat-kd", "student", (teacher,))):
        started = time.monotonic()
        tuned, _ = qat.fine_tune(students[role][0], student_arch, dataset, config, teachers, seed=seed,
                                 label=role, teacher_logits=[_TRAIN_LOGITS[teacher_arch]] if teachers else None)
        path = quantize.export_fp32(tuned, student_arch, tmp / f"{role}-{name}.onnx", "mnist")
        score(name, role, quantize.quantize_onnx(path, tmp / f"{role}-{name}-int8.onnx", calibration))
        out[f"{name}/{role}"]["seconds"] = round(time.monotonic() - started, 1)
    return out


def timing_rows(student_arch, dataset, tmp):
    """Size and latency of the shipped KD student's fp32 and int8 (PTQ) files (once: the same
    graph whatever the seed)."""
    model, _ = checkpoints.load(checkpoints.student_path(checkpoints.SHIPPED_DIR, student_arch, "kd", "mnist"))
    fp32_path = quantize.export_fp32(model, student_arch, Path(tmp) / "timing-fp32.onnx", "mnist")
    int8_path = quantize.quantize_onnx(fp32_path, Path(tmp) / "timing-int8.onnx",
                                       quantize.calibration_images(dataset.train_x))
    return quantize.compare({"KD student": (fp32_path, int8_path)}, dataset.test_x, dataset.test_y)


def _mean_sd(values):
    values = [100 * v for v in values]
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f}"


def markdown(results):
    seeds = results["seeds"]
    lines = ["# int8 students on full MNIST: PTQ, QAT and QAT with KD", "",
             f"Generated by `{results['command']}` ({results['date']}). Test accuracy (%) on the 10,000 MNIST "
             "test digits, mean ± sd over the seeds run (each section says which), computed by onnxruntime on each "
             "int8 file. QAT fine-tunes the shipped full-MNIST students for "
             f"{results['qat_epochs']} epoch(s) at a tenth of their learning rate, with ±2 px shifts and the teacher's "
             "soft targets computed once (the students learnt with consistent teaching; asking the teacher "
             "about every pen-stroked batch costs a shared CPU too much); the seed sets the "
             f"{quantize.CALIBRATION_DIGITS} calibration digits, the batch order and the shifts.", ""]
    for teacher_arch, student_arch in PAIRS:
        cells = [results["cells"].get(f"{student_arch}/{s}") for s in seeds]
        cells = [c for c in cells if c]
        if not cells:
            lines += [f"## {teacher_arch} → {student_arch}", "", "not run yet", ""]
            continue
        done = [s for s in seeds if f"{student_arch}/{s}" in results["cells"]]
        lines += [f"## {teacher_arch} → {student_arch} (teacher {100 * cells[0]['teacher_acc']:.2f}%)", "",
                  f"Seeds run: {', '.join(map(str, done))} of {', '.join(map(str, seeds))}.", "",
                  "| model | test accuracy | agrees with teacher | agrees with its fp32 file |",
                  "|---|---:|---:|---:|"]
        for name, role, label in ROWS:
            key = f"{name}/{role}"
            agree_fp32 = "" if name == "fp32" else _mean_sd([c[key]["agreement_with_fp32"] for c in cells])
            lines.append(f"| {label} | {_mean_sd([c[key]['test_acc'] for c in cells])} | "
                         f"{_mean_sd([c[key]['agreement_with_teacher'] for c in cells])} | {agree_fp32} |")
        gap = lambda a, b: _mean_sd([c[a]["test_acc"] - c[b]["test_acc"] for c in cells])
        lines += ["", f"- What KD adds once the student is int8 (QAT with KD − QAT with labels): "
                      f"{gap('qat-kd/student', 'qat/baseline')} points; in fp32 (KD − baseline): "
                      f"{gap('fp32/student', 'fp32/baseline')} points.",
                  f"- QAT with KD − the fp32 KD student: {gap('qat-kd/student', 'fp32/student')} points; "
                  f"PTQ − fp32 (KD student): {gap('ptq/student', 'fp32/student')} points.", ""]
        timing = results.get("timing", {}).get(student_arch)
        if timing:
            fp32, int8 = timing
            lines += ["Size and speed of the KD student (onnxruntime, one CPU thread, median of 30 calls):", "",
                      "| file | bytes | batch 1 | batch 256 | digits/s at 256 |", "|---|---:|---:|---:|---:|"]
            for r in timing:
                lines.append(f"| {r['precision']} | {r['bytes']:,} | {r['latency_ms_b1']:.3f} ms | "
                             f"{r['latency_ms_b256']:.2f} ms | {r['digits_per_s_b256']:,.0f} |")
            lines += ["", f"int8 is {int8['bytes'] / fp32['bytes']:.1%} of the fp32 bytes.", ""]
    return "\n".join(lines)


def cmd_quantization(args):
    out = Path(args.out)
    json_path = out.with_suffix(".json")
    results = json.loads(json_path.read_text()) if json_path.is_file() and not args.fresh else {"cells": {}}
    seeds = list(range(args.seeds))
    if not args.cached_only:  # the command that computes the cells, not one that only rewrites the tables
        results.update(command="python -m kdapp " + " ".join(sys.argv[1:]), date=time.strftime("%Y-%m-%d"))
    results.update(seeds=seeds, qat_epochs=qat.QAT_EPOCHS)
    dataset = data_lib.load("mnist", args.data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:  # seed by seed, so that an interrupted run has whole seeds for both pairs
            for teacher_arch, student_arch in PAIRS:
                key = f"{student_arch}/{seed}"
                if key in results["cells"] or args.cached_only:
                    continue
                print(f"{teacher_arch} → {student_arch}, seed {seed}", file=sys.stderr)
                results["cells"][key] = cell(teacher_arch, student_arch, seed, dataset, tmp)
                checkpoints.atomic_write(json_path, lambda f: f.write(json.dumps(results, indent=1).encode()))
        if args.timing:
            results["timing"] = {student: timing_rows(student, dataset, tmp) for _, student in PAIRS}
    checkpoints.atomic_write(json_path, lambda f: f.write(json.dumps(results, indent=1).encode()))
    checkpoints.atomic_write(out, lambda f: f.write(markdown(results).encode()))
    print(markdown(results))


def add_parser(sub):
    p = sub.add_parser("quantization", help="int8 students on full MNIST: fp32, PTQ, QAT and QAT with KD over "
                       "seeds, written to results/quantization-mnist.md (+ .json)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--data-dir", default="data")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--fresh", action="store_true", help="ignore the cells an earlier run kept in the .json")
    p.add_argument("--cached-only", action="store_true",
                   help="train nothing: write the tables from the cells in the .json (seeds not run yet are left out)")
    p.add_argument("--no-timing", dest="timing", action="store_false", help="skip the size and latency table")
    p.set_defaults(func=cmd_quantization)
