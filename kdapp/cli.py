"""python -m kdapp {train-teacher, distill, bench, reproduce}: events become tqdm bars."""
import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

from tqdm import tqdm

from kdapp import checkpoints, data as data_lib, engine
from kdapp.config import RunConfig
from kdapp.models import ARCHITECTURES


class Bars:
    """Turns engine events into one tqdm bar per phase and plain lines for the rest."""

    def __init__(self, quiet=False):
        self.bar, self.quiet = None, quiet

    def __call__(self, event):
        if self.quiet:
            return
        kind = event["type"]
        if kind == "step":
            if self.bar is None or self.bar.total != event["steps"]:
                self.close()
                self.bar = tqdm(total=event["steps"], desc=event["phase"], unit="step", file=sys.stderr)
            self.bar.update(event["step"] - self.bar.n)
            shown = {k: f"{event[k]:.3f}" for k in ("loss", "soft", "hard", "baseline", "teacher_loss")
                     if event.get(k) is not None}
            self.bar.set_postfix(shown, refresh=False)
        elif kind in ("epoch", "teacher_epoch"):
            accs = {k: f"{v:.2%}" for k, v in event.items() if k.endswith("_acc") and v is not None}
            line = f"epoch {event['epoch']}/{event['epochs']} " + " ".join(f"{k}={v}" for k, v in accs.items())
            (self.bar.write if self.bar else print)(line, file=sys.stderr)
        elif kind in ("phase", "warning", "data"):
            self.close()
            print(event.get("message") or event.get("description"), file=sys.stderr)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def add_run_options(p):
    defaults = RunConfig()
    names = ", ".join(ARCHITECTURES)
    p.add_argument("--teacher", default=defaults.teacher, help=f"architecture: {names}")
    p.add_argument("--teachers", default=None, help="several teachers, comma-separated (multi-teacher KD)")
    p.add_argument("--student", default=defaults.student, help=f"architecture: {names}")
    p.add_argument("--temperature", "-T", type=float, default=defaults.temperature)
    p.add_argument("--alpha", type=float, default=defaults.alpha, help="weight of the soft (KD) term")
    p.add_argument("--alpha-end", type=float, default=None, help="linear alpha schedule to this value")
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--teacher-epochs", type=int, default=defaults.teacher_epochs)
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--train-fraction", type=float, default=defaults.train_fraction)
    p.add_argument("--feature-loss", default="none", choices=("none", "hint", "attention"))
    p.add_argument("--feature-weight", type=float, default=0.0)
    p.add_argument("--clip-grad-norm", type=float, default=None)
    p.add_argument("--augment", action="store_true", help="+-2 px shifts for the student too")
    p.add_argument("--no-baseline", action="store_true", help="skip the hard-label baseline student")
    p.add_argument("--data", default=defaults.data, choices=data_lib.DATA_SOURCES)
    p.add_argument("--data-dir", default="data")
    p.add_argument("--device", default=defaults.device)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--json", action="store_true", help="print one final JSON line of results")
    p.add_argument("--quiet", action="store_true")


def config_from_args(args):
    teachers = [t for t in (args.teachers or args.teacher).split(",") if t]
    return RunConfig.from_dict(dict(
        teacher=teachers[0], extra_teachers=tuple(teachers[1:]), student=args.student,
        temperature=args.temperature, alpha=args.alpha, alpha_end=args.alpha_end, epochs=args.epochs,
        teacher_epochs=args.teacher_epochs, lr=args.lr, batch_size=args.batch_size,
        train_fraction=args.train_fraction, feature_loss=args.feature_loss,
        feature_weight=args.feature_weight, clip_grad_norm=args.clip_grad_norm, augment=args.augment,
        baseline=not args.no_baseline, data=args.data, device=args.device, seed=args.seed))


def cmd_train_teacher(args):
    config = config_from_args(args)
    bars = Bars(args.quiet)
    started = time.monotonic()
    device = engine.pick_device(config.device)
    dataset = data_lib.load(config.data, args.data_dir).to(device)
    bars({"type": "data", "description": f"data: {dataset.describe()} on {device}"})
    model, acc = engine.train_teacher(config.teacher, dataset, config.epochs, lr=args.lr,
                                      batch_size=config.batch_size, seed=config.seed, emit=bars)
    bars.close()
    out = Path(args.out) if args.out else checkpoints.teacher_path("runs/teachers", config.teacher, dataset.source)
    if out.is_dir() or args.out and args.out.endswith("/"):
        out = checkpoints.teacher_path(out, config.teacher, dataset.source)
    seconds = round(time.monotonic() - started, 2)
    checkpoints.save(out, model, config.teacher, config={"epochs": config.epochs, "lr": args.lr,
                     "batch_size": config.batch_size, "seed": config.seed, "augment": "shift2"},
                     data=dataset.source, metrics={"test_acc": acc, "seconds": seconds})
    print(f"{config.teacher}: test accuracy {acc:.2%} on {dataset.describe()}; saved {out}", file=sys.stderr)
    if args.json:
        print(json.dumps({"teacher_acc": acc, "data": dataset.source, "seconds": seconds, "path": str(out)}))


def cmd_distill(args):
    config = config_from_args(args)
    bars = Bars(args.quiet)
    result = engine.run(config, emit=bars, runs_dir=args.runs_dir, data_dir=args.data_dir)
    bars.close()
    m = result.metrics
    if args.out:  # engine.run has saved the students under runs/latest: copy, don't re-serialise
        Path(args.out).mkdir(parents=True, exist_ok=True)
        for kind, role in (("kd", "student"), ("baseline", "baseline")):
            if role in result.paths:
                path = checkpoints.student_path(args.out, config.student, kind, m["data"])
                shutil.copyfile(result.paths[role], path)
                print(f"saved {path}", file=sys.stderr)
    gain = "" if m["baseline_acc"] is None else f", KD gain {100 * (m['student_acc'] - m['baseline_acc']):+.2f} pts"
    print(f"teacher {m['teacher_acc']:.2%} | KD student {m['student_acc']:.2%} | baseline "
          f"{'-' if m['baseline_acc'] is None else format(m['baseline_acc'], '.2%')}{gain} "
          f"({m['data']}, {m['seconds']:.1f} s)", file=sys.stderr)
    if args.json:
        print(json.dumps({k: v for k, v in m.items() if k != "history"}))


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(prog="python -m kdapp", description="Knowledge distillation on MNIST.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train-teacher", help="train a teacher on hard labels (with +-2 px shifts)")
    add_run_options(p)
    p.add_argument("--out", default=None, help="checkpoint file or directory (default runs/teachers/)")
    p.set_defaults(func=cmd_train_teacher, epochs=20, lr=1e-3, batch_size=128)
    p = sub.add_parser("distill", help="distill a student (and train its baseline) from a teacher")
    add_run_options(p)
    p.add_argument("--out", default=None, help="also save the students into this directory")
    p.add_argument("--runs-dir", default="runs", help="where trained teachers, the logit cache and the latest run go")
    p.set_defaults(func=cmd_distill)
    from kdapp import bench, loadtest, reproduce  # their heavy imports (gradio, clients) are lazy
    bench.add_parser(sub)
    loadtest.add_parser(sub)
    reproduce.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, RuntimeError, checkpoints.CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except engine.Cancelled as e:
        print(f"cancelled: {e}", file=sys.stderr)
        return 130
    return 0
