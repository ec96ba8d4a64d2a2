"""Resume points: a run's training state after each epoch, so a run killed with its server (or
its worker) carries on from its last finished epoch instead of starting over.

A resume point holds everything the next epoch reads: both students (with any adapter or
deep-supervision heads), both optimisers with their schedules, the batch-order and augmentation
generators, torch's global RNG and any GPU's (dropout), and the accuracies so far. Restored into a distill()
that set itself up from the same config, the remaining epochs run exactly as they would have:
on the same machine and thread count the result is the same to the last bit
(tests/test_resume.py). Across machines or thread counts float sums may be added in another
order, as for any two runs there.

Written with checkpoints.atomic_write: a kill mid-write leaves the previous point whole.
"""
import torch

from kdapp import checkpoints

FORMAT = 2  # 2: extra_models, extra_optimizers (CTKD's T, a learning teacher). Bump when the contents change: an older point is then refused, not misread


class ResumeError(RuntimeError):
    """A resume point could not be written or read; the message says what to do."""


class ResumePoint:
    """Where one run keeps its resume point, for distill() and train_teacher(): `load` at the
    start, `save` after each epoch. `saves` counts the points written by this process."""

    def __init__(self, path, afresh="press Run again", again="press Run again"):
        # How a user starts afresh from an unreadable point, and tries again after a failed save
        # (which keeps the last point: never tell them to delete it then). The app's button, or a CLI's advice.
        self.path, self.afresh, self.again = path, afresh, again
        self.saves = 0
        self.loaded = None  # the state `load` found, for a caller that reads more of it (its seconds)

    def load(self, config):
        """The saved state for these settings (a RunConfig, or a dict: a teacher's training settings,
        or a run's with the hash of its teachers' weights), or None when there is none (a fresh run)."""
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            return None
        except Exception as e:  # truncated, random bytes, a pickle that is not weights
            raise ResumeError(f"the run's resume point could not be read ({_reason(e)}); "
                              f"{self.afresh} to start it afresh") from None
        settings = _settings(config)
        if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("config") != settings:
            saved = state.get("config") if isinstance(state, dict) and state.get("format") == FORMAT else None
            if isinstance(saved, dict) and _without_teachers(saved) == _without_teachers(settings):
                raise ResumeError("the run's resume point was made from an earlier version of its teacher (the "
                                  f"teacher has been retrained since); {self.afresh} to start it afresh")
            raise ResumeError("the run's resume point belongs to other settings or another kdapp version; "
                              f"{self.afresh} to start it afresh")
        self.loaded = state
        return state

    def save(self, state):
        """Write `state` (from capture) atomically; a full disk fails the run, saying so."""
        try:
            checkpoints.atomic_save(state, self.path)
        except OSError as e:
            after = state.get("after") or f"epoch {state['epoch']}"  # a continual run's point: after a task
            raise ResumeError(f"could not save the resume point after {after}: "
                              f"{_reason(e)}; free some disk space on the server, then {self.again}") from None
        self.saves += 1


def trained_seconds(path):
    """The training seconds a point has counted, over every process that resumed it (None if unreadable)."""
    try:
        return float(torch.load(path, map_location="cpu", weights_only=True)["train_seconds"])
    except Exception:
        return None


def _settings(config):
    """A RunConfig as its dict; a teacher's training settings are a dict already."""
    return config if isinstance(config, dict) else config.to_dict()


def _without_teachers(settings):
    """Settings less the hash of the teachers' weights (distill() adds it as teacher_weights)."""
    return {k: v for k, v in settings.items() if k != "teacher_weights"}


def _reason(error):
    """An OS or torch error in words, without the file's path or an exception's class name."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return "the file is damaged"


def capture(config, epoch, kd_model, kd_optimizer, base_model, base_optimizer, generators, accuracies,
            train_seconds, extra_models=None, extra_optimizers=None):
    """The state after `epoch` epochs (everything on the CPU, so a point moves between devices).
    extra_models / extra_optimizers, by name: what else learns in the run (CTKD's temperature, a
    teacher that learns beside the student and its optimiser)."""
    cpu = lambda tree: _map(tree, lambda t: t.detach().cpu())
    return {"format": FORMAT, "config": _settings(config), "epoch": epoch,
            "kd_model": cpu(kd_model.state_dict()), "kd_optimizer": cpu(_optimizer_state(kd_optimizer)),
            "base_model": cpu(base_model.state_dict()) if base_model is not None else None,
            "base_optimizer": cpu(_optimizer_state(base_optimizer)) if base_model is not None else None,
            "extra_models": {name: cpu(m.state_dict()) for name, m in (extra_models or {}).items()},
            "extra_optimizers": {name: cpu(_optimizer_state(o)) for name, o in (extra_optimizers or {}).items()},
            "generators": [g.get_state() for g in generators], "torch_rng": torch.get_rng_state(),
            "device_rng": device_rng(),
            "accuracies": list(accuracies), "train_seconds": train_seconds}


def restore(state, kd_model, kd_optimizer, base_model, base_optimizer, generators, extra_models=None,
            extra_optimizers=None):
    """Put a captured state back into a freshly set-up distill(). Returns (epochs done,
    (student_acc, baseline_acc[, teacher_acc]), train seconds so far)."""
    kd_model.load_state_dict(state["kd_model"])
    _load_optimizer(kd_optimizer, state["kd_optimizer"])
    if base_model is not None:
        base_model.load_state_dict(state["base_model"])
        _load_optimizer(base_optimizer, state["base_optimizer"])
    for name, model in (extra_models or {}).items():
        model.load_state_dict(state["extra_models"][name])
    for name, optimizer in (extra_optimizers or {}).items():
        _load_optimizer(optimizer, state["extra_optimizers"][name])
    for generator, saved in zip(generators, state["generators"]):
        generator.set_state(saved)
    torch.set_rng_state(state["torch_rng"])
    set_device_rng(state.get("device_rng") or {})  # absent from points written before it was kept
    return state["epoch"], tuple(state["accuracies"]), state["train_seconds"]


def device_rng():
    """The accelerators' own random states: dropout on CUDA or MPS draws from them, not the CPU's."""
    states = {}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        states["mps"] = torch.mps.get_rng_state()
    return states


def set_device_rng(states):
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
    if "mps" in states and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        torch.mps.set_rng_state(states["mps"])


def _load_optimizer(optimizer, saved):
    optimizer.optimizer.load_state_dict(saved["optimizer"])
    optimizer.scheduler.load_state_dict(saved["scheduler"])


def _optimizer_state(optimizer):
    return {"optimizer": optimizer.optimizer.state_dict(), "scheduler": optimizer.scheduler.state_dict()}


def _map(tree, fn):
    if isinstance(tree, torch.Tensor):
        return fn(tree)
    if isinstance(tree, dict):
        return {k: _map(v, fn) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_map(v, fn) for v in tree)
    return tree
