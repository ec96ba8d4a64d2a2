"""Runs in the background: a fair FIFO queue, worker processes, and the live view of each run.

Every run is a row of the RunStore (kdapp.lab.store) from the moment it is submitted, so the queue
outlives its server: one RunQueue per runs folder (an OS lock says so), which at start keeps the queued
runs in order and puts the runs that were training first in line, to resume from their last epoch (the
worker saves a resume point after each one). Dispatcher threads (one per worker, `KDAPP_WORKERS`) take
the oldest queued run, start `python -m kdapp.lab.worker` for it, fold the worker's events into a
LiveRun under a lock, and write the outcome to the store. Readers take cheap copies; `version` changes
whenever anything a reader shows changes, so a page polling every second can skip redrawing when nothing
did. The queue's ETAs are kdapp.lab.eta's.
"""
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from kdapp import events as events_lib
from kdapp.config import RunConfig
from kdapp.lab import drawing_models, eta
from kdapp.lab.folder_lock import hold_runs_folder
from kdapp.lab.live_run import CANCELLED, FAILED, FINISHED, QUEUED, RUNNING, LiveRun

log = logging.getLogger(__name__)

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # so `python -m kdapp.lab.worker` finds the package
# OpenMP threads that wait for each other spin for GOMP_SPINCOUNT rounds before sleeping (300,000 by
# default). While the server answers drawings, that spinning takes the core the server needs and stalls
# the other training thread. 10,000: training alone at the same speed (4.9 vs 5.1 s for 4 epochs, 2 runs
# each), and at 60 drawing visitors it kept 55% of its speed instead of 41% (`python -m kdapp
# loadtest`). OMP_WAIT_POLICY=PASSIVE kept 62% but cost 40% alone. The environment's own value wins.
WORKER_ENV = {"GOMP_SPINCOUNT": "10000"}
WORKER_COMMAND = (sys.executable, "-m", "kdapp.lab.worker")
RESUME_NAME = "resume.pt"  # in a run's folder: where its worker saves a resume point after each epoch
REQUEUE = {"type": "requeue"}  # what _run returns for a run queued again instead of ended
SHUTDOWN = {"type": "shutdown"}  # ... for a run the server's stop interrupted: its row stays as it is
WORKER_DIED_REQUEUED = "its worker process died; queued again to resume from its last finished epoch"
WORKER_DIED_REQUEUED_TASK = "its worker process died; queued again to resume after its last finished task"


def tell_stop(process):
    """Ask a worker to stop after its current step (any line after the job line means stop)."""
    try:
        process.stdin.write("stop\n")
        process.stdin.flush()
    except (BrokenPipeError, ValueError, OSError):
        pass  # the worker already ended


class QueueFull(RuntimeError):
    """The run was not queued; the message says which cap was reached and what to do."""


