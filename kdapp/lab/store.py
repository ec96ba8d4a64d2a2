"""The lab notebook: every run's config, curves and outcome in one SQLite file that outlives
the server, plus a folder of checkpoints per run.

Opening a store changes no run: the server that owns the root (kdapp.lab.jobs holds its lock)
calls `recover` once, which keeps queued runs queued and puts the running ones back in the queue,
first in line, to resume. Many threads read while one writes: each thread gets its own
connection, and WAL lets readers see the last committed state while a write transaction is open.
The table's columns and migrations are kdapp.lab.schema.
"""
import contextlib
import json
import logging
import re
import secrets
import shutil
import sqlite3
import threading
import time
from pathlib import Path

from kdapp.lab.schema import HEAVY, MIGRATIONS, RECORD_COLUMNS, SCHEMA_VERSION, WRITABLE, record

log = logging.getLogger(__name__)

MAX_CURVE_POINTS = 500   # a plot is a few hundred pixels wide; more points only cost JSON and redraws
BUSY_TIMEOUT_MS = 10_000  # a writer waits this long for another writer, then the error reaches the caller
STATES = ("queued", "running", "finished", "failed", "cancelled", "interrupted")
ACTIVE = ("queued", "running")
DB_NAME = "kdapp.sqlite3"
# A run the server was training when it died is queued again this many times at most: a run
# that takes its server down every time must not take it down forever.
MAX_RESTARTS = 2
REQUEUED = "queued again after a server restart; it resumes from its last finished epoch"
REQUEUED_TASK = "queued again after a server restart; it resumes after its last finished task"  # a continual run
GAVE_UP = ("failed: the server restarted {n} times while this run trained, so it was not resumed again; "
           "press Run again to start it afresh")

RUN_ID = re.compile(r"[0-9a-f]+")  # ids name folders that pruning deletes: never let "../" through


