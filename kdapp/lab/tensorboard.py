"""Runs from the store as TensorBoard event files: `tensorboard --logdir DIR` then compares them.

One folder per run, named by its id and its pair, so TensorBoard's run list reads like the Runs
tab. What goes in, with the tags TensorBoard shows:
- loss/* per logged training step (the global step, as the curves were recorded): the KD
  student's total loss, its soft and hard parts, the feature loss, the soft loss's own terms
  (DKD, DIST) and the baseline's CE;
- accuracy/* per epoch (step = epoch): the test accuracy of the KD student, the baseline and the
  teacher;
- final/* once, at the last epoch: the run's final accuracies and the KD gain, which the HParams
  dashboard shows against the run's settings (its config, written as hparams).

A continual run (kdapp.training.continual) has no loss curves; its folder holds, per strategy:
- continual/<strategy>/task<j> after each task learned (step = tasks learned so far): the
  accuracy on task j's test digits, a row of the accuracy matrix;
- continual/<strategy>/seen_average: the mean over the tasks learned so far;
- final/<strategy>_average_acc and final/<strategy>_forgetting once the run has finished.

The event files are written by torch's SummaryWriter (tensorboard's own format), so the
tensorboard package is needed; it is imported only when exporting.
"""
import shutil
import tempfile
import zipfile
from pathlib import Path

# curve name in a run record -> tag; the KD student's parts next to its total, the baseline apart.
LOSS_TAGS = {"loss": "loss/kd_student", "soft": "loss/kd_soft", "hard": "loss/kd_hard",
             "feature": "loss/kd_feature", "baseline": "loss/baseline"}
ACCURACY_TAGS = {"student": "accuracy/kd_student", "baseline": "accuracy/baseline", "teacher": "accuracy/teacher"}
FINAL_TAGS = {"student_acc": "final/kd_student_acc", "baseline_acc": "final/baseline_acc",
              "teacher_acc": "final/teacher_acc"}
GAIN_TAG = "final/kd_gain"  # student_acc - baseline_acc, the number the lab exists to measure


def is_continual(record):
    return (record.get("config") or {}).get("kind") == "continual"


def run_name(record):
    """The run's folder, and its name in TensorBoard: id, pair, T and α
    (`0a1b2c3d_seed_teacher-seed_student_T4_a0.7`); a continual run's id, scenario, tasks and T
    (`0a1b2c3d_continual_class_5tasks_T2`)."""
    c = record["config"]
    if is_continual(record):
        return f"{record['id']}_continual_{c['scenario']}_{c['tasks']}tasks_T{c['temperature']:g}"
    return f"{record['id']}_{c['teacher']}-{c['student']}_T{c['temperature']:g}_a{c['alpha']:g}"


def hparams(config):
    """A run's settings as TensorBoard hparams: numbers and strings. An unset option (None) reads
    "none", a list (the extra teachers) is joined with commas, and a switch reads "true" or "false"
    (torch would write it as the number 1.0 or 0.0)."""
    values = {}
    for name, value in config.items():
        if value is None:
            value = "none"
        elif isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, (list, tuple)):
            value = ",".join(map(str, value)) or "none"
        values[name] = value
    return values


def continual_scalars(record):
    """scalars() of a continual run: each strategy's accuracy-matrix rows as they arrived."""
    out = {}
    for row in (record.get("accuracy") or {}).get("continual") or []:
        name, learned, accuracies = row["strategy"], row["task"] + 1, row["accuracies"]
        for j, value in enumerate(accuracies):
            out.setdefault(f"continual/{name}/task{j + 1}", []).append((learned, value))
        out.setdefault(f"continual/{name}/seen_average", []).append((learned, sum(accuracies[:learned]) / learned))
    for name, result in ((record.get("metrics") or {}).get("strategies") or {}).items():
        last = len(result["acc_matrix"])
        out[f"final/{name}_average_acc"] = [(last, result["average_acc"])]
        out[f"final/{name}_forgetting"] = [(last, result["forgetting"])]
    return out


def scalars(record):
    """{tag: [(step, value), ...]} for one run record: what export_run writes, in plain Python."""
    if is_continual(record):
        return continual_scalars(record)
    curves, accuracy = record.get("curves") or {}, record.get("accuracy") or {}
    out = {}
    steps = curves.get("step") or []
    names = dict(LOSS_TAGS, **{k: f"loss/kd_{k.split(':', 1)[1]}" for k in curves if k.startswith("part:")})
    for name, tag in names.items():
        points = [(step, value) for step, value in zip(steps, curves.get(name) or []) if value is not None]
        if points:
            out[tag] = points
    epochs = accuracy.get("epoch") or []
    for name, tag in ACCURACY_TAGS.items():
        points = [(epoch, value) for epoch, value in zip(epochs, accuracy.get(name) or []) if value is not None]
        if points:
            out[tag] = points
    metrics = record.get("metrics") or {}
    last = epochs[-1] if epochs else 0
    for name, tag in FINAL_TAGS.items():
        if metrics.get(name) is not None:
            out[tag] = [(last, metrics[name])]
    if metrics.get("student_acc") is not None and metrics.get("baseline_acc") is not None:
        out[GAIN_TAG] = [(last, metrics["student_acc"] - metrics["baseline_acc"])]
    return out