class RunQueue:
    """Submit, cancel and watch runs. `owner` is the visitor's secret token; only the owner may
    cancel a run (owner=None may cancel any: the CLI, tests and the server itself)."""

    def __init__(self, store, data_dir="data", workers=1, per_owner=2, total=10, threads=None,
                 worker_command=WORKER_COMMAND):
        self.store, self.data_dir = store, str(data_dir)
        self.per_owner, self.total = per_owner, total
        self.worker_command = list(worker_command)
        cpus = threads or len(os.sched_getaffinity(0))
        self.workers = max(1, workers)
        self.threads_per_worker = max(1, cpus // self.workers)
        self._folder_lock = hold_runs_folder(store.root)
        requeued, gave_up = store.recover()
        if requeued or gave_up:
            log.info("after the restart: %d runs queued again to resume, %d failed after too many restarts",
                     len(requeued), len(gave_up))
        self._lock = threading.Condition()
        self._queued = [r["id"] for r in store.active() if r["state"] == QUEUED]  # resumed first, then FIFO
        self._live = {}       # run id -> LiveRun
        self._processes = {}  # run id -> worker process
        self._closed = False
        self.version = 0
        self._dispatchers = [threading.Thread(target=self._dispatch, name=f"kd-dispatch-{i}", daemon=True)
                             for i in range(self.workers)]
        for thread in self._dispatchers:
            thread.start()

    # ---- submitting and cancelling ----
    def submit(self, configs, owner, group=None):
        """Queue one config, or several as one group (a sweep, which counts once against the
        visitor's allowance). Returns the new records. Raises QueueFull with the reason."""
        configs = configs if isinstance(configs, (list, tuple)) else [configs]
        with self._lock:
            active = self.store.active()
            if owner is not None:
                groups = {r["extra"].get("group") or r["id"] for r in active if r["owner"] == owner}
                if len(groups) >= self.per_owner:
                    raise QueueFull(f"you already have {len(groups)} runs (or sweeps) queued or running, "
                                    f"the most one visitor may have; cancel one or wait for it to finish")
            queued = sum(r["state"] == QUEUED for r in active)
            if queued + len(configs) > self.total:
                raise QueueFull(f"the queue is full ({queued} runs waiting, at most {self.total}); "
                                "try again when some have finished")
            records = self.store.create_many([c.to_dict() for c in configs], owner,
                                             extra={"group": group} if group else {})  # all or none
            self._queued += [r["id"] for r in records]
            self.version += 1
            self._lock.notify_all()
        return records

    def cancel(self, run_id, owner=None):
        """Cancel a queued or running run. Returns a sentence saying what happened."""
        with self._lock:
            record = self.store.get(run_id)
            if record is None:
                return f"there is no run {run_id}"
            if owner is not None and self.store.owner_of(run_id) != owner:
                return "only the visitor who started this run can cancel it"
            if run_id in self._queued:
                self._queued.remove(run_id)
                self.store.update(run_id, state=CANCELLED, ended=time.time(), message="cancelled before it started")
                self.version += 1
                self._lock.notify_all()
                return f"run {run_id} cancelled; it had not started"
            live = self._live.get(run_id)
            if live is None:
                return f"run {run_id} is not running ({record['state']})"
            live.stop_requested = True  # seen by the dispatcher if the worker is not started yet
            live.record["message"] = "stopping"
            self.version += 1
            process = self._processes.get(run_id)
        if process is None:
            return f"run {run_id} is stopping"
        tell_stop(process)
        self.wait(run_id, timeout=2.0)
        return f"run {run_id} stopped" if self.get(run_id)["state"] != RUNNING else f"run {run_id} is stopping"

    # ---- reading ----
    def get(self, run_id):
        """The run as a record (live while it runs), or None."""
        with self._lock:
            live = self._live.get(run_id)
            if live is not None:
                return live.snapshot()
        return self.store.get(run_id)

    def active(self, owner=None):
        """Queued and running runs, FIFO, each with `position` (1 = next to start, 0 = running),
        `mine` (whether `owner` started it), `eta_s` (seconds until it finishes) and, when
        queued, `starts_in_s`."""
        with self._lock:
            running = [self._live[i].snapshot() for i in self._live]
            owners = {r["id"]: r["owner"] for r in self.store.active()}
            queued = [self.store.get(i) for i in self._queued]
        return [dict(r, mine=owner is not None and owners.get(r["id"]) == owner)
                for r in eta.schedule(running, queued, self.workers, eta.estimator(self.store, self.work_ahead))]

    def work_ahead(self, config):
        """What a run must do before its students learn (kdapp.training.targets.work_ahead), for its ETA."""
        from kdapp.training import targets, train  # lazy, as the workers' imports are
        run_config = RunConfig.from_dict(config)  # stored configs are RunConfig.to_dict's (continual ones never come here)
        device = train.pick_device(run_config.device)
        device = f"{device.type}:0" if device.type != "cpu" and device.index is None else str(device)  # a tensor's
        return targets.work_ahead(run_config, self.store.root, device)

    def busy(self):
        with self._lock:
            return bool(self._live or self._queued)

    def wait(self, run_id, timeout=None):
        """Block until the run has ended (and its worker process exited). True if it has."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while run_id in self._live or run_id in self._queued:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def close(self):
        """Stop the workers and the dispatchers when the server stops. A server's stop is a
        restart, not a cancel: the store keeps each run as it was (queued, or running with its
        resume point), and the next RunQueue on the folder resumes them."""
        with self._lock:
            self._closed = True
            processes = list(self._processes.values())
            self._lock.notify_all()
        for process in processes:
            tell_stop(process)
        for thread in self._dispatchers:
            thread.join(timeout=10)
        self._folder_lock.close()  # another RunQueue may now take the folder

    # ---- the dispatchers ----
    def _dispatch(self):
        while True:
            with self._lock:
                while not self._queued and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                run_id = self._queued.pop(0)
                live = None
                try:
                    resuming = (self.store.run_dir(run_id) / RESUME_NAME).is_file()
                    live = self._live[run_id] = LiveRun(self.store.get(run_id), resuming)
                    self.store.update(run_id, state=RUNNING, started=live.record["started"], message="starting")
                except Exception:  # e.g. a database locked past its timeout: the run fails, the queue goes on
                    log.exception("run %s: could not start it", run_id)
                self.version += 1
            end = None
            try:
                if live is not None:
                    end = self._run(run_id, live)
            except Exception as e:  # a bug here must not kill the dispatcher, or the queue stalls
                log.exception("run %s: dispatcher error", run_id)
                end = events_lib.end(FAILED, f"failed: {e}", error=str(e))
            finally:
                self._end(run_id, live, end or events_lib.end(FAILED, "failed: the run could not be started",
                                                              error="not started"))

    def _run(self, run_id, live):
        run_dir = self.store.run_dir(run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "worker.log", "ab") as log_file:
            process = subprocess.Popen(self.worker_command, cwd=PACKAGE_ROOT,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file,
                                       text=True, bufsize=1, env=WORKER_ENV | dict(os.environ))
        config = live.record["config"]
        job = {"config": config, "runs_dir": str(self.store.root.resolve()), "out_dir": str(run_dir.resolve()),
               "data_dir": str(Path(self.data_dir).resolve()), "threads": self.threads_per_worker,
               "resume_path": str((run_dir / RESUME_NAME).resolve())}
        process.stdin.write(json.dumps(job) + "\n")  # the job line first: any later line means stop
        process.stdin.flush()
        with self._lock:
            self._processes[run_id] = process
            stop_now = live.stop_requested  # a cancel that came before the process existed
        if stop_now:
            tell_stop(process)
        # The run stops itself at its time limit; this is the backstop for a hung worker.
        def kill_hung_worker():
            live.stop_requested = True  # a worker killed for hanging is not resumed
            process.kill()
        killer = threading.Timer(config["time_limit_s"] + 120, kill_hung_worker)
        killer.start()
        end = None
        try:
            for line in process.stdout:
                event = json.loads(line)
                if event["type"] == "end":
                    end = event
                    break
                with self._lock:
                    live.apply(event)
                    self.version += 1
                if event["type"] in ("epoch", "continual_task"):  # persist progress: a server killed now keeps the curves
                    self.store.update(run_id, **{k: live.record[k] for k in ("accuracy", "curves", "data", "device")})
                elif event["type"] == "resumed":
                    self.store.update(run_id, resumed_from_epoch=event["epoch"])
            process.wait()
        finally:
            killer.cancel()
            if process.poll() is None:  # we stopped reading early: never leave a worker behind
                process.kill()
                process.wait()
        if self._closed and not live.stop_requested and (end is None or end["state"] == CANCELLED):
            return SHUTDOWN  # stopped by the server's stop, not by a visitor: the next server resumes it
        if end is None and (run_dir / RESUME_NAME).is_file() and not live.stop_requested \
                and not self._closed and self.store.requeue(run_id, WORKER_DIED_REQUEUED_TASK if config.get("kind") == "continual"
                                                   else WORKER_DIED_REQUEUED, max_restarts=1):
            return REQUEUE  # first in line again (see _end)
        if end is None:
            end = events_lib.end(FAILED, f"failed: the run's process ended unexpectedly (exit code "
                                         f"{process.returncode})", error=f"exit code {process.returncode}")
        return end

    def _end(self, run_id, live, end):
        """Write the outcome; whatever happens, the run leaves the live set and waiters wake.
        end=REQUEUE: the run was queued again to resume, so it goes back to the head of the queue;
        end=SHUTDOWN: the server is stopping, and the row stays as it is for the next one."""
        if end is REQUEUE or end is SHUTDOWN:
            with self._lock:
                self._live.pop(run_id, None)
                self._processes.pop(run_id, None)
                if end is REQUEUE:
                    self._queued.insert(0, run_id)
                self.version += 1
                self._lock.notify_all()
            return
        try:
            r = live.record if live is not None else {}
            fields = dict(state=end["state"], message=end["message"], error=end["error"], ended=time.time())
            if live is not None:
                fields.update(curves=r["curves"], accuracy=r["accuracy"], warnings=r["warnings"] + end["warnings"],
                              data=r.get("data"), device=r.get("device"))
            if end["state"] == FINISHED:
                fields.update(metrics=end["metrics"], extra=dict(r.get("extra") or {}, paths=end["paths"]),
                              fidelity=end.get("fidelity"))
            self.store.update(run_id, **fields)
            if end["state"] == FINISHED:
                self.store.finish_checkpoints(run_id)
                drawing_models.export_run(self.store, run_id)  # once, for the visitors' browsers
            (self.store.run_dir(run_id) / RESUME_NAME).unlink(missing_ok=True)  # ended: never resumed
        except Exception:
            log.exception("run %s: could not record its outcome", run_id)
        finally:
            with self._lock:
                self._live.pop(run_id, None)
                self._processes.pop(run_id, None)
                self.version += 1
                self._lock.notify_all()
