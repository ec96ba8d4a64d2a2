"""The lab's read-only tools for agents: the app serves them over MCP (`launch(mcp_server=True)`).

Gradio turns each function's docstring into the tool's description, its "Args:" into the
parameters' descriptions (one line each: Gradio drops continuation lines) and its type hints
into their schema, so the docstrings are written for an agent. Each tool answers JSON text
(Gradio's MCP server would pass a returned dict on as its Python repr).

The tools only read: they start no run and change no state. Starting a run is a visitor's
choice, with its caps and queue, not an agent's. `register` adds them to a gr.Blocks; every
other endpoint of the app must stay out of the MCP schema (api_visibility "undocumented" or
"private"), so that agents see exactly these three.
"""
import datetime
import json

import gradio as gr
from PIL import Image

from kdapp.config import DEFAULTS

ROLES = ("teacher", "student", "baseline")
LISTED_SETTINGS = ("teacher", "student", "temperature", "alpha", "epochs", "train_fraction")
CONTINUAL_SETTINGS = ("scenario", "tasks", "strategies", "memory", "epochs", "temperature")
KINDS = {"distill": "distill", "continual": "continual", "all": None}  # list_runs' kind -> RunStore.list's
MAX_RUNS = 200  # one listing; the store keeps more, newest first


def _time(seconds):
    return None if seconds is None else datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat(
        timespec="seconds")


def _gain(metrics):
    m = metrics or {}
    return None if m.get("student_acc") is None or m.get("baseline_acc") is None \
        else m["student_acc"] - m["baseline_acc"]


def _listed(record):
    """One run of list_runs: its kind's settings and outcome."""
    c, m = record["config"], record["metrics"] or {}
    out = {"id": record["id"], "kind": c.get("kind", "distill"), "state": record["state"],
           "created": _time(record["created"]), "data": record["data"] or c.get("data")}
    if out["kind"] == "continual":
        results = {name: {k: r[k] for k in ("average_acc", "forgetting")} for name, r in m.get("strategies", {}).items()}
        return {**out, **{k: c.get(k) for k in CONTINUAL_SETTINGS}, "results": results or None}
    return {**out, **{k: c.get(k) for k in LISTED_SETTINGS}, "student_acc": m.get("student_acc"),
            "baseline_acc": m.get("baseline_acc"), "kd_gain": _gain(m)}


