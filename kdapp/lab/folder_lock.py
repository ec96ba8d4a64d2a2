"""One server per runs folder. The queue outlives its server in the folder's store, so two servers
on one folder would each dispatch the same queued runs: the first to start holds an OS lock on it."""
import fcntl
import os
from pathlib import Path

LOCK_NAME = "server.lock"  # in the runs folder: held (flock) by the one server that dispatches its runs


class RunsFolderBusy(RuntimeError):
    """Another server holds the runs folder's lock; the message says what to do."""


def hold_runs_folder(root):
    """Take the runs folder's lock for this process, or raise RunsFolderBusy. Two servers on one
    folder would each dispatch the same queued runs; the kernel drops the lock when the process
    dies, however it dies, so a killed server never blocks the next one. Returns the open file."""
    root = Path(root)
    lock = open(root / LOCK_NAME, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise RunsFolderBusy(f"another kdapp server ({holder}) is already using the runs folder {root}; "
                             "stop it first, or start this one with another folder (KDAPP_RUNS_DIR)") from None
    lock.truncate(0)
    lock.write(f"pid {os.getpid()}\n")
    lock.flush()
    return lock
