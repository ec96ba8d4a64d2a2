"""python -m kdapp COMMAND: train-teacher, distill and data import here; the tools' commands (bench, reproduce,
robustness, quantization, continual, loadtest) from kdapp.tools, `runs export` from kdapp.lab.tensorboard.
Events become tqdm bars."""
import argparse
import json
import logging
import shutil
import sys
import time
from dataclasses import fields
from pathlib import Path

from tqdm import tqdm

from kdapp import checkpoints, data as data_lib
from kdapp.training import distributed, qat, resume as resume_lib, teachers, train
from kdapp.ui.run_report import quantize_report
from kdapp.config import CHOICES, DEFAULTS, FLAGS, HELP, RANGES, Range, RunConfig
from kdapp.lab import notebook
from kdapp.ui.reports import gain_text


class Bars:
    """Turns engine events into one tqdm bar per phase and plain lines for the rest."""

    def __init__(self, quiet=False):
        self.bar, self.quiet = None, quiet

    def __call__(self, event):
        if self.quiet:
            return
        kind = event["type"]
        if kind in ("step", "teacher_step"):
            if self.bar is None or self.bar.total != event["steps"]:
                self.close()
                self.bar = tqdm(total=event["steps"], desc="teacher" if kind == "teacher_step" else "distill",
                                unit="step", file=sys.stderr)
            self.bar.update(event["step"] - self.bar.n)
            shown = {k: f"{event[k]:.3f}" for k in ("loss", "soft", "hard", "baseline", "teacher_loss")
                     if event.get(k) is not None}
            self.bar.set_postfix(shown, refresh=False)
        elif kind in ("epoch", "teacher_epoch"):
            accs = {k: f"{v:.2%}" for k, v in event.items() if k.endswith("_acc") and v is not None}
            line = f"epoch {event['epoch']}/{event['epochs']} " + " ".join(f"{k}={v}" for k, v in accs.items())
            (self.bar.write if self.bar else print)(line, file=sys.stderr)
        elif kind == "resumed":
            self.close()
            print(f"resumed after epoch {event['epoch']} from its resume point", file=sys.stderr)
        elif kind in ("phase", "warning", "data"):
            self.close()
            print(event.get("message") or event.get("description"), file=sys.stderr)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def add_run_options(p, defaults=DEFAULTS, ranges=None):
    """One option per RunConfig field, generated from the field itself (kdapp.config.setting): its
    default, help, range and choices, which `--help` shows. Ranges are checked by RunConfig;
    `ranges` names the fields a command checks against other ranges itself."""
    ranges = {**RANGES, **(ranges or {})}
    for f in fields(RunConfig):
        if f.name == "extra_teachers":  # one list of teachers on the command line: --teachers a,b
            p.add_argument("--teachers", default=None, help=f"several teachers, comma-separated; the first is "
                           f"--teacher and the rest are extra teachers: {HELP[f.name]}")
            continue
        flags = [f"--{f.name.replace('_', '-')}", *([FLAGS[f.name]] if f.name in FLAGS else [])]
        default, help = getattr(defaults, f.name), HELP[f.name]
        if f.name in ranges:
            help += f" ({ranges[f.name].describe()})"
        if f.type is bool:
            p.add_argument(*flags, action=argparse.BooleanOptionalAction, default=default, help=help)
        else:
            kind = next(k for k in getattr(f.type, "__args__", (f.type,)) if k is not type(None))
            p.add_argument(*flags, type=kind, default=default, choices=CHOICES.get(f.name), help=help)
    p.add_argument("--data-dir", default="data", help="where `data import` put full MNIST (for --data mnist)")
    p.add_argument("--json", action="store_true", help="print one final JSON line of results")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def config_from_args(args, skip=()):
    """The parsed options -> a validated RunConfig (a ValueError names the first bad setting);
    fields in `skip` keep their defaults (a command that reads the option itself)."""
    values = {f.name: getattr(args, f.name) for f in fields(RunConfig) if f.name not in ("extra_teachers", *skip)}
    if args.teachers:
        values["teacher"], *extra = [t.strip() for t in args.teachers.split(",") if t.strip()] or [args.teacher]
        values["extra_teachers"] = tuple(extra)
    return RunConfig.from_dict(values)


TEACHER_EPOCHS = Range(1, 2000, 1)  # a teacher may train far longer than a run's students (Hinton's: hundreds)
MAX_NORM = Range(0.0, 100.0, 0.5, low_open=True)


def resume_advice(path):
    """What a user of --resume PATH does when its point cannot be read, or cannot be saved."""
    return f"delete {path}", "run the same command again (it carries on from the last saved epoch)"


def resume_point(path):
    """--resume PATH: a resume point the command saves after each epoch and carries on from."""
    return resume_lib.ResumePoint(path, *resume_advice(path)) if path else None


