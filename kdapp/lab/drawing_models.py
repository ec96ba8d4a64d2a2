"""The drawing's models as ONNX files, for the visitor's browser to run.

The page runs the teacher, KD student and baseline itself (ONNX Runtime Web), so each trio is
exported once through kdapp.evaluation.export: a run's when it finishes (the queue calls
`export_run`), the shipped ones on the first page that asks, into a folder named by the
checkpoints' fingerprint so a reshipped checkpoint is never served from an old export. A run
whose export is missing (finished before this existed) is exported on first request.
"""
import logging
import threading

from kdapp import checkpoints
from kdapp.config import is_deep_supervision
from kdapp.evaluation import export

log = logging.getLogger(__name__)

ROLES = ("teacher", "student", "baseline")
ONNX_DIR = "onnx"                    # inside a run's folder
SHIPPED_ONNX_DIR = "drawing-onnx"    # inside the store's root, one folder per fingerprint
_export_lock = threading.Lock()      # two first visitors must not export the same files at once


def run_checkpoints(record):
    """{role: checkpoint path} of a finished run, as the lab loads them for the drawing: no
    teacher for deep supervision, no baseline when the run has none."""
    paths = (record.get("extra") or {}).get("paths") or {}
    roles = {role: paths[role] for role in ROLES if paths.get(role)}
    if is_deep_supervision(record["config"]):
        roles.pop("teacher", None)
    return roles


def export_all(sources, out_dir):
    """{role: ONNX path} for {role: checkpoint path}, exporting only the files not there yet.
    Raises checkpoints.CheckpointError for a checkpoint that cannot be rebuilt."""
    out = {role: out_dir / f"{role}.onnx" for role in sources}
    with _export_lock:
        for role, source in sources.items():
            if not out[role].is_file():
                out_dir.mkdir(parents=True, exist_ok=True)
                export.export_onnx(source, out[role])
    return out


def export_run(store, run_id):
    """Export a just-finished run's models; a failure is logged, never fails the run (the page
    tries again on first request and then says why)."""
    try:
        record = store.get(run_id)
        return export_all(run_checkpoints(record), store.run_dir(run_id) / ONNX_DIR)
    except Exception:
        log.exception("run %s: could not export its models to ONNX for the drawing", run_id)
        return None


def shipped(store_root, drawing_dir=None):
    """{role: ONNX path} of the shipped drawing models (or those of KDAPP_DRAWING_DIR)."""
    sources = checkpoints.drawing_paths(drawing_dir)
    folder = store_root / SHIPPED_ONNX_DIR / checkpoints.fingerprint(sources[r] for r in ROLES if r in sources)
    return export_all(sources, folder)
