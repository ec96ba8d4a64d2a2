"""Self-describing checkpoints: {"model", "arch", "config", "data", "metrics", "created", "format"}.

A file alone rebuilds its model (as nanoGPT's sample.py does). Reads use weights_only=True,
so a checkpoint can never run code; writes go to a temp file that is renamed into place, so
a crash or kill mid-save leaves the previous file whole.
"""
import datetime
import hashlib
import os
import tempfile
from pathlib import Path

import torch

from kdapp.config import is_deep_supervision
from kdapp.models import build


FORMAT = 1
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "checkpoints"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or not one of ours; the message says which and why."""


def teacher_path(directory, arch, data, copy=1):
    """copy 2, 3, ...: another network of the same architecture, trained separately (with another seed), for a
    run that names the architecture twice among its teachers (an ensemble of two mlp_1200s)."""
    return Path(directory) / (f"{arch}-{data}.pt" if copy == 1 else f"{arch}-{data}-copy{copy}.pt")


def student_path(directory, arch, kind, data):
    """kind is "kd" (distilled) or "baseline" (hard labels only)."""
    return Path(directory) / f"{arch}-{kind}-{data}.pt"


def save(path, model, arch, config=None, data=None, metrics=None):
    payload = {
        "format": FORMAT,
        "arch": arch,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": dict(config or {}),
        "data": data,
        "metrics": dict(metrics or {}),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return atomic_save(payload, path)


def atomic_save(obj, path):
    """torch.save, atomically (see atomic_write)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write(path, write):
    """write(file) into a temp file in the same directory, fsync, then rename over `path`: a
    reader (or a crash, or a kill) sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; checkpoints and downloads are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path, device="cpu"):
    """Returns (model in eval mode, metadata without the weights). Raises CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # truncated zip, random bytes, a pickle with code in it, ...
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(e).__name__}); "
                              "it may be truncated or corrupt: delete it or re-train") from e
    if not isinstance(payload, dict) or "model" not in payload or "arch" not in payload:
        raise CheckpointError(f"{path} is not a kdapp checkpoint (no 'arch'/'model' entries)")
    try:
        model = build(payload["arch"])
        model.load_state_dict(payload["model"])
    except (ValueError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {path} does not fit architecture "
                              f"{payload['arch']!r}: {e}") from e
    meta = {k: v for k, v in payload.items() if k != "model"}
    return model.to(device).eval(), meta


def size_on_disk(model):
    """Bytes of the float32 state dict as torch.save writes it (what 'size on disk' means here)."""
    import io
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def find_teacher(arch, data, directories, copy=1):
    """The first existing teacher checkpoint for (arch, data, copy) in `directories`, or None."""
    for directory in directories:
        path = teacher_path(directory, arch, data, copy)
        if path.is_file():
            return path
    return None


# The models a new visitor's drawing meets: (arch, kind, data) of each role. kind None = a teacher.
# Full MNIST, pen-augmented teacher, consistent teaching. LeNet-5's two conv-pool stages are what
# read other writers: on UCI's digits redrawn on the canvas, seed_teacher → seed_student (the
# articles' pair, shipped before) reached only 94.1% / 89.3% with the same recipe
# (python -m kdapp robustness; results/README.md has the table).
SHIPPED_DRAWING = {"teacher": ("lenet5_wide", None, "mnist"),
                   "student": ("lenet5", "kd", "mnist"),
                   "baseline": ("lenet5", "baseline", "mnist")}


# The articles' pair, trained with the same recipe; kept to show what the architecture does.
ARTICLES_DRAWING = {"teacher": ("seed_teacher", None, "mnist"),
                    "student": ("seed_student", "kd", "mnist"),
                    "baseline": ("seed_student", "baseline", "mnist")}


def shipped_drawing_paths(directory=SHIPPED_DIR, roles=None):
    """{role: path} of the shipped drawing models (the baseline only when its file exists);
    `roles` picks another trio of the same form, such as ARTICLES_DRAWING."""
    paths = {}
    for role, (arch, kind, data) in (roles or SHIPPED_DRAWING).items():
        path = teacher_path(directory, arch, data) if kind is None else student_path(directory, arch, kind, data)
        if role != "baseline" or path.is_file():
            paths[role] = path
    return paths


def fingerprint(paths):
    """A short hash of the files' bytes: results computed from checkpoints are keyed by it, so a
    reshipped checkpoint is never read through an old result."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:12]


def drawing_paths(directory=None):
    """{role: path} of the drawing models: the shipped ones, or those in a folder that
    `python -m kdapp distill --out DIR` wrote (its student, baseline and teacher; with torchrun,
    rank 0 writes them). The folder must hold exactly one distilled student. A deep-supervision
    student has no teacher, so its folder gives no "teacher" path."""
    if directory is None or Path(directory).resolve() == SHIPPED_DIR:
        return shipped_drawing_paths()
    directory = Path(directory)
    students = sorted(directory.glob("*-kd-*.pt"))
    if len(students) != 1:
        raise CheckpointError(f"{directory} should hold one distilled student (ARCH-kd-DATA.pt, as "
                              f"`python -m kdapp distill --out {directory}` writes), not {len(students)}")
    meta = load(students[0])[1]
    config = meta.get("config", {})
    arch, data, teacher = meta.get("arch"), meta.get("data"), config.get("teacher")
    if is_deep_supervision(config):  # no teacher to draw with
        paths = {"student": students[0]}
    else:
        paths = {"teacher": teacher_path(directory, teacher, data), "student": students[0]}
    if "teacher" in paths and not paths["teacher"].is_file():
        raise CheckpointError(f"{directory} has the student {students[0].name} but not its teacher "
                              f"{paths['teacher'].name}")
    if student_path(directory, arch, "baseline", data).is_file():
        paths["baseline"] = student_path(directory, arch, "baseline", data)
    return paths