def cmd_train_teacher(args):
    config = config_from_args(args, skip=("epochs",))  # a teacher's epochs have their own, longer range
    TEACHER_EPOCHS.check("epochs", args.epochs)
    if args.max_norm is not None:
        MAX_NORM.check("max-norm", args.max_norm)
    init = checkpoints.load(args.init) if args.init else None  # a missing or damaged file fails before training
    bars = Bars(args.quiet)
    started = time.monotonic()
    device = train.pick_device(config.device)
    dataset = data_lib.load(config.data, args.data_dir).to(device)
    bars({"type": "data", "description": f"data: {dataset.describe()} on {device}"})
    seed = teachers.copy_seed(config.seed, args.copy)  # as a run trains a missing copy: another network
    model, acc = train.train_teacher(config.teacher, dataset, args.epochs, lr=args.lr,
                                      batch_size=config.batch_size, seed=seed,
                                      augment=args.teacher_augment, max_norm=args.max_norm, init=init,
                                      swa=args.swa, resume=resume_point(args.resume), emit=bars)
    bars.close()
    out = Path(args.out) if args.out else checkpoints.teacher_path("runs/teachers", config.teacher, dataset.source,
                                                                   args.copy)
    if out.is_dir() or args.out and args.out.endswith("/"):
        out = checkpoints.teacher_path(out, config.teacher, dataset.source, args.copy)
    seconds = round(time.monotonic() - started, 2)
    if args.resume:  # the training's time over every process that took part, not this one's alone
        seconds = round(resume_lib.trained_seconds(args.resume) or seconds, 2)
    recipe = {"epochs": args.epochs, "lr": args.lr, "batch_size": config.batch_size, "seed": seed,
              "augment": args.teacher_augment, "max_norm": args.max_norm, "swa": args.swa}
    if init is not None:  # the whole lineage in one file: the recipe of the model this training started from
        before = init[1]
        recipe["init"] = {**before.get("config", {}), "data": before.get("data"), "metrics": before.get("metrics", {})}
    checkpoints.save(out, model, config.teacher, config=recipe,
                     data=dataset.source, metrics={"test_acc": acc, "seconds": seconds})
    print(f"{config.teacher}: test accuracy {acc:.2%} on {dataset.describe()}; saved {out}", file=sys.stderr)
    if args.json:
        print(json.dumps({"teacher_acc": acc, "data": dataset.source, "seconds": seconds, "path": str(out)}))


def cmd_distill(args):
    config = config_from_args(args)
    # Under torchrun each process is one rank (kdapp.training.distributed); without it, a World of one.
    world, device = distributed.init(train.pick_device(config.device))
    if args.scale_lr and world.distributed:  # linear scaling rule: the global batch is W times larger
        config = config.replace(lr=config.lr * world.size)
    bars = Bars(args.quiet or not world.main)
    recorder = notebook.Recorder(config)

    def emit(event):
        bars(event)
        recorder(event)
    try:
        result = train.run(config, emit=emit, runs_dir=args.runs_dir, data_dir=args.data_dir, world=world,
                           device=device, resume_path=args.resume, resume_advice=resume_advice(args.resume))
    finally:
        bars.close()
    distributed.finish(world)
    if not world.main:
        return
    m = result.metrics
    if args.out:  # train.run has saved the students under runs/latest: copy, don't re-serialise
        # With the teacher beside them the folder is self-contained: KDAPP_DRAWING_DIR=DIR python app.py
        Path(args.out).mkdir(parents=True, exist_ok=True)
        teacher_copy = checkpoints.teacher_path(args.out, config.teacher, m["data"])
        if config.deep_supervision:  # no teacher, and none left from an earlier run
            teacher_copy.unlink(missing_ok=True)
        copies = [(result.paths.get("teacher"), teacher_copy)]
        copies += [(result.paths.get(role), checkpoints.student_path(args.out, config.student, kind, m["data"]))
                   for kind, role in (("kd", "student"), ("baseline", "baseline"))]
        copies += [(result.paths.get(f"{role}_int8"), Path(args.out) / name) for role, name in qat.INT8_FILES.items()]
        for source, path in copies:
            if source and Path(source).resolve() != path.resolve():  # the teacher may live in DIR already
                shutil.copyfile(source, path)
                print(f"saved {path}", file=sys.stderr)
    listed = ""
    if args.record:  # into the app's store: the Runs tab lists it, compares it and links to it
        record = recorder.save(args.runs_dir, result)
        m["run_id"] = record["id"]
        listed = f"; run {record['id']} in {args.runs_dir} (the app's Runs tab, /?run={record['id']})"
    # The gain with its 95% interval, as the page shows it: a gain inside it is noise.
    gain = "" if m["baseline_acc"] is None else f", KD gain {gain_text(m)} (95% interval)"
    teacher = "no teacher" if m["teacher_acc"] is None else f"teacher {m['teacher_acc']:.2%}"
    print(f"{teacher} | KD student {m['student_acc']:.2%} | baseline "
          f"{'-' if m['baseline_acc'] is None else format(m['baseline_acc'], '.2%')}{gain} "
          f"({m['data']}, {m['seconds']:.1f} s){listed}", file=sys.stderr)
    if "quantized" in m:
        print(quantize_report(m["quantized"]), file=sys.stderr)
    if args.json:
        print(json.dumps(m))


