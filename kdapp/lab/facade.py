"""The API the app calls: one shared lab per process, used by every visitor.

It owns the run store and queue, the models each visitor's drawing uses (loaded lazily, a few
kept in memory: kdapp.lab.run_models, a part of Lab), and the caps a hosted demo needs; reading
visitors' and links' settings under them is kdapp.lab.settings, another part. Everything it
returns is plain Python, so the UI never touches a tensor; text for the page is in reports.
"""
import json
import logging
import os
import secrets
import threading
from pathlib import Path

from kdapp import aggregate, checkpoints
from kdapp.config import HOSTED_CAPS, HOSTED_IMPOSED
from kdapp.evaluation import fidelity as fidelity_lib
from kdapp.lab import continual as lab_continual, lessons
from kdapp.lab.jobs import FINISHED, QueueFull, RunQueue
from kdapp.lab.run_models import INT8, SHIPPED, RunModels
from kdapp.lab.settings import LabSettings
from kdapp.lab.store import RunStore

log = logging.getLogger(__name__)
# The app and the tests read these here: SHIPPED and INT8 name the drawing's choices (kdapp.lab.run_models).
__all__ = ["INT8", "SEEDS", "SERVER_THREADS", "SHIPPED", "SWEEPS", "Lab", "configure_threads"]

SWEEPS = {"temperature": (1.0, 2.0, 4.0, 8.0, 16.0), "alpha": (0.1, 0.3, 0.5, 0.7, 0.9)}
SEEDS = (0, 1, 2)  # a sweep or lesson repeated over these gives each cell a real error bar
QUEUE_TOTAL = 20   # runs waiting at most: one sweep over seeds 0-2 (15 runs) fits
AGAIN = ("finished", "failed", "cancelled", "interrupted")  # the states a run can be run again from


