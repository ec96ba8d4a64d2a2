"""The runs table: its columns, how a row becomes a record, and the migrations that build it.

A database's `PRAGMA user_version` counts the migrations it has had; kdapp.lab.store applies the
missing ones, in order, when it opens the database, and refuses one newer than this code.
"""
import json

# Owners are secrets (a browser session), so they are never among the columns a record shows.
RECORD_COLUMNS = ("id", "created", "started", "ended", "state", "config", "data", "device", "metrics",
                  "accuracy", "curves", "warnings", "error", "message", "has_checkpoints", "extra", "fidelity",
                  "resumed_from_epoch")
JSON_COLUMNS = ("config", "metrics", "accuracy", "curves", "warnings", "extra", "fidelity")
WRITABLE = frozenset(RECORD_COLUMNS) - {"id"}
HEAVY = ("curves", "accuracy", "fidelity")  # what a listing can leave out


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


def _add_resuming(db):
    # restarts: how often a restart (or a worker's death) queued the run again; resumed_from_epoch:
    # the epoch its last resume point held, set when a worker resumed from it.
    db.execute("ALTER TABLE runs ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE runs ADD COLUMN resumed_from_epoch INTEGER")


MIGRATIONS = [_create_runs, _add_fidelity, _add_resuming]  # MIGRATIONS[v] takes a database from user_version v to v + 1
SCHEMA_VERSION = len(MIGRATIONS)  # a new version appends one function above


def record(row):
    """A row of the runs table as the lab hands it out: JSON columns parsed, no owner."""
    out = {name: row[name] for name in RECORD_COLUMNS}
    for name in JSON_COLUMNS:
        out[name] = None if out[name] is None else json.loads(out[name])
    out["has_checkpoints"] = bool(out["has_checkpoints"])
    return out
