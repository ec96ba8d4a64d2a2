"""`python -m kdapp robustness`: a drawing pair's accuracy and agreement on digits redrawn on the
canvas (MNIST's test digits and scikit-learn's 1,797 UCI digits by other writers), against the
targets in kdapp.evaluation.robustness; the shipped drawing models unless checkpoints are given."""
import argparse
import json
import sys
import time

from kdapp import checkpoints


def add_parser(sub):
    p = sub.add_parser("robustness", help="accuracy and agreement on digits redrawn on the canvas: MNIST's test "
                       "digits and 1,797 UCI digits by other writers", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--teacher-path", default=None, help="checkpoints to score (default: the shipped drawing models)")
    p.add_argument("--student-path", default=None, help="the KD student's checkpoint (with --teacher-path)")
    p.add_argument("--baseline-path", default=None, help="the baseline's checkpoint (optional)")
    p.add_argument("--mnist-digits", type=int, default=2000, help="how many MNIST test digits to redraw")
    p.add_argument("--seed", type=int, default=0, help="which digits are redrawn, and how")
    p.add_argument("--data-dir", default="data", help="where `data import` put full MNIST")
    p.add_argument("--json", action="store_true", help="print one final JSON line")
    p.set_defaults(func=cmd_robustness)


def cmd_robustness(args):
    from kdapp.evaluation import robustness  # scikit-learn's digits and the redrawing: only when asked
    if args.teacher_path or args.student_path:
        if not (args.teacher_path and args.student_path):
            raise ValueError("give both --teacher-path and --student-path (and optionally --baseline-path)")
        paths = {"teacher": args.teacher_path, "student": args.student_path}
        if args.baseline_path:
            paths["baseline"] = args.baseline_path
        label = "the given checkpoints"
    else:
        paths = checkpoints.shipped_drawing_paths()
        label = "the shipped drawing models"
    loaded = {role: checkpoints.load(path) for role, path in paths.items()}
    models = {role: model for role, (model, _) in loaded.items()}
    trained_on = tuple(sorted({meta.get("data") for _, meta in loaded.values()}))
    started = time.monotonic()
    report = robustness.evaluate(models, data_dir=args.data_dir, seed=args.seed, mnist_limit=args.mnist_digits,
                                 trained_on=trained_on)
    report.update(models={role: str(path) for role, path in paths.items()}, trained_on=list(trained_on),
                  seconds=round(time.monotonic() - started, 1))
    failures = robustness.check_targets(report)
    report["targets"] = {"met": not failures, "missed": failures, **robustness.TARGETS}
    print(f"{label}, redrawn at random size, position, stroke width and slant (seed {args.seed}):\n",
          file=sys.stderr)
    print(robustness.table(report), file=sys.stderr)
    print("\ntargets met" if not failures else "\ntargets missed: " + "; ".join(failures), file=sys.stderr)
    if args.json:
        print(json.dumps(report))