class Lab(RunModels, LabSettings):
    def __init__(self, runs_dir="runs", data_dir="data", workers=1, caps=HOSTED_CAPS, imposed=HOSTED_IMPOSED,
                 keep_checkpoints=100, drawing_dir=None):
        self.runs_dir, self.data_dir = Path(runs_dir), data_dir
        self.drawing_dir = drawing_dir  # None: the shipped drawing models; else a `distill --out` folder
        if drawing_dir is not None:
            checkpoints.drawing_paths(drawing_dir)  # a wrong folder stops the app at start, with the reason
        self.caps, self.imposed = dict(caps), dict(imposed)
        self.keep_checkpoints, self.workers = keep_checkpoints, workers
        self._store = self._queue = None  # opened by open(): at server start, or at first use
        self._open_lock = threading.Lock()
        self._init_models()

    # ---- its life: building a Lab opens nothing; open() opens the store and starts the queue ----
    def open(self):
        """Open the run store and start the queue's dispatchers, once (the app calls this when its
        server starts; anything that needs the store before then opens it on first use)."""
        with self._open_lock:
            if self._queue is None:
                self._store = RunStore(self.runs_dir, keep_checkpoints=self.keep_checkpoints)
                self._queue = RunQueue(self._store, self.data_dir, workers=self.workers, total=QUEUE_TOTAL)
        return self

    @property
    def store(self):
        return self.open()._store

    @property
    def queue(self):
        return self.open()._queue

    @property
    def runs_path(self):
        """The folder of the runs' files (checkpoints, exports), which the app may serve."""
        return self.runs_dir / "runs"

    # ---- runs ----
    def start(self, settings, owner):
        """Queue a run. Returns (run record or None, sentence for the visitor)."""
        try:
            config = self.config(settings)
            record = self.queue.submit(config, owner)[0]
        except (ValueError, QueueFull) as e:
            return None, f"Not started: {e}"
        return record, self._queued_message(record["id"], owner)

    def sweep(self, settings, owner, name, seeds=None):
        """Queue the current settings at each value of SWEEPS[name], as one group; with `seeds`,
        each value once per seed (the gain map then has n = len(seeds) and real error bars)."""
        try:
            base = self.config(settings)
            seeds = tuple(seeds) if seeds else (base.seed,)
            configs = [base.replace(**{name: value}, seed=seed) for value in SWEEPS[name] for seed in seeds]
            records = self.queue.submit(configs, owner, group=f"sweep-{name}-{secrets.token_hex(4)}")
        except (ValueError, QueueFull) as e:
            return [], f"Sweep not started: {e}"
        values = ", ".join(f"{v:g}" for v in SWEEPS[name])
        over = f", each on seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else ""
        return records, f"Sweep queued: {len(records)} runs at {name} = {values}{over}."

    def lesson(self, settings, owner, key):
        """Queue a lesson's runs (kdapp.lab.lessons) on the form's settings, as one group that
        counts once against the visitor's allowance. Returns (group id or None, sentence)."""
        lesson = lessons.LESSONS[key]
        configs = lessons.configs(lesson, self.config(settings))
        # The same lesson on the same settings, already queued or answered for this visitor: show it again
        # rather than queue its runs a second time (a second click, or a click after a reload).
        wanted = sorted(json.dumps(c.to_dict(), sort_keys=True) for c in configs)
        for found_key, group, runs in self.lessons_of(owner):
            if found_key == key and all(r["state"] in ("queued", "running", "finished") for r in runs) and \
                    sorted(json.dumps(r["config"], sort_keys=True) for r in runs) == wanted:
                return group, (f"Lesson already run on these settings ({lesson.title}): "
                               f"its {len(runs)} runs are shown below.")
        group = f"lesson-{key}-{secrets.token_hex(4)}"
        try:
            records = self.queue.submit(configs, owner, group=group)
        except (ValueError, QueueFull) as e:
            return None, f"Lesson not started: {e}"
        return group, (f"Lesson queued: {len(records)} runs ({lesson.title}, seeds "
                       f"{', '.join(map(str, lessons.SEEDS))}). The answer appears under the lessons.")

    def lessons_of(self, owner):
        """This visitor's lessons, newest first: [(lesson key, group, its runs)]. A page opened again shows
        the newest (kdapp.ui.lessons_tab), and Lab.lesson reuses one already run on the same settings."""
        if not owner:
            return []
        found = {}  # group -> its runs; a group's first run is its newest, so the newest group comes first
        for r in self.store.list(limit=500, owner=owner, curves=False):
            group = (r["extra"] or {}).get("group") or ""
            if group.startswith("lesson-"):
                found.setdefault(group, []).append(r)
        keyed = ((group.removeprefix("lesson-").rsplit("-", 1)[0], group, runs) for group, runs in found.items())
        return [(key, group, runs) for key, group, runs in keyed if key in lessons.LESSONS]  # "lesson-missing-3-ab12cd34"

    def group_runs(self, group):
        """The runs of one sweep or lesson, newest first."""
        return [r for r in self.store.list(limit=500, curves=False) if (r["extra"] or {}).get("group") == group]

    def run_again(self, run_id, owner):
        """Queue an ended run's settings again, as a new run of this visitor's (under today's caps).
        Returns (run record or None, sentence for the visitor)."""
        record = self.run(run_id)
        if record is None:
            return None, f"Not started: there is no run {run_id}"
        if record["state"] not in AGAIN:
            return None, f"Not started: run {run_id} is {record['state']}; it can run again once it has ended"
        if lab_continual.is_continual(record):  # its own settings, checked by ContinualConfig again
            return lab_continual.start(self, record["config"], owner)
        settings = {k: v for k, v in record["config"].items() if k not in self.imposed}
        return self.start(settings, owner)

    def _queued_message(self, run_id, owner):
        active = self.queue.active(owner)
        free = self.queue.workers - sum(r["position"] == 0 for r in active)
        for r in active:
            if r["id"] == run_id:
                if r["position"] <= free:  # running, or about to be picked by an idle worker
                    return f"Run {run_id} started. The curves update every second."
                return f"Run {run_id} queued, position {r['position']}."
        return f"Run {run_id} submitted."

    def cancel(self, run_id, owner):
        return self.queue.cancel(run_id, owner)

    def run(self, run_id):
        """A run's public record (live while it runs), or None. Never includes its owner."""
        if not isinstance(run_id, str) or not run_id:
            return None
        return self.queue.get(run_id)

    def runs(self, teacher=None, student=None, limit=200, kind="distill"):
        """Newest first, without curves (see `run` for one run whole); `kind` as RunStore.list's
        ("distill", "continual", or None for both)."""
        return self.store.list(limit=limit, teacher=teacher, student=student, curves=False, kind=kind)

    def active(self, owner):
        return self.queue.active(owner)

    def gain_group(self, like=None):
        """The finished runs that differ from `like` (a run; default the newest finished one) only
        in T, α and the seed: the gain map's runs (kdapp.aggregate)."""
        finished = self.store.list(limit=1000, states=(FINISHED,), curves=False)
        like = like or next(iter(finished), None)
        return aggregate.comparable(finished, like["config"], ("temperature", "alpha")) if like else []

    def version(self):
        return self.queue.version

    def latest_finished(self, owner=None):
        """The newest finished run, whole (the visitor's own if `owner` is given), or None."""
        newest = self.store.list(limit=1, states=(FINISHED,), owner=owner, curves=False)
        return self.store.get(newest[0]["id"]) if newest else None

    def owns(self, run_id, owner):
        return owner is not None and run_id is not None and self.store.owner_of(run_id) == owner

    # ---- the drawing's models, a run's table and files: kdapp.lab.run_models.RunModels ----

    # ---- what a finished run's student learned ----
    def fidelity(self, run_id):
        """kdapp.evaluation.fidelity's dict for a finished run, or None (not finished, or from before fidelity)."""
        record = self.run(run_id) if run_id else None
        return (record or {}).get("fidelity")

    @staticmethod
    def gallery(fidelity, kind, scale=3):
        """[(uint8 image, caption)] for a "fixed" or "broken" group of a fidelity dict: the digits
        where KD changed the answer, upscaled `scale`× (pixelated) for thumbnails."""
        group = (fidelity or {}).get(kind)
        if not group or not group["index"]:
            return []
        images = fidelity_lib.decode_images(group["images"])
        images = images.repeat(scale, axis=1).repeat(scale, axis=2)
        # Short enough for a six-column thumbnail, even on a phone, and in no language: "7 → 1", the label,
        # then the wrong model's answer (the gallery's title says which model that is). "7: baseline 1" was
        # cut to "7: baselin…", hiding the answer.
        role = "baseline" if kind == "fixed" else "student"
        return [(img, f"{label} → {said}") for img, label, said in zip(images, group["label"], group["predicted"][role])]

    def browser_secret(self):
        """The key that encrypts visitors' owner tokens in their browsers: KDAPP_SECRET, else one
        made once and kept beside the runs, so tokens outlive a server restart."""
        if os.environ.get("KDAPP_SECRET"):
            return os.environ["KDAPP_SECRET"]
        path = self.runs_dir / "browser-secret"
        path.parent.mkdir(parents=True, exist_ok=True)  # the server may start before its first run
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
        except FileExistsError:
            pass
        return path.read_text().strip()

    def close(self):
        with self._open_lock:
            if self._queue is not None:
                self._queue.close()


SERVER_THREADS = 1  # torch threads of the app's process; runs get all cores in their workers


def configure_threads(threads=None):
    """Intra-op torch threads for this process: default to the CPUs it may use."""
    import torch
    if threads is None:
        threads = int(os.environ.get("KDAPP_THREADS", 0)) or len(os.sched_getaffinity(0))
    torch.set_num_threads(max(1, threads))
    return torch.get_num_threads()