def cmd_data_import(args):
    raw_dir = data_lib.import_idx(args.source, args.data_dir)
    dataset = data_lib.load("mnist", args.data_dir)
    print(f"imported {dataset.describe()} into {raw_dir}; use it with --data mnist"
          f"{'' if args.data_dir == 'data' else ' --data-dir ' + args.data_dir}", file=sys.stderr)


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(prog="python -m kdapp", description="Knowledge distillation on MNIST.")
    formatter = argparse.ArgumentDefaultsHelpFormatter
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train-teacher", help="train a teacher on hard labels (with ±2 px shifts)",
                       formatter_class=formatter)
    add_run_options(p, DEFAULTS.replace(epochs=20, lr=1e-3), ranges={"epochs": TEACHER_EPOCHS})
    p.add_argument("--teacher-augment", default="shift2", choices=list(train.TEACHER_AUGMENTATIONS),
                   help="shift2: ±2 px shifts; pen: also rotation, scale, slant and stroke width (as --consistent)")
    p.add_argument("--max-norm", type=float, default=None,
                   help="hold every hidden unit's incoming weights to this L2 norm (Hinton et al. 2012; off when "
                        f"not given; {MAX_NORM.describe()})")
    p.add_argument("--init", default=None, metavar="PATH",
                   help="start from this checkpoint's weights (the same architecture) instead of a random "
                        "initialisation")
    p.add_argument("--swa", action="store_true",
                   help="stochastic weight averaging (Izmailov et al. 2018): hold the learning rate at --lr, average "
                        "the weights reached at the end of each epoch and save that average; usually with --init")
    p.add_argument("--resume", default=None, metavar="PATH",
                   help="save the training state here after each epoch, and carry on from it if it exists")
    p.add_argument("--copy", type=int, default=1, choices=range(1, 10), metavar="N",
                   help="train copy N of the architecture, with seed --seed + N - 1, saved (in a directory) as "
                        "<arch>-<data>-copyN.pt: the network a run loads when it names the architecture N times among "
                        "its teachers, and trains so when it is missing (1 to 9)")
    p.add_argument("--out", default=None, help="checkpoint file or directory (default runs/teachers/)")
    p.set_defaults(func=cmd_train_teacher)
    p = sub.add_parser("distill", help="distill a student (and train its baseline) from a teacher",
                       formatter_class=formatter)
    add_run_options(p)
    p.add_argument("--out", default=None, help="also save the students into this directory")
    p.add_argument("--resume", default=None, metavar="PATH",
                   help="save the students' training state here after each epoch, and carry on from it if it "
                        "exists (not under torchrun)")
    p.add_argument("--runs-dir", default=notebook.runs_dir(),
                   help="the app's run store (KDAPP_RUNS_DIR, else runs): the run is listed there, and trained "
                        "teachers, the logit cache and the latest run's students go there")
    p.add_argument("--record", action=argparse.BooleanOptionalAction, default=True,
                   help="list the finished run in the store, beside the app's runs (Runs tab, /?run=ID)")
    p.add_argument("--scale-lr", action="store_true",
                   help="under torchrun: multiply --lr by the number of processes (linear scaling rule; the "
                        "effective batch is --batch-size x processes)")
    p.set_defaults(func=cmd_distill)
    p = sub.add_parser("data", help="data sets: import MNIST's IDX files for a machine without network")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    p = data_sub.add_parser("import", help="check MNIST's four IDX files in DIR and copy them where "
                            "--data mnist reads them", formatter_class=formatter)
    p.add_argument("source", metavar="DIR", help="a folder with train-images-idx3-ubyte.gz and the other three")
    p.add_argument("--data-dir", default="data", help="where to put them; --data mnist reads from here")
    p.set_defaults(func=cmd_data_import)
    # their heavy imports (gradio, clients, scikit-learn) are lazy
    from kdapp.tools import bench, continual, loadtest, quantization, reproduce, robustness, select_student
    from kdapp.lab import tensorboard
    robustness.add_parser(sub)
    tensorboard.add_parser(sub)  # runs export --tensorboard DIR
    continual.add_parser(sub)
    bench.add_parser(sub)
    quantization.add_parser(sub)
    loadtest.add_parser(sub)
    reproduce.add_parser(sub)
    select_student.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, RuntimeError, FileNotFoundError, checkpoints.CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except train.Cancelled as e:
        print(f"cancelled: {e}", file=sys.stderr)
        return 130
    return 0
