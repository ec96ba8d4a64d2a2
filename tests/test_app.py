"""The app: handlers called directly, and the /predict API driven by gradio_client."""
import time

import numpy as np
import pytest
from PIL import Image

import app
from kdapp import bench


class FakeRequest:
    def __init__(self, session_hash):
        self.session_hash = session_hash


def digit_canvas(index=0, seed=0):
    canvases, labels = bench.redrawn_canvases(index + 1, seed=seed)
    return canvases[index], int(labels[index])


def test_predict_handler_on_a_drawn_digit():
    canvas, label = digit_canvas()
    teacher, student, fig, image28, note = app.predict({"background": None, "layers": [], "composite": canvas}, 4.0)
    assert max(teacher, key=teacher.get) == str(label)
    assert set(student) == {str(d) for d in range(10)} and abs(sum(student.values()) - 1) < 1e-5
    assert image28.shape == (28, 28) and "KL(teacher‖student)" in note
    assert len(fig.data) == 4  # teacher and student, at T=1 and at T


def test_predict_handler_on_blank_and_broken_input():
    blank = np.zeros((280, 280, 4), np.uint8)
    teacher, student, _, image28, note = app.predict(blank, 4.0)
    assert teacher is None and student is None and image28 is None and "Draw a digit" in note
    for bad in (None, {"composite": None, "background": None, "layers": []}, np.zeros((5000, 5, 4), np.uint8)):
        teacher, _, _, _, note = app.predict(bad)
        assert teacher is None and note


def test_predict_handler_survives_odd_temperatures():
    canvas, _ = digit_canvas()
    for T in (None, "abc", -3, float("nan"), 1e9):
        teacher, _, _, _, _ = app.predict(canvas, T)
        assert teacher is not None


def test_refresh_skips_when_nothing_changed():
    key = app.lab.runs.version_key()
    outputs = app.refresh(key, FakeRequest("a"))
    assert outputs[-1] == key
    assert all(getattr(o, "__class__", None).__name__ == "dict" and o.get("__type__") == "update"
               or o is not None for o in outputs[:-1])
    fresh = app.refresh(("never", -1), FakeRequest("a"))
    assert "Status" in fresh[0] or "Running" in fresh[0] or "Finished" in fresh[0]


def test_start_refuses_bad_settings_with_a_message():
    values = dict(app.lab_lib.DEFAULT_RUN)
    args = [values["teacher"], values["student"], 4.0, 0.7, 5, 0.005, 128, 1.0, "none", 1.0, "", False, 0.3, 0, "sample", "cpu"]
    for index, bad in ((2, -1), (3, 2.0), (4, 10**9), (2, float("nan")), (0, "resnet"), (4, "many")):
        wrong = list(args)
        wrong[index] = bad
        message = app.start(*wrong, FakeRequest("x"))
        assert "Not started" in message, message
    assert not app.lab.runs.busy()


def test_a_run_from_the_ui_handlers_finishes_and_updates_the_models():
    args = ["seed_teacher", "seed_student", 4.0, 0.7, 1, 0.005, 128, 0.1, "none", 1.0, "", False, 0.3, 0, "sample", "cpu"]
    assert "Started" in app.start(*args, FakeRequest("owner"))
    assert "Busy" in app.start(*args, FakeRequest("someone else"))
    assert "only the visitor" in app.stop(FakeRequest("someone else"))
    deadline = time.monotonic() + 120
    while app.lab.runs.busy() and time.monotonic() < deadline:
        time.sleep(0.2)
    status, loss_fig, acc_fig, table, _, _ = app.refresh(None, FakeRequest("owner"))
    assert "Finished" in status and "KD gain" in status
    assert "| KD student | seed_student | 173,930 |" in table
    assert len(loss_fig.data) == 4 and len(acc_fig.data) == 3
    canvas, _ = digit_canvas()
    note = app.predict(canvas, 4.0)[-1]
    assert "latest run" in note


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client
    return Client(app_url, verbose=False)


def test_only_the_predict_endpoint_is_exposed(client):
    api = client.view_api(return_format="dict", print_info=False)
    assert list(api["named_endpoints"]) == ["/predict"]
    assert not api["unnamed_endpoints"]


def sketch_value(path):
    from gradio_client import handle_file
    return {"background": None, "layers": [], "composite": handle_file(str(path))}


def test_predict_api_reads_redrawn_held_out_digits(client, tmp_path, monkeypatch):
    """Acceptance: held-out digits re-drawn at random size, place and stroke width, through /predict,
    read by the shipped teacher and student (not by a short run an earlier test made)."""
    monkeypatch.setattr(app.lab.runs, "latest", None)
    canvases, labels = bench.redrawn_canvases(200, seed=7)
    teacher_ok = student_ok = 0
    for i, (canvas, label) in enumerate(zip(canvases, labels)):
        path = tmp_path / f"{i}.png"
        Image.fromarray(canvas, "RGBA").save(path)
        teacher, student, *_ = client.predict(sketch_value(path), 4.0, api_name="/predict")
        teacher_ok += teacher["label"] == str(label)
        student_ok += student["label"] == str(label)
    assert teacher_ok / len(labels) >= 0.97, teacher_ok
    assert student_ok / len(labels) >= 0.95, student_ok


def test_predict_api_answers_a_blank_canvas_with_a_hint(client, tmp_path):
    path = tmp_path / "blank.png"
    Image.fromarray(np.zeros((280, 280, 4), np.uint8), "RGBA").save(path)
    teacher, student, _, image, note = client.predict(sketch_value(path), api_name="/predict")
    assert teacher.get("label") is None and student.get("label") is None and "Draw a digit" in note


def test_a_run_with_every_method_from_the_ui():
    """Multi-teacher KD, a linear alpha schedule and gradient clipping, as the accordion sets them."""
    args = ["seed_teacher", "seed_student", 4.0, 0.7, 1, 0.005, 128, 0.1, "hint", 1.0, "lenet5", True, 0.2, 5,
            "sample", "cpu"]
    assert "Started" in app.start(*args, FakeRequest("methods"))
    assert app.lab.runs.wait(180)
    snap = app.lab.runs.snapshot()
    assert snap["state"] == "finished", snap["message"]
    cfg = snap["config"]
    assert cfg["extra_teachers"] == ["lenet5"] and cfg["alpha_end"] == 0.2 and cfg["clip_grad_norm"] == 5
    assert cfg["feature_loss"] == "hint" and any(v is not None for v in snap["curves"]["feature"])
