"""The lab notebook: every run's config, curves and outcome in one SQLite file that outlives
the server, plus a folder of checkpoints per run.

One server owns a root: opening a store marks the runs an earlier server left queued or running
as interrupted. Many threads read while one writes: each thread gets its own connection, and WAL
lets readers see the last committed state while a write transaction is open.
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

log = logging.getLogger(__name__)

MAX_CURVE_POINTS = 500   # a plot is a few hundred pixels wide; more points only cost JSON and redraws
BUSY_TIMEOUT_MS = 10_000  # a writer waits this long for another writer, then the error reaches the caller
STATES = ("queued", "running", "finished", "failed", "cancelled", "interrupted")
ACTIVE = ("queued", "running")
DB_NAME = "kdapp.sqlite3"
INTERRUPTED = {"queued": "interrupted: the server restarted before this run started",
               "running": "interrupted: the server restarted before this run finished"}

# Owners are secrets (a browser session), so they are never among the columns a record shows.
RECORD_COLUMNS = ("id", "created", "started", "ended", "state", "config", "data", "device", "metrics",
                  "accuracy", "curves", "warnings", "error", "message", "has_checkpoints", "extra", "fidelity")
JSON_COLUMNS = ("config", "metrics", "accuracy", "curves", "warnings", "extra", "fidelity")
WRITABLE = frozenset(RECORD_COLUMNS) - {"id"}
HEAVY = ("curves", "accuracy", "fidelity")  # what a listing can leave out
RUN_ID = re.compile(r"[0-9a-f]+")  # ids name folders that pruning deletes: never let "../" through


def _create_runs(db):
    # seq is the rowid, so "newest first" and the FIFO queue are exact within one second;
    # AUTOINCREMENT never hands out a seq twice.
    db.execute("""CREATE TABLE runs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        created REAL NOT NULL, started REAL, ended REAL,
        state TEXT NOT NULL, owner TEXT,
        config TEXT NOT NULL, data TEXT, device TEXT, metrics TEXT,
        accuracy TEXT NOT NULL DEFAULT '{"epoch": [], "teacher": [], "student": [], "baseline": []}',
        curves TEXT NOT NULL DEFAULT '{}',
        warnings TEXT NOT NULL DEFAULT '[]',
        error TEXT, message TEXT,
        has_checkpoints INTEGER NOT NULL DEFAULT 0,
        extra TEXT NOT NULL DEFAULT '{}')""")


def _add_fidelity(db):
    db.execute("ALTER TABLE runs ADD COLUMN fidelity TEXT")  # kdapp.evaluation.fidelity's dict, once finished


MIGRATIONS = [_create_runs, _add_fidelity]  # MIGRATIONS[v] takes a database from user_version v to v + 1
SCHEMA_VERSION = len(MIGRATIONS)  # a new version appends one function above


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


def _record(row):
    record = {name: row[name] for name in RECORD_COLUMNS}
    for name in JSON_COLUMNS:
        record[name] = None if record[name] is None else json.loads(record[name])
    record["has_checkpoints"] = bool(record["has_checkpoints"])
    return record


class RunStore:
    def __init__(self, root, keep_checkpoints=100, recover=True):
        """recover: mark the runs a dead server left queued or running as interrupted. Only the
        server that runs the queue may; another writer (the CLI) opens with recover=False."""
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / DB_NAME
        self.keep_checkpoints = keep_checkpoints
        self._local = threading.local()
        self._open()
        if recover:
            self.interrupt_unfinished()

    # ---- connections ----

    def _connect(self):
        # isolation_level=None: no hidden transactions; writes say BEGIN IMMEDIATE themselves.
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
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}: pick one of {', '.join(STATES)}")
        now = time.time()
        started = now if state == "running" else None
        while True:
            run_id = secrets.token_hex(4)
            try:
                with self._write() as db:
                    db.execute("INSERT INTO runs (id, created, started, state, owner, config, extra) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?)",
                               (run_id, now, started, state, owner, json.dumps(config), json.dumps(extra or {})))
            except sqlite3.IntegrityError:
                continue  # the 8 hex characters were taken: draw again
            return self.get(run_id)

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
        return None if row is None else _record(row)

    def owner_of(self, run_id):
        row = self._db().execute("SELECT owner FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else row["owner"]

    def list(self, limit=200, teacher=None, student=None, states=None, owner=None, curves=True):
        """Runs newest first, optionally only those with this teacher, student, state or owner
        (the owner filters; it is never returned). curves=False leaves out `curves` and `accuracy`
        (None): a listing then decodes a few hundred bytes a run instead of ~50 KB."""
        where, args = [], []
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        if teacher is not None:
            where.append("json_extract(config, '$.teacher') = ?")
            args.append(teacher)
        if student is not None:
            where.append("json_extract(config, '$.student') = ?")
            args.append(student)
        if states is not None:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            args.extend(states)
        columns = RECORD_COLUMNS if curves else [f"NULL AS {c}" if c in HEAVY else c for c in RECORD_COLUMNS]
        rows = self._db().execute(f"SELECT {', '.join(columns)} FROM runs WHERE {' AND '.join(where) or 1} "
                                  "ORDER BY seq DESC LIMIT ?", (*args, limit))
        return [_record(row) for row in rows]

    def active(self):
        """Internal, for the queue only: queued and running runs, oldest first, each WITH its
        "owner". Never hand these records to a user."""
        rows = self._db().execute(f"SELECT {', '.join(RECORD_COLUMNS)}, owner FROM runs "
                                  "WHERE state IN (?, ?) ORDER BY seq", ACTIVE)
        return [{**_record(row), "owner": row["owner"]} for row in rows]

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

    def interrupt_unfinished(self):
        """Mark the runs a dead server left queued or running as interrupted; returns how many."""
        with self._write() as db:
            return db.execute("UPDATE runs SET state = 'interrupted', ended = ?, "
                              "message = CASE state WHEN 'queued' THEN ? ELSE ? END "
                              "WHERE state IN (?, ?)",
                              (time.time(), INTERRUPTED["queued"], INTERRUPTED["running"], *ACTIVE)).rowcount
