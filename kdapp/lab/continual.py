"""The lab's side of continual learning: queue a run, list them, and read a drawing with each
strategy's model after the last task. Continual runs go through the same queue and store as
distillation runs (fair FIFO, per-visitor caps, one row each, kept across restarts), so the Runs
tab lists them and `?run=<id>` links to them; config["kind"] tells them apart, and the worker
runs them with kdapp.training.continual.run_job.
"""
from collections import OrderedDict

import torch

from kdapp import checkpoints
from kdapp.evaluation import inference
from kdapp.lab.jobs import FINISHED, QueueFull
from kdapp.training.continual import KIND, ContinualConfig

_MODELS = OrderedDict()  # run id -> {strategy: model}; a few runs kept, least recently used first
MODEL_CACHE_SIZE = 4


def start(lab, settings, owner):
    """Queue a continual run. Returns (record or None, a sentence for the visitor)."""
    try:
        config = ContinualConfig.from_dict(settings)
        record = lab.queue.submit(config, owner)[0]
    except (ValueError, TypeError, QueueFull) as e:
        return None, f"Not started: {e}"
    return record, lab._queued_message(record["id"], owner)


def is_continual(record):
    """Whether a run record (or None) is a continual run."""
    return bool(record) and (record.get("config") or {}).get("kind") == KIND


def runs(lab, limit=50, states=None):
    """Continual runs, newest first, without curves."""
    return lab.store.list(limit=limit, kind=KIND, states=states, curves=False)


def models(lab, run_id):
    """{strategy: model after the last task} of a finished run; LookupError saying why not."""
    if run_id in _MODELS:
        _MODELS.move_to_end(run_id)
        return _MODELS[run_id]
    record = lab.run(run_id)
    if record is None or record["config"].get("kind") != KIND:
        raise LookupError(f"there is no continual run {run_id}")
    if record["state"] in ("queued", "running"):
        raise LookupError(f"run {run_id} is {record['state']}: its models read the drawing once it has finished")
    if record["state"] != FINISHED or not record["has_checkpoints"]:
        raise LookupError(f"run {run_id} has no models to draw with ({record['state']}"
                          f"{', its checkpoints were pruned' if record['state'] == FINISHED else ''})")
    try:
        loaded = {name: checkpoints.load(path)[0] for name, path in record["extra"]["paths"].items()}
    except (KeyError, checkpoints.CheckpointError) as e:
        raise LookupError(f"run {run_id}'s models could not be loaded: {e}") from None
    _MODELS[run_id] = loaded
    while len(_MODELS) > MODEL_CACHE_SIZE:
        _MODELS.popitem(last=False)
    return loaded


def predict(lab, run_id, canvas):
    """{"image": the 28x28 digit, "probs": {strategy: [p_0..p_9]}, "notes"} for a drawing, read by
    every strategy's final model with all ten outputs (the class-incremental question: which digit,
    with no task label). Raises LookupError or inference.CanvasError with a sentence."""
    return _read(lab, run_id, inference.preprocess(canvas))


def read(lab, run_id, pixels):
    """predict() for a digit the visitor's browser already prepared (the Continual tab's canvas:
    drawing.js's port of inference.preprocess), 28*28 integers 0..255."""
    return _read(lab, run_id, inference.prepared_digit(pixels))


def _read(lab, run_id, prepared):
    loaded = models(lab, run_id)
    with torch.inference_mode():
        probs = {name: torch.softmax(model.eval()(prepared.tensor), dim=1)[0].tolist() for name, model in loaded.items()}
    notes = list(prepared.notes)
    if lab.run(run_id)["config"]["scenario"] == "task":
        notes.append("these models were trained task-incrementally: they expect to be told the task, and read "
                     "with all ten outputs they may mix up digits of different tasks")
    return {"image": prepared.image, "probs": probs, "notes": notes}
