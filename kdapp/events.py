"""The events a run emits, one constructor each: the one schema for messages.

Events cross a process boundary as JSON lines (worker -> server), so each is a plain dict with
a "type" and exactly the keys its constructor documents. The training loop emits them, the
worker forwards them, `live_run.LiveRun.apply` folds them into a run record, and the CLI turns them
into progress bars. Accuracies are in [0, 1]; `eta_s` is seconds left in the phase, or None.
"""


def phase(name, message):
    """A new stage of the run: "loading data", "teacher", "training teacher", "teacher logits",
    "distilling", "fidelity", "saving"."""
    return {"type": "phase", "phase": name, "message": message}


def data(source, description, device):
    """Which data (`mnist` or `sample`) and device the run uses, and a sentence describing them."""
    return {"type": "data", "data": source, "description": description, "device": device}


def warning(message):
    """Something the visitor should know that did not stop the run (a corrupt checkpoint replaced)."""
    return {"type": "warning", "message": message}


def teacher_step(epoch, epochs, step, steps, teacher_loss, eta_s):
    """Progress of a teacher trained from scratch: mean CE since the last teacher_step."""
    return {"type": "teacher_step", "epoch": epoch, "epochs": epochs, "step": step, "steps": steps,
            "teacher_loss": teacher_loss, "eta_s": eta_s}


def teacher_epoch(epoch, epochs, teacher_acc):
    return {"type": "teacher_epoch", "epoch": epoch, "epochs": epochs, "teacher_acc": teacher_acc}


def step(epoch, epochs, step, steps, loss, soft, hard, feature, baseline, eta_s, parts=None, temperature=None):
    """Progress of distillation: the KD student's mean total loss and its soft (the logit loss)
    and hard (CE) parts since the last step event, the feature loss (None without one), the
    baseline's CE (None without a baseline), the soft loss's own terms and the feature regularisers
    by name (DKD's tckd and nckd, DIST's inter and intra, collapse, adversarial; empty for plain kd)
    and the temperature T at this step (it changes under a schedule; None if not given)."""
    return {"type": "step", "epoch": epoch, "epochs": epochs, "step": step, "steps": steps, "loss": loss,
            "soft": soft, "hard": hard, "feature": feature, "baseline": baseline, "eta_s": eta_s,
            "parts": dict(parts or {}), "temperature": temperature}


def epoch(epoch, epochs, teacher_acc, student_acc, baseline_acc):
    """Test accuracies after `epoch` epochs (epoch 0: the teacher alone, before training)."""
    return {"type": "epoch", "epoch": epoch, "epochs": epochs, "teacher_acc": teacher_acc,
            "student_acc": student_acc, "baseline_acc": baseline_acc}


def resumed(epoch, step, continual_rows=None):
    """The run resumed from the resume point saved after `epoch` epochs (`step` steps of
    distillation): progress and curves beyond it are to be redone, so readers drop them. A
    continual run resumes after the tasks of `continual_rows` (continual_task's rows, the ones its
    point holds; epoch: how many): readers replace the rows they hold with these."""
    return {"type": "resumed", "epoch": epoch, "step": step,
            **({"continual_rows": continual_rows} if continual_rows is not None else {})}


def end(state, message, metrics=None, paths=None, warnings=(), error=None, fidelity=None):
    """The worker's last line. state: finished | failed | cancelled. On success, `metrics` holds
    teacher_acc(s), student_acc, baseline_acc, train/test_samples, data, device and seconds,
    `paths` the checkpoints written (teacher, student, baseline) and `fidelity` kdapp.evaluation.fidelity's dict."""
    return {"type": "end", "state": state, "message": message, "metrics": metrics, "paths": paths or {},
            "warnings": list(warnings), "error": error, "fidelity": fidelity}


# ---- continual learning (kdapp.training.continual): one strategy after another, task by task ----

def continual_step(strategy, task, tasks, step, steps, loss):
    """Progress within a task: the strategy's mean total loss since the last continual_step."""
    return {"type": "continual_step", "strategy": strategy, "task": task, "tasks": tasks, "step": step,
            "steps": steps, "loss": loss}


def continual_task(strategy, task, tasks, accuracies):
    """After training on task `task` (0-based): the accuracy on every task's test digits, one per
    task (a row of the accuracy matrix, tasks not yet seen included)."""
    return {"type": "continual_task", "strategy": strategy, "task": task, "tasks": tasks,
            "accuracies": list(accuracies)}
