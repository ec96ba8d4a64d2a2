"""Background runs: one at a time, in a worker process, observable by any number of readers.

The engine's events are folded into a `RunState` under a lock; readers take cheap snapshots
keyed by a version number, so a UI that polls every second can skip redrawing when nothing
changed, and polling costs the training thread one lock acquisition per logged step.
"""
import json
import logging
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from kdapp import checkpoints, engine

log = logging.getLogger(__name__)

RUNNING, FINISHED, FAILED, CANCELLED = "running", "finished", "failed", "cancelled"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # so `python -m kdapp.worker` finds the package


class Busy(RuntimeError):
    """Another run is in progress."""


class RunState:
    """Everything a reader may want to show about one run, as plain Python values."""

    def __init__(self, config, owner):
        self.id = uuid.uuid4().hex[:8]
        self.config = config.to_dict()
        self.owner = owner
        self.state = RUNNING
        self.phase = "starting"
        self.message = "starting"
        self.error = None
        self.started = time.time()
        self.ended = None
        self.data = None
        self.device = None
        self.epoch = self.epochs = 0
        self.step = self.steps = 0
        self.eta_s = None
        self.curves = {k: [] for k in ("step", "loss", "soft", "hard", "feature", "baseline", "teacher_loss")}
        self.accuracy = {k: [] for k in ("epoch", "teacher", "student", "baseline")}
        self.warnings = []
        self.metrics = None
        self.version = 0

    def apply(self, event):
        kind = event["type"]
        if kind == "phase":
            self.phase, self.message = event["phase"], event.get("message", event["phase"])
            self.eta_s = None
        elif kind == "data":
            self.data, self.device = event["data"], event["device"]
            self.message = event["description"]
        elif kind == "warning":
            self.warnings.append(event["message"])
        elif kind == "step":
            self.step, self.steps = event["step"], event["steps"]
            self.epoch, self.epochs = event["epoch"], event["epochs"]
            self.eta_s = event.get("eta_s")
            if event["phase"] == "distill":
                for k in ("loss", "soft", "hard", "feature", "baseline"):
                    self.curves[k].append(event.get(k))
                self.curves["step"].append(event["step"])
            else:
                self.curves["teacher_loss"].append(event["teacher_loss"])
        elif kind == "teacher_epoch":
            self.message = f"teacher epoch {event['epoch']}/{event['epochs']}: {event['teacher_acc']:.2%}"
        elif kind == "epoch":
            self.epoch, self.epochs = event["epoch"], event["epochs"]
            if event["epoch"] > 0:
                self.accuracy["epoch"].append(event["epoch"])
                self.accuracy["teacher"].append(event["teacher_acc"])
                self.accuracy["student"].append(event["student_acc"])
                self.accuracy["baseline"].append(event["baseline_acc"])
        self.version += 1

    def snapshot(self):
        return {
            "id": self.id, "state": self.state, "phase": self.phase, "message": self.message,
            "error": self.error, "owner": self.owner, "config": dict(self.config),
            "started": self.started, "ended": self.ended, "data": self.data, "device": self.device,
            "epoch": self.epoch, "epochs": self.epochs, "step": self.step, "steps": self.steps,
            "eta_s": self.eta_s, "elapsed_s": (self.ended or time.time()) - self.started,
            "curves": {k: list(v) for k, v in self.curves.items()},
            "accuracy": {k: list(v) for k, v in self.accuracy.items()},
            "warnings": list(self.warnings), "metrics": self.metrics, "version": self.version,
        }