def tools(get_lab, shipped):
    """The three tool functions, each reading the lab that `get_lab()` returns when it is called.
    `shipped` names the lab's shipped models (kdapp.lab.facade.SHIPPED: ui reads only the
    foundation, so the app passes it in)."""

    def read_digit(image: Image.Image, temperature: float = DEFAULTS.temperature, models: str = shipped) -> str:
        """Read a handwritten digit (0-9) with a knowledge-distillation trio: the teacher network, the KD student
        (a small network trained on the teacher's softened predictions) and the baseline (the same small network
        trained on the labels alone). The image is scaled and centred as MNIST was made; any background works
        (dark ink on white paper, white ink on black, or ink on a transparent background). At T=1 a model is
        nearly certain; at a higher T its runner-up classes (the teacher's "dark knowledge") show.

        Args:
            image: the digit as a PNG or JPEG: a URL, or a data: URL with base64 content.
            temperature: the softmax temperature T of "pT", 0.5 to 20 (else 4, with a note); higher T shows runner-ups.
            models: "shipped" for the lab's shipped models, or a finished run's id from list_runs to use its models.

        Returns:
            JSON: {"models": which models answered, "temperature": T, "notes": sentences about an unusual image,
            and for each of "teacher", "student" (the KD student) and "baseline" that is present: {"digit": its
            answer, "p1": the 10 softmax probabilities at T=1 for digits 0-9, "pT": the same at T, "kl_T":
            KL(teacher || model) at T in nats, or null}}. A run that taught itself has no "teacher", and a run
            without a baseline has no "baseline".
        """
        lab = get_lab()
        models = models or shipped
        try:
            lab.models(models)  # a run that cannot read is an error here, not a silent switch to the shipped models
            result = lab.predict(image, temperature, models)
        except (ValueError, LookupError) as e:  # an unreadable or blank image (CanvasError), a run without models
            raise gr.Error(f"{e}") from None
        out = {"models": result["models"], "temperature": result["temperature"], "notes": result["notes"]}
        for role in ROLES:
            if role in result:
                p1 = result[role]["p1"]
                out[role] = {"digit": max(range(10), key=p1.__getitem__), "p1": p1, "pT": result[role]["pT"],
                             "kl_T": result[role]["kl_T"]}
        return json.dumps(out)

    def list_runs(teacher: str = "", student: str = "", limit: int = 20, kind: str = "distill") -> str:
        """List the lab's runs, newest first. A knowledge-distillation run trains a KD student from a teacher and,
        beside it, a baseline student on labels alone, so kd_gain = student_acc - baseline_acc is the gain from
        distillation on the test set. A continual run learns split MNIST task by task with several strategies
        (fine-tuning, LwF, a memory bank, joint training) and measures how much each forgets.

        Args:
            teacher: only distillation runs with this teacher architecture (e.g. "seed_teacher"), no continual run; empty for all.
            student: only distillation runs with this student architecture (e.g. "seed_student"), no continual run; empty for all.
            limit: at most this many runs, from 1 to 200 (default 20).
            kind: "distill" (the default), "continual", or "all" for both kinds.

        Returns:
            JSON: a list of {"id", "kind" ("distill" or "continual"), "state" (queued, running, finished, failed,
            cancelled or interrupted), "created" (ISO time, UTC), "data" ("sample" or "mnist"), and for a distillation
            run "teacher", "student", "temperature", "alpha", "epochs", "train_fraction", "student_acc",
            "baseline_acc", "kd_gain" (accuracies in [0, 1]; null until finished); for a continual run "scenario"
            ("class" or "task"), "tasks", "strategies", "memory", "epochs", "temperature" and "results" ({strategy:
            {"average_acc", "forgetting"}} after the last task, in [0, 1]; null until finished)}. Pass an id to
            get_run for its settings and accuracies, or a distillation run's id to read_digit as models.
        """
        if kind not in KINDS:
            raise gr.Error(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        limit = max(1, min(int(limit or 20), MAX_RUNS))
        runs = get_lab().runs(teacher=teacher or None, student=student or None, limit=limit, kind=KINDS[kind])
        return json.dumps([_listed(r) for r in runs])

    def get_run(run_id: str) -> str:
        """Get one run: its settings, outcome, test accuracy per epoch and, once a distillation run has finished,
        what the students learned from the teacher.

        Args:
            run_id: the run's id, from list_runs.

        Returns:
            JSON: {"id", "state", "message" (the run's last status line, or why it failed), "created", "started",
            "ended" (ISO times, UTC), "settings" (every setting of the run: teacher, student, temperature, alpha,
            epochs, lr, batch_size, train_fraction, loss, ...), "metrics" (teacher_acc, student_acc, baseline_acc,
            train and test sample counts; with several teachers or a shift ensemble also targets_readings,
            targets_temperature, targets_acc (the soft targets' ensemble's test accuracy at that T), and
            student_targets_agreement and baseline_targets_agreement; null until finished), "kd_gain", "accuracy_per_epoch" ({"epoch",
            "teacher", "student", "baseline"}: test accuracy after each epoch), "fidelity" (null, or agreement:
            how often each student's answer is the teacher's, and kl: mean KL(teacher || student) at T=1 and at
            the run's T; teacher_readings > 1 when the teacher there is the soft targets' ensemble, its
            readings' probabilities averaged), "has_models" (whether read_digit can use its models)}. For a continual run, "settings"
            has "kind": "continual", "metrics" has "strategies" ({strategy: {"acc_matrix": row i = the accuracy on
            every task after learning task i, "average_acc", "forgetting"}}) and "accuracy_per_epoch" has
            "continual" (the matrix rows as they arrived); its models read digits in the app's Continual tab.
        """
        record = get_lab().run(run_id)
        if record is None:
            raise gr.Error(f"there is no run {run_id!r}: list_runs gives the ids")
        fidelity = record.get("fidelity")
        if fidelity:  # the numbers, not the example digits' images
            fidelity = {k: fidelity.get(k, 1) if k == "teacher_readings" else fidelity[k]
                        for k in ("test_samples", "temperature", "teacher_readings", "accuracy", "agreement", "kl")}
        return json.dumps({
            "id": record["id"], "state": record["state"], "message": record.get("message") or record.get("error"),
            "created": _time(record["created"]), "started": _time(record["started"]), "ended": _time(record["ended"]),
            "settings": record["config"], "metrics": record["metrics"], "kd_gain": _gain(record["metrics"]),
            "accuracy_per_epoch": record["accuracy"], "fidelity": fidelity or None,
            "has_models": bool(record["has_checkpoints"])})

    return read_digit, list_runs, get_run


def register(get_lab, shipped):
    """Inside a gr.Blocks: the three tools as public API endpoints (/read_digit, /list_runs, /get_run),
    which launch(mcp_server=True) lists as MCP tools. read_digit takes its image through a hidden
    gr.Image, so an agent may pass a URL or a data: URL; the other two take plain values (gr.api)."""
    read_digit, list_runs, get_run = tools(get_lab, shipped)
    with gr.Column(visible=False):
        image = gr.Image(type="pil", image_mode=None, label="image")  # None: keep a transparent background
        temperature = gr.Number(DEFAULTS.temperature, label="temperature")
        models = gr.Textbox(shipped, label="models")
        answer = gr.Textbox(label="answer")
    gr.on([], read_digit, [image, temperature, models], answer, api_name="read_digit", queue=False,
          show_progress="hidden")
    gr.api(list_runs, api_name="list_runs", queue=False)
    gr.api(get_run, api_name="get_run", queue=False)
