"""kdapp.lab.worker on a disk that fills up at the first resume point: the write starts, then
fails with ENOSPC, as a full filesystem would answer (tests/test_durable.py)."""
import errno
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kdapp import checkpoints  # noqa: E402
from kdapp.lab import worker  # noqa: E402

real = checkpoints.atomic_write


def fills_up(path, write):
    if Path(path).name != "resume.pt":
        return real(path, write)

    def write_then_fail(f):
        f.write(b"x" * 4096)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real(path, write_then_fail)


checkpoints.atomic_write = fills_up
worker.main()
