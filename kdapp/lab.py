"""The API the app calls: one shared lab per process, used by every visitor.

It owns the run manager, the models the drawing comparison uses (the latest finished run's,
or the shipped checkpoints before any run) and the caps a hosted demo needs. Everything it
returns is plain Python, so the UI never touches a tensor.
"""
import logging
import threading
from pathlib import Path

from kdapp import checkpoints, data as data_lib, engine, inference
from kdapp.config import RunConfig
from kdapp.jobs import Busy, RunManager
from kdapp.models import ARCHITECTURES, count_parameters, parameter_count

log = logging.getLogger(__name__)

# The run a visitor gets by pressing Start: the UI's slider defaults come from here, and the
# benchmark times this exact run. Chosen to reach >= 98% on the sample in under a minute on
# 2 vCPUs with the shipped teacher (see README, Performance).
DEFAULT_RUN = dict(teacher="seed_teacher", student="seed_student", temperature=4.0, alpha=0.7,
                   epochs=30, lr=0.005, batch_size=128, train_fraction=1.0, data="sample")
# A shared 2-vCPU box: one visitor's run must not hold it for long. Limits refuse what a
# visitor asks for beyond them; the hosted settings are imposed (visitors cannot set them).
HOSTED_LIMITS = {"epochs": 40}
HOSTED_SETTINGS = {"teacher_epochs": 10, "time_limit_s": 600.0}
SHIPPED_STUDENT = "seed_student"


class Lab:
    def __init__(self, runs_dir="runs", data_dir="data", limits=HOSTED_LIMITS, imposed=HOSTED_SETTINGS):
        self.runs_dir, self.data_dir = Path(runs_dir), data_dir
        self.limits, self.imposed = dict(limits), dict(imposed)
        self.runs = RunManager(runs_dir, data_dir)
        self._models_lock = threading.Lock()
        self._shipped = None  # (teacher, student, description) from checkpoints/, loaded once
        self._models = None   # the same for the latest finished run
        self._models_run = None
        self._table = (None, None)  # (run result, its comparison), measured once per run

    # ---- choices for the controls ----
    @staticmethod
    def architecture_choices():
        return [(f"{name} · {parameter_count(name):,} params", name) for name in ARCHITECTURES]

    def teacher_choices(self):
        choices = []
        for name in ARCHITECTURES:
            ready = checkpoints.find_teacher(name, "sample", self._teacher_dirs()) is not None
            note = "pretrained" if ready else "trained first"
            choices.append((f"{name} · {parameter_count(name):,} params · {note}", name))
        return choices

    def _teacher_dirs(self):
        return [checkpoints.SHIPPED_DIR, self.runs_dir / "teachers"]

    def data_choices(self):
        choices = [("bundled MNIST sample · 8,000 train / 2,000 test", "sample")]
        if data_lib.mnist_present(self.data_dir):
            choices.append(("full MNIST · 60,000 train / 10,000 test", "mnist"))
        return choices

    @staticmethod
    def device_choices():
        return engine.available_devices()

    # ---- runs ----
    def start(self, settings, owner):
        """settings: loose values from the UI. Returns (started: bool, message)."""
        try:
            config = RunConfig.from_dict(dict(settings, **self.imposed))
            for name, cap in self.limits.items():
                if getattr(config, name) > cap:
                    raise ValueError(f"{name} is capped at {cap} on this shared demo")
            if config.data == "auto":
                config.data = "sample"
            self.runs.start(config, owner)
        except Busy as e:
            return False, f"Busy: {e}"
        except ValueError as e:
            return False, f"Not started: {e}"
        return True, "Started. The curves update every second."

    def stop(self, owner):
        return self.runs.stop(owner)

    # ---- the drawing comparison ----
    def models(self):
        """(teacher, student, description) for the drawing comparison: the latest finished
        run's models, or the shipped checkpoints before any run."""
        with self._models_lock:
            latest = self.runs.latest
            if latest is None:
                if self._shipped is None:
                    self._shipped = self._shipped_models()
                return self._shipped
            if self._models_run is not latest:
                self._models = (latest.teacher, latest.student,
                                f"latest run: {latest.config['teacher']} → {latest.config['student']}, "
                                f"T={latest.config['temperature']:g}, α={latest.config['alpha']:g} "
                                f"(student {latest.metrics['student_acc']:.2%})")
                self._models_run = latest
            return self._models

    def _shipped_models(self):
        teacher, _ = checkpoints.load(checkpoints.teacher_path(checkpoints.SHIPPED_DIR, "seed_teacher", "sample"))
        student, meta = checkpoints.load(checkpoints.student_path(checkpoints.SHIPPED_DIR, SHIPPED_STUDENT,
                                                                  "kd", "sample"))
        cfg = meta.get("config", {})
        return (teacher, student, f"shipped checkpoints: seed_teacher → {SHIPPED_STUDENT}, "
                                  f"T={cfg.get('temperature', '?')}, α={cfg.get('alpha', '?')}")

    def predict(self, canvas, temperature=4.0):
        """Returns a dict with the prepared 28x28 image, both softmaxes, KL, notes and which
        models answered. Raises inference.CanvasError (BlankCanvas for no ink)."""
        try:
            temperature = float(temperature)
        except (TypeError, ValueError):
            temperature = 4.0
        if not 0 < temperature <= 100:
            temperature = 4.0
        prepared = inference.preprocess(canvas)
        teacher, student, description = self.models()
        result = inference.compare(teacher, student, prepared.tensor, temperature)
        result.update(image=prepared.image, notes=prepared.notes, models=description)
        return result

    # ---- the finished run's table ----
    def comparison(self):
        """Rows for the seed article's table, live: params, size, accuracy, latency, KD gain."""
        latest = self.runs.latest
        if latest is None:
            return None
        if self._table[0] is latest:
            return self._table[1]
        m = latest.metrics
        rows = []
        for role, model, acc in (("teacher", latest.teacher, m["teacher_acc"]),
                                 ("KD student", latest.student, m["student_acc"]),
                                 ("baseline student", latest.baseline, m["baseline_acc"])):
            if model is None:
                continue
            p50, _ = inference.latency_ms(model, repeats=50, warmup=5)
            rows.append({"model": role, "arch": latest.config["teacher" if role == "teacher" else "student"],
                         "params": count_parameters(model),
                         "size_mb": checkpoints.size_on_disk(model) / 1e6,
                         "test_acc": acc, "latency_ms": p50})
        gain = None if m["baseline_acc"] is None else m["student_acc"] - m["baseline_acc"]
        table = {"rows": rows, "kd_gain": gain, "data": m["data"], "test_samples": m["test_samples"],
                 "seconds": m["seconds"]}
        self._table = (latest, table)
        return table


SERVER_THREADS = 1  # torch threads of the app's process; runs get all cores in their worker


def configure_threads(threads=None):
    """Intra-op torch threads for this process: default to the CPUs it may use."""
    import os

    import torch
    if threads is None:
        threads = int(os.environ.get("KDAPP_THREADS", 0)) or len(os.sched_getaffinity(0))
    torch.set_num_threads(max(1, threads))
    return torch.get_num_threads()
