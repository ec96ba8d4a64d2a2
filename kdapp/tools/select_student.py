"""`python -m kdapp select`: the KD student and the baseline, each chosen among several seeds of one recipe
(the folders `distill --out` wrote) by errors on the training digits moved by one pixel
(kdapp.evaluation.selection), then copied where the app and the tests find them."""
import argparse
import json
import shutil
import sys
from pathlib import Path

from kdapp import checkpoints, data

KINDS = ("kd", "baseline")


def add_parser(sub):
    p = sub.add_parser("select", help="choose the KD student and the baseline among seeds by held-out digits "
                       "(the training digits moved by 1 px), never by the test set",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--candidates", nargs="+", required=True, metavar="DIR",
                   help="folders written by `distill --out`, one per seed of the same recipe")
    p.add_argument("--student", default="mlp_800", help="the students' architecture")
    p.add_argument("--data", default="mnist", choices=("mnist", "sample"), help="what the students learnt from")
    p.add_argument("--data-dir", default="data", help="where `data import` put full MNIST")
    p.add_argument("--out", default=None, help="copy the two winners here (default: only report)")
    p.add_argument("--json", action="store_true", help="print one final JSON line")
    p.set_defaults(func=cmd_select)


def recipe(meta):
    """A checkpoint's config without its seed: every candidate must share it."""
    return {k: v for k, v in (meta.get("config") or {}).items() if k != "seed"}


def cmd_select(args):
    from kdapp.evaluation import selection
    dataset = data.load(args.data, args.data_dir)
    report = {"rule": "fewest errors on the training digits moved by 1 px (8 offsets); ties to the lower seed",
              "validation_digits": len(dataset.train_x) * len(selection.ONE_PIXEL)}
    for kind in KINDS:
        candidates = {}
        for directory in args.candidates:
            path = checkpoints.student_path(directory, args.student, kind, args.data)
            model, meta = checkpoints.load(path)
            seed = (meta.get("config") or {}).get("seed")
            if seed is None or seed in candidates:
                raise ValueError(f"{path}: every candidate needs its own seed in its metadata (got {seed})")
            candidates[seed] = (path, model, meta)
        recipes = {json.dumps(recipe(meta), sort_keys=True) for _, _, meta in candidates.values()}
        if len(recipes) > 1:
            raise ValueError(f"the {kind} candidates were trained by different recipes; compare like with like")
        scores = {}
        for seed, (path, model, _) in sorted(candidates.items()):
            scores[seed] = selection.validation_errors(model, dataset.train_x, dataset.train_y)
            print(f"{kind} seed {seed}: {scores[seed]} validation errors ({path})", file=sys.stderr)
        winner = selection.choose(scores)
        # Reported after the choice, for the record; the choice above never saw them.
        score_key = "student_acc" if kind == "kd" else "baseline_acc"
        test_errors = {seed: round((1 - meta["metrics"][score_key]) * len(dataset.test_y))
                       for seed, (_, _, meta) in candidates.items() if (meta.get("metrics") or {}).get(score_key)}
        report[kind] = {"chosen_seed": winner, "validation_errors": scores, "test_errors": test_errors,
                        "path": str(candidates[winner][0])}
        print(f"{kind}: seed {winner} chosen; its test errors {test_errors.get(winner, '?')} "
              f"(all seeds: {test_errors})", file=sys.stderr)
        if args.out:
            target = checkpoints.student_path(args.out, args.student, kind, args.data)
            Path(args.out).mkdir(parents=True, exist_ok=True)
            if Path(candidates[winner][0]).resolve() != target.resolve():
                shutil.copyfile(candidates[winner][0], target)
                print(f"saved {target}", file=sys.stderr)
    if args.json:
        print(json.dumps(report))
