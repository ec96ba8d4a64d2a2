"""One notebook: a run from `python -m kdapp distill` goes into the same store as the app's runs
(KDAPP_RUNS_DIR, default runs), so the Runs tab lists it, compares it and links to it.

The CLI records the run's events as the queue does (kdapp.lab.live_run), and writes the run once it
has finished, with its curves, metrics, fidelity and checkpoints, and no owner: nobody's
allowance, and nobody's to cancel. Nothing is written for a run that fails or is stopped.
"""
import os
import shutil
import time

from kdapp.lab.live_run import FINISHED, LiveRun
from kdapp.lab.store import RunStore

RUNS_DIR_ENV = "KDAPP_RUNS_DIR"


def runs_dir():
    """The app's store folder: the CLI's default --runs-dir."""
    return os.environ.get(RUNS_DIR_ENV, "runs")


class Recorder:
    """An `emit` for train.run that keeps the curves the app would have kept; `save` then
    writes the finished run into the store under `root` and returns its record."""

    def __init__(self, config):
        self.live = LiveRun({"config": config.to_dict(), "extra": {}})

    def __call__(self, event):
        self.live.apply(event)

    def save(self, root, result):
        # Opening a store changes no run (the server alone recovers its own at start): an app
        # serving this store may be running runs right now.
        store = RunStore(root)
        try:
            r = self.live.record
            record = store.create(r["config"], None, state=FINISHED, extra={"source": "cli"})
            run_dir = store.run_dir(record["id"])
            run_dir.mkdir(parents=True, exist_ok=True)
            paths = dict(result.paths)
            for role in ("student", "baseline"):  # the teacher stays where it is (shipped or runs/teachers)
                if paths.get(role):
                    paths[role] = str(shutil.copy2(paths[role], run_dir))
            if paths.get("teacher") and os.path.dirname(paths["teacher"]) == os.path.dirname(result.paths["student"]):
                paths["teacher"] = str(shutil.copy2(paths["teacher"], run_dir))  # born-again's own teacher
            store.update(record["id"], started=r["started"], ended=time.time(), message="finished (command line)",
                         data=r.get("data"), device=r.get("device"), metrics=result.metrics, curves=r["curves"],
                         accuracy=r["accuracy"], warnings=r["warnings"], fidelity=result.fidelity,
                         extra={"source": "cli", "paths": paths})
            store.finish_checkpoints(record["id"])
            return store.get(record["id"])
        finally:
            store.close()
