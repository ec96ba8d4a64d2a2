"""A finished run's models, as the lab serves them: the trios a visitor's drawing may pick, loaded
on demand and a few kept in memory, read on the server (/predict) or exported for the browser, and
a run's live comparison table and downloadable student.

`RunModels` is a part of kdapp.lab.facade.Lab, kept here because it is one idea: it reads the Lab's
`store`, `run(run_id)` and `drawing_dir`, and keeps its own caches (`_models`, `_tables`).
"""
import logging
import shutil
import threading
from collections import OrderedDict
from pathlib import Path

from kdapp import checkpoints
from kdapp.config import DEFAULTS, NO_PRETRAINED, RANGES, convert, is_deep_supervision
from kdapp.evaluation import export, inference, quantize
from kdapp.lab import continual as lab_continual, drawing_models
from kdapp.lab.live_run import FINISHED
from kdapp.models import count_parameters

log = logging.getLogger(__name__)

SHIPPED = "shipped"  # the drawing's models before a visitor picks a run: checkpoints/
INT8 = "-int8"  # a drawing choice "<run id>-int8": that run's int8 students
MODEL_CACHE_SIZE = 4  # (teacher, student, baseline) triples in memory; ~6 MB each
TABLE_CACHE_SIZE = 50  # comparison tables (their latencies are measured once)


