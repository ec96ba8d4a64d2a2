"""A running run as the page sees it: its store record, growing with each event a worker sends
(kdapp.events), and its progress. The queue (kdapp.lab.jobs) folds a worker's events into one; the
CLI's notebook (kdapp.lab.notebook) does the same for a run in its own process."""
import time

QUEUED, RUNNING, FINISHED, FAILED, CANCELLED = "queued", "running", "finished", "failed", "cancelled"


class LiveRun:
    """A running run: its store record, growing with each event, plus its progress."""

    def __init__(self, record, resuming=False):
        # A run that resumes keeps the curves stored before; the worker's `resumed` event trims them.
        self.record = dict(record, state=RUNNING, started=time.time(), message="starting",
                           curves={k: [] for k in ("step", "loss", "soft", "hard", "feature", "baseline",
                                                   "teacher_loss")},
                           accuracy={k: [] for k in ("epoch", "teacher", "student", "baseline")},
                           warnings=list(record["warnings"] or []) if resuming else [])
        if resuming:  # a continual run's accuracy rows too (accuracy["continual"])
            self.record["curves"].update({k: list(v) for k, v in (record["curves"] or {}).items()})
            self.record["accuracy"].update({k: list(v) for k, v in (record["accuracy"] or {}).items()})
        self.stop_requested = False
        self.progress = {"phase": "starting", "epoch": 0, "epochs": record["config"]["epochs"], "step": 0,
                         "steps": 0, "eta_s": None}

    def apply(self, event):
        r, p, kind = self.record, self.progress, event["type"]
        if kind == "phase":
            p["phase"], r["message"], p["eta_s"] = event["phase"], event["message"], None
        elif kind == "data":
            r["data"], r["device"], r["message"] = event["data"], event["device"], event["description"]
        elif kind == "warning":
            r["warnings"].append(event["message"])
        elif kind in ("step", "teacher_step"):
            p.update((k, event[k]) for k in ("epoch", "epochs", "step", "steps", "eta_s"))
            if kind == "step":
                for k in ("step", "loss", "soft", "hard", "feature", "baseline"):
                    r["curves"][k].append(event[k])
                for name, value in event.get("parts", {}).items():  # "part:tckd", ... (DKD, DIST)
                    r["curves"].setdefault(f"part:{name}", []).append(value)
                r["curves"].setdefault("temperature", []).append(event.get("temperature"))
            else:
                r["curves"]["teacher_loss"].append(event["teacher_loss"])
        elif kind == "continual_step":
            p.update(phase="continual", epoch=event["task"], epochs=event["tasks"], step=event["step"],
                     steps=event["steps"])
            r["message"] = f"{event['strategy']}: task {event['task'] + 1} of {event['tasks']}"
        elif kind == "continual_task":  # one row of a strategy's accuracy matrix
            r["accuracy"].setdefault("continual", []).append(
                {k: event[k] for k in ("strategy", "task", "accuracies")})
        elif kind == "teacher_epoch":
            r["message"] = f"teacher epoch {event['epoch']}/{event['epochs']}: {event['teacher_acc']:.2%}"
        elif kind == "resumed":  # drop what was drawn after the resume point: it is trained again
            keep = [i for i, step in enumerate(r["curves"]["step"]) if step <= event["step"]]
            steps = len(r["curves"]["step"])
            r["curves"] = {k: [v[i] for i in keep] if len(v) == steps else v for k, v in r["curves"].items()}
            keep = [i for i, e in enumerate(r["accuracy"]["epoch"]) if e <= event["epoch"]]
            r["accuracy"] = {k: v if k == "continual" else [v[i] for i in keep] for k, v in r["accuracy"].items()}
            if "continual_rows" in event:  # a continual run: exactly the rows its point holds (epoch: their count)
                r["accuracy"]["continual"] = event["continual_rows"]
                r["resumed_from_epoch"] = event["epoch"]
            else:
                r["resumed_from_epoch"] = p["epoch"] = event["epoch"]
        elif kind == "epoch":
            if event["epoch"] == 0 and r["accuracy"]["epoch"]:
                return  # a resumed run announces its teacher again; its curves already start there
            p["epoch"], p["epochs"] = event["epoch"], event["epochs"]
            if event["epoch"] > 0:
                for k in ("teacher", "student", "baseline"):
                    r["accuracy"][k].append(event[f"{k}_acc"])
                r["accuracy"]["epoch"].append(event["epoch"])

    def snapshot(self):
        r = self.record
        return dict(r, config=dict(r["config"]), curves={k: list(v) for k, v in r["curves"].items()},
                    accuracy={k: list(v) for k, v in r["accuracy"].items()}, warnings=list(r["warnings"]),
                    progress=dict(self.progress), elapsed_s=time.time() - r["started"])