def downsample(curves, max_points):
    """Thin each curve to at most `max_points` evenly spaced points, keeping the first and last.

    Curves of the same length are thinned at the same indices, so `step[i]` still labels
    `loss[i]`; a curve of another length (the teacher's, logged in its own phase) gets its own.
    """
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2 to keep the first and last points, got {max_points}")
    picks = {}
    for values in curves.values():
        n = len(values)
        if n not in picks:
            picks[n] = range(n) if n <= max_points else [i * (n - 1) // (max_points - 1) for i in range(max_points)]
    return {name: [values[i] for i in picks[len(values)]] for name, values in curves.items()}


class RunStore:
    def __init__(self, root, keep_checkpoints=100, read_only=False):
        """read_only: only read an existing store, as a second process may while the server owns
        it (`runs export`): nothing is migrated, set aside or marked interrupted."""
        self.root = Path(root)
        self.path = self.root / DB_NAME
        self.keep_checkpoints, self.read_only = keep_checkpoints, read_only
        self._local = threading.local()
        if read_only:
            if not self.path.is_file():
                raise FileNotFoundError(f"no run store at {self.path}: give the folder the app keeps its runs "
                                        "in (KDAPP_RUNS_DIR, by default runs/)")
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self._open()

    # ---- connections ----

    def _connect(self):
        # isolation_level=None: no hidden transactions; writes say BEGIN IMMEDIATE themselves.
        if self.read_only:
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        else:
            db = sqlite3.connect(self.path, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA synchronous = NORMAL")  # in WAL mode a crash loses at most the last commits, never the file
        return db

    def _db(self):
        if getattr(self._local, "db", None) is None:
            self._local.db = self._connect()
        return self._local.db

    def close(self):
        """Close the calling thread's connection; the next call from that thread opens a new one."""
        if getattr(self._local, "db", None) is not None:
            self._local.db.close()
            self._local.db = None

    @contextlib.contextmanager
    def _write(self):
        db = self._db()
        db.execute("BEGIN IMMEDIATE")  # take the write lock now, so a read-then-write cannot be overtaken
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _open(self):
        problem = self._check()
        if problem != "ok":
            self._set_aside(problem)
        db = self._db()
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            self.close()
            raise RuntimeError(f"{self.path} has schema version {version}, but this kdapp knows only up to "
                               f"{SCHEMA_VERSION}: upgrade kdapp, or start it with another store folder. "
                               "The file was left untouched.")
        db.execute("PRAGMA journal_mode = WAL")
        with self._write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]  # again, under the lock
            for target, migrate in enumerate(MIGRATIONS[version:], start=version + 1):
                migrate(db)
                db.execute(f"PRAGMA user_version = {target}")

    def _check(self):
        """'ok', or why the file cannot serve as a database."""
        try:
            return self._db().execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.OperationalError:
            raise  # locked, unreadable folder, disk full: not the file's fault, so never move it aside
        except sqlite3.DatabaseError as e:  # "file is not a database", "disk image is malformed"
            return str(e)

    def _set_aside(self, problem):
        self.close()
        aside = self.path.with_name(f"{DB_NAME}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        while aside.exists():  # two corruptions within one second keep both files
            aside = aside.with_name(aside.name + "+")
        for suffix in ("", "-wal", "-shm"):
            companion = self.path.with_name(DB_NAME + suffix)
            if companion.exists():
                companion.rename(aside.with_name(aside.name + suffix))
        log.warning("run store %s is unreadable (%s); moved it to %s and started a fresh store: "
                    "earlier runs are not listed", self.path, problem, aside)

    # ---- runs ----

    def run_dir(self, run_id):
        if not RUN_ID.fullmatch(run_id):
            raise ValueError(f"not a run id: {run_id!r}")
        return self.root / "runs" / run_id

    def create(self, config, owner, state="queued", extra=None):
        """Record a new run and return it; a run created as running has started now."""
        return self.create_many([config], owner, state, extra)[0]

    def create_many(self, configs, owner, state="queued", extra=None):
        """Record several runs (a sweep) in one transaction, all or none, in order; returns them."""
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}: pick one of {', '.join(STATES)}")
        now = time.time()
        started = now if state == "running" else None
        while True:
            ids = [secrets.token_hex(4) for _ in configs]
            try:
                with self._write() as db:
                    for run_id, config in zip(ids, configs):
                        db.execute("INSERT INTO runs (id, created, started, state, owner, config, extra) "
                                   "VALUES (?, ?, ?, ?, ?, ?, ?)", (run_id, now, started, state, owner,
                                                                    json.dumps(config), json.dumps(extra or {})))
            except sqlite3.IntegrityError:
                continue  # one of the 8-hex-character ids was taken: nothing was kept, draw again
            return [self.get(run_id) for run_id in ids]

    def update(self, run_id, **fields):
        """Set record fields; dicts and lists are stored as JSON, and `curves` thinned to
        MAX_CURVE_POINTS, so callers pass the whole curves they hold each time."""
        unknown = set(fields) - WRITABLE
        if unknown:
            raise ValueError(f"cannot update {', '.join(sorted(unknown))}: "
                             f"the writable fields are {', '.join(sorted(WRITABLE))}")
        if "state" in fields and fields["state"] not in STATES:
            raise ValueError(f"unknown state {fields['state']!r}: pick one of {', '.join(STATES)}")
        if "curves" in fields:
            fields["curves"] = downsample(fields["curves"], MAX_CURVE_POINTS)
        values = [json.dumps(v) if isinstance(v, (dict, list)) else v for v in fields.values()]
        with self._write() as db:
            changed = db.execute(f"UPDATE runs SET {', '.join(f'{name} = ?' for name in fields)} WHERE id = ?",
                                 (*values, run_id)).rowcount
        if not changed:
            raise KeyError(f"no run {run_id!r} in {self.path}")

    def get(self, run_id):
        row = self._db().execute(f"SELECT {', '.join(RECORD_COLUMNS)} FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else record(row)

    def owner_of(self, run_id):
        row = self._db().execute("SELECT owner FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else row["owner"]

    def list(self, limit=200, teacher=None, student=None, states=None, owner=None, curves=True, kind="distill"):
        """Runs newest first, optionally only those with this teacher, student, state or owner
        (the owner filters; it is never returned). curves=False leaves out `curves` and `accuracy`
        (None): a listing then decodes a few hundred bytes a run instead of ~50 KB. `kind`:
        "distill" (the default: configs without a kind), "continual" (config["kind"]), None for all."""
        where, args = [], []
        if kind == "distill":  # the views of distillation runs read teacher, student, T and alpha
            where.append("json_extract(config, '$.kind') IS NULL")
        elif kind is not None:
            where.append("json_extract(config, '$.kind') = ?")
            args.append(kind)
        for column, value in (("owner", owner), ("json_extract(config, '$.teacher')", teacher),
                              ("json_extract(config, '$.student')", student)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if states is not None:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            args.extend(states)
        columns = RECORD_COLUMNS if curves else [f"NULL AS {c}" if c in HEAVY else c for c in RECORD_COLUMNS]
        rows = self._db().execute(f"SELECT {', '.join(columns)} FROM runs WHERE {' AND '.join(where) or 1} "
                                  "ORDER BY seq DESC LIMIT ?", (*args, limit))
        return [record(row) for row in rows]

    def active(self):
        """Internal, for the queue only: running runs, then queued runs in the order they start
        (runs queued again to resume first, then oldest first), each WITH its "owner". Never
        hand these records to a user."""
        rows = self._db().execute(f"SELECT {', '.join(RECORD_COLUMNS)}, owner FROM runs "
                                  "WHERE state IN (?, ?) ORDER BY state = 'running' DESC, restarts > 0 DESC, seq",
                                  ACTIVE)
        return [{**record(row), "owner": row["owner"]} for row in rows]

    def finish_checkpoints(self, run_id):
        """Mark the run's checkpoints as kept, then delete the checkpoint folders of all but the
        newest `keep_checkpoints` runs that have them. Returns the pruned ids; their rows stay."""
        with self._write() as db:
            db.execute("UPDATE runs SET has_checkpoints = 1 WHERE id = ?", (run_id,))
            pruned = [row["id"] for row in db.execute(
                "SELECT id FROM runs WHERE has_checkpoints = 1 ORDER BY seq DESC LIMIT -1 OFFSET ?",
                (self.keep_checkpoints,))]
            db.executemany("UPDATE runs SET has_checkpoints = 0 WHERE id = ?", [(i,) for i in pruned])
        # Folders go after the commit: a crash in between leaves a stray folder, never a record
        # that points at deleted checkpoints.
        for pruned_id in pruned:
            try:
                shutil.rmtree(self.run_dir(pruned_id))
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("could not delete the checkpoints of run %s: %s", pruned_id, e)
        return pruned

    def recover(self, max_restarts=MAX_RESTARTS):
        """At a server's start, for the runs the last one left: queued runs stay queued, in their
        order; running runs are queued again, ahead of them, unless restarts already requeued
        them `max_restarts` times (then they fail, saying so). Returns (requeued, failed) ids."""
        with self._write() as db:
            running = db.execute("SELECT id, restarts, json_extract(config, '$.kind') AS kind FROM runs "
                                 "WHERE state = 'running' ORDER BY seq").fetchall()
            requeue = [r for r in running if r["restarts"] < max_restarts]
            failed = [r["id"] for r in running if r["restarts"] >= max_restarts]
            db.executemany("UPDATE runs SET state = 'queued', restarts = restarts + 1, message = ? WHERE id = ?",
                           [(REQUEUED_TASK if r["kind"] == "continual" else REQUEUED, r["id"]) for r in requeue])
            db.executemany("UPDATE runs SET state = 'failed', ended = ?, message = ?, error = ? WHERE id = ?",
                           [(time.time(), GAVE_UP.format(n=max_restarts), "too many restarts", i) for i in failed])
        return [r["id"] for r in requeue], failed

    def requeue(self, run_id, message, max_restarts=MAX_RESTARTS):
        """Queue a running run again, to resume (its worker died). False, changing nothing, when
        it was already requeued `max_restarts` times: one failed resume is not tried forever."""
        with self._write() as db:
            return db.execute("UPDATE runs SET state = 'queued', restarts = restarts + 1, message = ? "
                              "WHERE id = ? AND state = 'running' AND restarts < ?",
                              (message, run_id, max_restarts)).rowcount == 1