class RunManager:
    """Starts runs in a worker process (python -m kdapp.worker), one at a time, and keeps the
    latest result. A thread here reads the worker's events into the RunState.

    `owner` is any hashable (the app uses the browser session); only the owner may stop a run
    it started (owner=None stops any run: for the CLI, tests and the server itself)."""

    def __init__(self, runs_dir="runs", data_dir="data"):
        self.runs_dir, self.data_dir = str(runs_dir), str(data_dir)
        self._lock = threading.Lock()
        self._state = None
        self._thread = None
        self._process = None
        self.latest = None  # engine.RunResult of the last finished run: replaced only on success

    def start(self, config, owner=None):
        config.validate()
        with self._lock:
            if self._state is not None and self._state.state == RUNNING:
                raise Busy(f"a run is already in progress ({self._state.message}); "
                           "watch it here, or start yours when it finishes")
            state = self._state = RunState(config, owner)
            Path(self.runs_dir).mkdir(parents=True, exist_ok=True)
            log_file = open(Path(self.runs_dir) / "worker.log", "ab")
            self._process = subprocess.Popen(
                [sys.executable, "-m", "kdapp.worker"], cwd=PACKAGE_ROOT, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=log_file, text=True, bufsize=1)
            log_file.close()
            job = {"config": config.to_dict(), "runs_dir": str(Path(self.runs_dir).resolve()),
                   "data_dir": str(Path(self.data_dir).resolve())}
            self._process.stdin.write(json.dumps(job) + "\n")
            self._process.stdin.flush()
            self._thread = threading.Thread(target=self._watch, args=(self._process, state, config),
                                            name=f"kd-run-{state.id}", daemon=True)
            self._thread.start()
        return state.snapshot()

    def _watch(self, process, state, config):
        # The engine stops itself at the time limit; this is the backstop for a hung worker.
        killer = threading.Timer(config.time_limit_s + 120, process.kill)
        killer.start()
        end = None
        for line in process.stdout:
            event = json.loads(line)
            if event["type"] == "end":
                end = event
                break
            with self._lock:
                state.apply(event)
        try:
            self._finish(process, state, end)
        finally:
            # Reap the worker after the state is final: its interpreter takes a moment to exit.
            process.wait()
            killer.cancel()

    def _finish(self, process, state, end):
        if end is None:
            process.wait()
            self._end(state, FAILED, f"failed: the run's process ended unexpectedly (exit code "
                                     f"{process.returncode})", error=f"exit code {process.returncode}")
        elif end["state"] == FINISHED:
            try:
                result = self._load_result(end)
            except Exception as e:  # e.g. a checkpoint that did not survive
                log.exception("run %s: could not load its models", state.id)
                self._end(state, FAILED, f"failed: could not load the run's models: {e}", error=str(e))
                return
            with self._lock:
                self.latest = result
                state.metrics = end["metrics"]
                state.warnings.extend(end["warnings"])
            self._end(state, FINISHED, "finished")
        else:
            self._end(state, end["state"], end["message"], error=end.get("error"))

    @staticmethod
    def _load_result(end):
        paths = end["paths"]
        teacher, _ = checkpoints.load(paths["teacher"])
        student, _ = checkpoints.load(paths["student"])
        baseline = checkpoints.load(paths["baseline"])[0] if paths.get("baseline") else None
        return engine.RunResult(end["config"], end["metrics"], teacher, student, baseline, paths, end["warnings"])

    def _end(self, state, outcome, message, error=None):
        with self._lock:
            state.state, state.message, state.error = outcome, message, error
            state.phase, state.eta_s, state.ended = outcome, None, time.time()
            state.version += 1

    def stop(self, owner=None, reason="stopped"):
        """Ask the current run to stop. Returns a sentence saying what happened."""
        with self._lock:
            if self._state is None or self._state.state != RUNNING:
                return "no run is in progress"
            if owner is not None and owner != self._state.owner:
                return "only the visitor who started this run can stop it"
            self._state.message = f"stopping ({reason})"
            self._state.version += 1
            process = self._process
        try:
            process.stdin.write("stop\n")
            process.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass  # the worker already ended
        deadline = time.monotonic() + 1.0
        while self.busy() and time.monotonic() < deadline:
            time.sleep(0.01)
        return "stopping" if self.busy() else "stopped"

    def busy(self):
        with self._lock:
            return self._state is not None and self._state.state == RUNNING

    def version_key(self):
        """(run id, version): changes whenever anything a reader shows changes. Cheap."""
        with self._lock:
            return None if self._state is None else (self._state.id, self._state.version)

    def snapshot(self):
        """The current (or last) run as plain values, or None before the first run."""
        with self._lock:
            if self._state is None:
                return None
            snap = self._state.snapshot()
        snap["key"] = (snap["id"], snap["version"])
        return snap

    def wait(self, timeout=None):
        """Block until the current run has ended (and its worker process exited)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.busy()