def export_run(record, out_dir):
    """Write one run's event file into out_dir/run_name(record); returns that folder."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    folder = Path(out_dir) / run_name(record)
    shutil.rmtree(folder, ignore_errors=True)  # a re-export replaces the run's events, never appends to them
    values = scalars(record)
    # Points carry the run's own start time, so TensorBoard's "relative" axis starts at the run.
    walltime = record.get("started") or record.get("created")
    with SummaryWriter(log_dir=str(folder)) as writer:
        for tag, points in values.items():
            for step, value in points:
                writer.add_scalar(tag, value, global_step=int(step), walltime=walltime)
        # SummaryWriter.add_hparams would write into a new sub-folder; the session summaries put the
        # settings beside the run's own scalars. The experiment summary is left out on purpose:
        # TensorBoard takes the first one it finds as every run's, so one run's settings would
        # define the HParams table; without it, TensorBoard builds the table from all the runs.
        metric_tags = {tag: points[-1][1] for tag, points in values.items() if tag.startswith("final/")}
        _, session_start, session_end = hparams_summary(hparams(record["config"]), metric_tags)
        for summary in (session_start, session_end):
            writer.file_writer.add_summary(summary, walltime=walltime)
    return folder


def exportable(record):
    """Runs that have something to plot: finished, or stopped after some steps (a continual run:
    after its first task)."""
    accuracy = (record or {}).get("accuracy") or {}
    return bool(record and ((record.get("curves") or {}).get("step") or accuracy.get("epoch")
                            or accuracy.get("continual")))


def export_runs(records, out_dir):
    """Write the event files of every exportable run record into out_dir; returns their folders."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [export_run(record, out_dir) for record in records if exportable(record)]


def export_zip(records, zip_path):
    """The runs' event folders in one zip (unzip, then `tensorboard --logdir` the folder). Returns
    the zip's path; raises ValueError when no run has anything to plot yet."""
    records = [r for r in records if exportable(r)]
    if not records:
        raise ValueError("none of these runs has curves yet: export them once they have trained an epoch")
    zip_path = Path(zip_path)
    with tempfile.TemporaryDirectory() as tmp:
        folders = export_runs(records, tmp)
        with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
            for folder in folders:
                for path in sorted(folder.rglob("*")):
                    archive.write(path, path.relative_to(tmp))
    return zip_path


def zip_runs(lab, run_ids=None):
    """The Runs tab's download: these runs (default: the newest 200 of both kinds) from the lab, live ones as
    far as they got, zipped into a fresh temporary folder. Raises ValueError with a sentence."""
    listed = run_ids or [r["id"] for r in lab.runs(kind=None)]  # continual runs too
    records = [lab.run(run_id) for run_id in listed]
    return export_zip(records, Path(tempfile.mkdtemp(prefix="kdapp-tensorboard-")) / "kdapp-runs-tensorboard.zip")


def add_parser(sub):
    """`python -m kdapp runs export --tensorboard DIR`: registered by kdapp.cli."""
    p = sub.add_parser("runs", help="the lab's stored runs")
    runs_sub = p.add_subparsers(dest="runs_command", required=True)
    p = runs_sub.add_parser("export", help="write the stored runs as TensorBoard event files "
                            "(then: tensorboard --logdir DIR)")
    p.add_argument("--tensorboard", metavar="DIR", required=True, help="folder for the event files, one folder a run")
    p.add_argument("--runs-dir", default="runs", help="the app's run store (KDAPP_RUNS_DIR)")
    p.add_argument("--run", action="append", default=None, metavar="ID", help="only this run (repeatable)")
    p.set_defaults(func=cmd_export)


def cmd_export(args):
    import sys

    from kdapp.lab.store import RunStore
    store = RunStore(args.runs_dir, read_only=True)  # the app may own the store: never mark its runs interrupted
    if args.run:
        records = [store.get(run_id) for run_id in args.run]
        missing = [run_id for run_id, record in zip(args.run, records) if record is None]
        if missing:
            raise ValueError(f"no run {', '.join(missing)} in {store.path}")
    else:
        records = store.list(limit=-1, kind=None)  # SQLite: no limit; distillation and continual runs
    folders = export_runs(records, args.tensorboard)
    skipped = len(records) - len(folders)
    print(f"wrote {len(folders)} runs to {args.tensorboard}" + (f" ({skipped} with no curves yet skipped)"
          if skipped else "") + f"; open them with: tensorboard --logdir {args.tensorboard}", file=sys.stderr)