class RunModels:
    def _init_models(self):
        self._models_lock = threading.Lock()
        self._models = OrderedDict()  # "shipped" or run id -> Models, least recently used first
        self._tables = OrderedDict()  # run id -> its comparison table, measured once

    # ---- the drawing comparison ----
    def drawing_choices(self, include=None, limit=30):
        """The shipped models and the newest finished runs that still have their models, plus
        `include` when it is such a run (a linked or picked older run stays selectable)."""
        choices = [("shipped checkpoints", SHIPPED)]
        records = self.store.list(limit=limit, states=(FINISHED,), curves=False)
        include = include[:-len(INT8)] if include and include.endswith(INT8) else include
        if include not in (None, SHIPPED) and all(r["id"] != include for r in records):
            extra = self.run(include)
            records += [extra] if extra and extra["state"] == FINISHED else []
        for r in records:
            if r["has_checkpoints"]:
                c = r["config"]
                label = (f"run {r['id']}: {c['teacher']} → {c['student']}, T={c['temperature']:g}, "
                         f"α={c['alpha']:g} ({r['metrics']['student_acc']:.2%})")
                choices.append((label, r["id"]))
                if c.get("quantize", "none") != "none":  # its int8 students too, the files its table measured
                    choices.append((f"{label}, int8 students", r["id"] + INT8))
        return choices

    def default_models(self, owner):
        """The visitor's own latest finished run that still has its models, else the shipped ones."""
        mine = self.store.list(limit=1, states=(FINISHED,), owner=owner, curves=False) if owner else []
        return mine[0]["id"] if mine and mine[0]["has_checkpoints"] else SHIPPED

    def shipped_roles(self):
        """The roles the shipped drawing models fill ("teacher", "student", "baseline"), from their files."""
        return set(checkpoints.drawing_paths(self.drawing_dir))

    def models(self, choice):
        """(teacher, student, baseline or None, description) for the drawing; "shipped" or a run id.
        Raises LookupError with a sentence when a run's models cannot be had."""
        with self._models_lock:
            if choice in self._models:
                self._models.move_to_end(choice)
                return self._models[choice]
        models = self._load_models(choice)
        with self._models_lock:
            self._models[choice] = models
            while len(self._models) > MODEL_CACHE_SIZE:
                self._models.popitem(last=False)
        return models

    def _load_models(self, choice):
        if isinstance(choice, str) and choice.endswith(INT8):  # the run's int8 students (ONNX Runtime) beside its fp32 teacher
            run_id = choice[:-len(INT8)]
            teacher, _, _, description = self.models(run_id)
            files = self._int8_files(run_id)
            return (teacher, quantize.OnnxModel(files["student"]),
                    quantize.OnnxModel(files["baseline"]) if "baseline" in files else None,
                    f"{description}, int8 students")
        if choice == SHIPPED:
            paths = checkpoints.drawing_paths(self.drawing_dir)
            teacher = checkpoints.load(paths["teacher"])[0] if "teacher" in paths else None
            student, meta = checkpoints.load(paths["student"])
            baseline = _optional(paths.get("baseline"))
            cfg = meta.get("config", {})
            data = "full MNIST" if meta.get("data") == "mnist" else "the MNIST sample"
            recipe = ", consistent teaching" if cfg.get("consistent") else ""
            origin = "shipped checkpoints" if self.drawing_dir is None else f"checkpoints from {self.drawing_dir}"
            return (teacher, student, baseline, f"{origin}: {cfg.get('teacher', '?')} → "
                                                f"{cfg.get('student', '?')}, T={cfg.get('temperature', '?')}, "
                                                f"α={cfg.get('alpha', '?')}{recipe}, trained on {data}")
        record = self.run(choice)
        if record is None:
            raise LookupError(f"there is no run {choice}")
        if lab_continual.is_continual(record):
            raise LookupError(f"run {choice} is a continual run: its models read digits in the Continual tab")
        if record["state"] != FINISHED or not record["has_checkpoints"]:
            raise LookupError(f"run {choice} has no models to draw with ({record['state']}"
                              f"{'' if record['state'] != FINISHED else ', its checkpoints were pruned'})")
        paths = record["extra"].get("paths", {})
        c = record["config"]
        try:
            teacher = None if is_deep_supervision(c) else checkpoints.load(paths["teacher"])[0]
            student, _ = checkpoints.load(paths["student"])
        except (KeyError, TypeError, checkpoints.CheckpointError) as e:
            raise LookupError(f"run {choice}'s models could not be loaded: {e}") from None
        baseline = _optional(paths.get("baseline"))
        return (teacher, student, baseline, f"run {choice}: {c['teacher']} → {c['student']}, T={c['temperature']:g}, "
                                            f"α={c['alpha']:g} (student {record['metrics']['student_acc']:.2%})")

    def _int8_files(self, run_id):
        """{"student", "baseline"?: int8 ONNX path} of a finished run with int8 students."""
        paths = ((self.run(run_id) or {}).get("extra") or {}).get("paths") or {}
        files = {role: Path(paths[f"{role}_int8"]) for role in ("student", "baseline") if paths.get(f"{role}_int8")}
        if "student" not in files or not all(path.is_file() for path in files.values()):
            raise LookupError(f"run {run_id} has no int8 students to draw with")
        return files

    def drawing_onnx(self, choice):
        """({role: ONNX path}, description) of the drawing's models for the visitor's browser:
        "shipped", a finished run's id, exported once, or the id + "-int8" (its int8 students, the
        very files its table measured). Raises LookupError with a sentence."""
        description = self.models(choice)[3]  # the same checks, and the same words, as the server's drawing
        if choice.endswith(INT8):
            files, _ = self.drawing_onnx(choice[:-len(INT8)])
            return {**files, **self._int8_files(choice[:-len(INT8)])}, description
        try:
            if choice == SHIPPED:
                return drawing_models.shipped(self.store.root, self.drawing_dir), description
            record = self.run(choice)
            out = self.store.run_dir(record["id"]) / drawing_models.ONNX_DIR
            return drawing_models.export_all(drawing_models.run_checkpoints(record), out), description
        except (checkpoints.CheckpointError, OSError) as e:
            raise LookupError(f"the models of {choice} could not be exported for the browser: {e}") from None

    def models_or_shipped(self, choice, notes=None):
        """models(choice), or the shipped ones when it cannot be had (the reason goes into `notes`)."""
        try:
            return self.models(choice)
        except LookupError as e:
            if notes is not None:
                notes.append(f"{e}; using the shipped checkpoints")
            return self.models(SHIPPED)

    def predict(self, canvas, temperature=DEFAULTS.temperature, models=SHIPPED):
        """A dict with the prepared 28x28 image, the models' softmaxes at T=1 and T, KL, notes and
        which models answered. Raises inference.CanvasError (BlankCanvas for no ink)."""
        prepared = inference.preprocess(canvas)
        notes = list(prepared.notes)
        try:
            temperature = convert("temperature", temperature)
            RANGES["temperature"].check("T", temperature)
        except ValueError as e:
            notes.append(f"{e}; showing T={DEFAULTS.temperature:g} instead")
            temperature = DEFAULTS.temperature
        teacher, student, baseline, description = self.models_or_shipped(models, notes)
        result = inference.compare(teacher, student, prepared.tensor, temperature, baseline)
        result.update(image=prepared.image, notes=notes, models=description)
        return result

    # ---- a finished run's table and files ----
    def comparison(self, run_id):
        """Rows for the seed article's table, live: params, size, accuracy, latency, KD gain."""
        if run_id in self._tables:
            return self._tables[run_id]
        record = self.run(run_id)
        if record is None or record["state"] != FINISHED:
            return None
        m, c = record["metrics"], record["config"]
        try:
            teacher, student, baseline, _ = self.models(run_id)
        except LookupError:
            teacher = student = baseline = None
        rows = []
        # born-again: an earlier generation; mutual: the peer
        teacher_arch = c["student"] if c["teacher"] in NO_PRETRAINED else c["teacher"]
        for role, arch, model, acc in (("teacher", teacher_arch, teacher, m["teacher_acc"]),
                                       ("KD student", c["student"], student, m["student_acc"]),
                                       ("baseline student", c["student"], baseline, m["baseline_acc"])):
            if acc is None:
                continue
            latency = inference.latency_ms(model, repeats=50, warmup=5)[0] if model is not None else None
            rows.append({"model": role, "arch": arch, "params": count_parameters(arch),
                         "size_mb": checkpoints.size_on_disk(model) / 1e6 if model is not None else None,
                         "test_acc": acc, "latency_ms": latency})
        table = {"rows": rows, "metrics": m, "config": c}
        self._tables[run_id] = table
        if len(self._tables) > TABLE_CACHE_SIZE:
            self._tables.popitem(last=False)
        return table

    def export(self, run_id, kind):
        """Path of the run's distilled student as `.pt`, `.onnx` or (`int8`) its int8 ONNX, written once
        into its folder."""
        record = self.run(run_id)
        if record is not None and record["config"].get("kind") is not None:  # a continual run: one model a strategy
            raise LookupError(f"run {run_id} is a {record['config']['kind']} run: it has no distilled student to "
                              "download; its models read drawings in the Continual tab")
        if record is None or record["state"] != FINISHED or not record["has_checkpoints"]:
            raise LookupError(f"run {run_id} has no student to download")
        paths = record["extra"]["paths"]
        if kind == "int8":  # written by the worker (kdapp.training.qat.deploy): copied, never remade
            if not paths.get("student_int8") or not Path(paths["student_int8"]).is_file():
                raise LookupError(f"run {run_id} has no int8 student: start a run with int8 students "
                                  "(More methods) to get one")
            out = self.store.run_dir(run_id) / f"kdapp-{run_id}-{record['config']['student']}-int8.onnx"
            if not out.is_file():
                shutil.copyfile(paths["student_int8"], out)
            return out
        out = self.store.run_dir(run_id) / f"kdapp-{run_id}-{record['config']['student']}.{kind}"
        if not out.is_file():
            {"pt": export.export_pt, "onnx": export.export_onnx}[kind](paths["student"], out)
        return out


def _optional(path):
    """A checkpoint that may be missing (a run without a baseline): the model, or None."""
    if not path:
        return None
    try:
        return checkpoints.load(path)[0]
    except checkpoints.CheckpointError as e:
        log.warning("%s", e)
        return None
