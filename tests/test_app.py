"""The app: handlers called directly, and the public API (/predict, /runs) driven by gradio_client."""
import html
import os
import re
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import app
from kdapp.tools.serving import redrawn_canvases
from kdapp.ui.controls import settings_from


def digit_canvas(index=0, seed=0):
    canvases, labels = redrawn_canvases(index + 1, seed=seed)
    return canvases[index], int(labels[index])


def start(owner, **settings):
    """Press Start as the page does: (notice, run on show, run the notice is about)."""
    out = app.ui.distill.start({app.ui.owner: owner, **app.ui.distill.controls.inputs_for(**settings)})
    return out[app.ui.distill.notice], out.get(app.ui.distill.view), out.get(app.ui.distill.notice_for)


def predict(*args):
    """The drawing's answer, by name."""
    out = app.ui.distill.api.predict(*args)
    ui = app.ui.distill.api
    return SimpleNamespace(teacher=out[ui.teacher_pred], student=out[ui.student_pred], baseline=out[ui.baseline_pred],
                           fig=out[ui.dist_plot], image=out[ui.digit28], note=out[ui.draw_note])


def refresh(*args, lang="en", request=None):
    """A timer tick on a page in `lang`, by name: {component name in app.ui: value} for what it sends."""
    out = app.ui.distill.refresh(*args, lang, request)
    if out == gr.skip():  # nothing changed: no output is sent
        return {}
    return by_name(out)


def by_name(out):
    """{component: value} -> {its name: value}: the Distill tab's attribute names, the fidelity panel's
    as fidelity_<name>, its confusion plots as confusion_<role>."""
    distill = app.ui.distill
    names = {c: name for name, c in vars(distill).items() if isinstance(c, gr.blocks.Block)}
    names |= {c: f"fidelity_{name}" for name, c in vars(distill.fidelity).items() if isinstance(c, gr.blocks.Block)}
    names |= {plot: f"confusion_{role}" for role, plot in distill.fidelity.confusion.items()}
    return {names[component]: value for component, value in out.items()}


def test_predict_handler_on_a_drawn_digit():
    canvas, label = digit_canvas()
    p = predict({"background": None, "layers": [], "composite": canvas}, 4.0)
    assert max(p.teacher, key=p.teacher.get) == str(label)
    assert set(p.student) == {str(d) for d in range(10)} and abs(sum(p.student.values()) - 1) < 1e-5
    assert set(p.baseline) == {str(d) for d in range(10)}
    assert p.image.shape == (28, 28) and "KL(teacher‖student)" in p.note
    assert len(p.fig.data) == 6  # teacher, KD student and baseline, at T=1 and at T
    assert [bar.name for bar in p.fig.data[:3]] == ["teacher", "KD student", "baseline (no KD)"]


def test_predict_says_so_when_the_models_have_no_baseline(monkeypatch):
    teacher, student, _, description = app.lab.models(app.lab_lib.SHIPPED)
    monkeypatch.setattr(app.lab, "models", lambda choice: (teacher, student, None, description))
    canvas, _ = digit_canvas()
    p = predict(canvas, 4.0)
    assert p.baseline is None
    assert len(p.fig.data) == 4 and "baseline" not in p.note


def test_predict_handler_on_blank_and_broken_input():
    blank = np.zeros((280, 280, 4), np.uint8)
    p = predict(blank, 4.0)
    assert p.teacher is None and p.student is None and p.baseline is None and p.image is None
    assert "Draw a digit" in p.note
    for bad in (None, {"composite": None, "background": None, "layers": []}, np.zeros((5000, 5, 4), np.uint8)):
        p = predict(bad)
        assert p.teacher is None and p.note


def test_predict_handler_says_when_it_ignores_a_temperature():
    canvas, _ = digit_canvas()
    for T in (None, "abc", -3, float("nan"), 1e9):
        p = predict(canvas, T)
        assert p.teacher is not None and "showing T=4 instead" in p.note, p.note


def test_refresh_skips_when_nothing_changed(monkeypatch, tmp_path):
    # A lab of its own, with no run in it, so the first tick's page is known exactly whatever
    # other tests have queued in the app's lab.
    monkeypatch.setattr(app, "lab", app.lab_lib.Lab(runs_dir=tmp_path / "runs"))
    try:
        first = refresh(None, None, "a", app.lab_lib.SHIPPED, True, None)
        assert first["status"].startswith("**Status:** idle. No finished run yet"), first["status"]
        assert first["queue"] == ""  # no queue to show
        assert refresh(first["last"], None, "a", app.lab_lib.SHIPPED, True, None) == {}  # nothing changed: nothing sent
        # Before the page's load (or after a restart lost its state) there is no language and no
        # follow yet: the tick speaks the page's, from its request, and leaves the models alone.
        for headers, words in (({"accept-language": "zh-CN,zh;q=0.9,en;q=0.8"}, "状态"),
                               ({"accept-language": "zh-CN", "referer": "http://x/?run=ab&lang=en"}, "Status"),
                               ({"accept-language": "en-US", "referer": "http://x/?lang=zh"}, "状态"), (None, "Status")):
            request = SimpleNamespace(headers=headers) if headers else None
            loading = refresh(None, None, "a", app.lab_lib.SHIPPED, None, None, lang=None, request=request)
            assert words in loading["status"] and "models" not in loading and "drawing_models" not in loading
    finally:
        app.lab.close()


@pytest.mark.parametrize("name,bad", [("temperature", -1), ("alpha", 2.0), ("epochs", 10**9),
                                      ("temperature", float("nan")), ("teacher", "resnet"), ("epochs", "many"),
                                      ("clip_grad_norm", -1), ("lr", 0)])
def test_start_refuses_bad_settings_with_our_sentence(name, bad):
    message, view, notice_for = start("x", **{name: bad})
    assert "Not started" in message and notice_for is None, message
    assert not app.lab.queue.busy()


def test_incompatible_methods_are_refused_before_starting():
    message, _, _ = start("x", feature_loss="attention", student="mlp_30")
    assert "attention transfer needs conv feature maps" in message and "seed_student" in message


@pytest.mark.slow
def test_a_run_from_the_ui_handlers_finishes_and_the_owner_sees_it():
    message, view, notice_for = start("owner", epochs=1, train_fraction=0.1)
    assert "started" in message or "queued" in message
    assert view == notice_for and app.lab.queue.busy()
    assert "no run" in app.ui.distill.stop("someone else", None)[app.ui.distill.notice].lower()  # nothing of theirs to stop
    assert app.lab.queue.wait(view, timeout=180)
    out = refresh(None, view, "owner", app.lab_lib.SHIPPED, True, view)
    status, loss_fig, acc_fig, table, models, chosen = (out[k] for k in ("status", "loss_plot", "acc_plot", "table",
                                                                         "models", "drawing_models"))
    notice, notice_for, fidelity_md = (out[k] for k in ("notice", "notice_for", "fidelity_markdown"))
    fixed, broken, fidelity_shown = out["fidelity_fixed_gallery"], out["fidelity_broken_gallery"], out["fidelity_shown"]
    assert "Finished: run " + view in status and "KD gain" in status
    assert "| KD student | seed_student | 173,930 |" in table and "10% of the data" in table
    assert len(loss_fig.data) == 8 and len(acc_fig.data) == 3  # four loss curves, raw and smoothed
    assert notice == "" and notice_for is None  # the "started" notice goes once the run has ended
    assert models["value"] == view == chosen  # the owner's drawing now uses their run's models
    # The fidelity panel: its numbers, three confusion matrices, and the galleries' net count.
    fidelity = app.lab.fidelity(view)
    run = app.lab.run(view)
    assert fidelity_shown == view and "agrees with the teacher" in fidelity_md
    assert shown_confusions(out) == ["teacher", "student", "baseline"]  # one figure each
    assert fidelity["fixed"]["count"] - fidelity["broken"]["count"] == round(
        (run["metrics"]["student_acc"] - run["metrics"]["baseline_acc"]) * run["metrics"]["test_samples"])
    assert len(fixed) == min(32, fidelity["fixed"]["count"]) and len(broken) == min(32, fidelity["broken"]["count"])
    assert fixed, "one epoch on 10% of the data: KD and the baseline differ on some digits"
    chart = app.ui.distill.fidelity.show_example("fixed")(view, type("Select", (), {"index": 0})())  # a click on the first digit
    assert len(chart.data) == 3 and f"#{fidelity['fixed']['index'][0]}" in chart.layout.title.text
    canvas, _ = digit_canvas()
    note = predict(canvas, 4.0, view).note
    assert f"run {view}" in note and "baseline (no KD) says" in note
    # Another visitor's drawing keeps the shipped models.
    other = refresh(None, None, "another", app.lab_lib.SHIPPED, True, None)
    assert other.get("drawing_models", app.lab_lib.SHIPPED) == app.lab_lib.SHIPPED


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client
    return Client(app_url, verbose=False)


def test_only_the_read_only_tools_are_documented_endpoints(client):
    """/predict and /runs stay callable (the tests below), undocumented; the documented API is the MCP tools'."""
    api = client.view_api(return_format="dict", print_info=False)
    assert sorted(api["named_endpoints"]) == ["/get_run", "/list_runs", "/read_digit"]
    assert not api["unnamed_endpoints"]


def sketch_value(path):
    from gradio_client import handle_file
    return {"background": None, "layers": [], "composite": handle_file(str(path))}


@pytest.mark.slow
def test_predict_api_reads_redrawn_held_out_digits(client, tmp_path):
    """Acceptance: held-out digits re-drawn at random size, place and stroke width, through /predict,
    read by the shipped teacher and student."""
    canvases, labels = redrawn_canvases(200, seed=7)
    teacher_ok = student_ok = 0
    for i, (canvas, label) in enumerate(zip(canvases, labels)):
        path = tmp_path / f"{i}.png"
        Image.fromarray(canvas, "RGBA").save(path)
        teacher, student, baseline, *_ = client.predict(sketch_value(path), 4.0, api_name="/predict")
        assert baseline["label"] in "0123456789"  # a plain value for scripts, no update wrapper
        teacher_ok += teacher["label"] == str(label)
        student_ok += student["label"] == str(label)
    assert teacher_ok / len(labels) >= 0.97, teacher_ok
    assert student_ok / len(labels) >= 0.95, student_ok


def test_predict_api_answers_a_blank_canvas_with_a_hint(client, tmp_path):
    path = tmp_path / "blank.png"
    Image.fromarray(np.zeros((280, 280, 4), np.uint8), "RGBA").save(path)
    # /predict is undocumented (not an MCP tool), so gradio_client fills in no defaults: pass T.
    teacher, student, baseline, _, image, note = client.predict(sketch_value(path), 4.0, api_name="/predict")
    assert teacher.get("label") is None and student.get("label") is None and "Draw a digit" in note


@pytest.mark.slow
def test_runs_api_lists_runs_without_owners(client):
    message, view, _ = start("secret-owner-token", epochs=1, train_fraction=0.05)
    assert app.lab.queue.wait(view, timeout=180)
    runs = client.predict(api_name="/runs")
    if isinstance(runs, str):
        import json
        runs = json.loads(runs)
    assert isinstance(runs, list) and runs
    mine = next(r for r in runs if r["id"] == view)
    assert mine["state"] == "finished" and {"teacher", "student", "temperature", "alpha", "epochs"} <= set(mine["config"])
    assert {"student_acc", "baseline_acc"} <= set(mine["metrics"])
    assert "secret-owner-token" not in str(runs) and all("owner" not in r for r in runs)


@pytest.mark.slow
def test_a_run_with_every_method_from_the_ui():
    """Multi-teacher KD, hint features, a linear alpha schedule and gradient clipping, as the accordion sets them."""
    message, view, _ = start("methods", epochs=1, train_fraction=0.1, feature_loss="hint", feature_weight=1.0,
                             second_teacher="lenet5", alpha_schedule=True, alpha_end=0.2, clip_grad_norm=5)
    assert app.lab.queue.wait(view, timeout=240)
    run = app.lab.run(view)
    assert run["state"] == "finished", run["message"]
    cfg = run["config"]
    assert cfg["extra_teachers"] == ["lenet5"] and cfg["alpha_end"] == 0.2 and cfg["clip_grad_norm"] == 5
    assert cfg["feature_loss"] == "hint" and any(v is not None for v in run["curves"]["feature"])
    status = refresh(None, view, "methods", app.lab_lib.SHIPPED, True, None)["status"]
    for words in ("seed_teacher + lenet5", "α=0.7→0.2", "hint feature loss ×1", "clip 5", "10% of the data"):
        assert words in status, (words, status)


def test_permalink_settings_are_checked_one_by_one(tmp_path, monkeypatch):
    monkeypatch.setattr(app.lab, "data_dir", tmp_path)  # a lab without full MNIST
    settings, ignored = app.lab.settings_from_url({"teacher": "mlp_1200", "student": "mlp_30", "T": "8", "alpha": "0.9",
                                                   "epochs": "10", "fraction": "0.1", "run": "abc"})
    assert settings == {"teacher": "mlp_1200", "student": "mlp_30", "temperature": 8.0, "alpha": 0.9, "epochs": 10,
                        "train_fraction": 0.1} and ignored == []
    settings, ignored = app.lab.settings_from_url({"teacher": "<script>", "T": "500", "epochs": "41", "alpha": "nan",
                                                   "lr": "0.001", "time_limit_s": "99999", "data": "mnist",
                                                   "<img src=x>": "1"})
    assert settings == {"lr": 0.001}  # 41 epochs is over the hosted cap; full MNIST is not in its data folder
    assert set(ignored) == {"teacher", "T", "epochs", "alpha", "time_limit_s", "data", "<img src=x>"}


@pytest.mark.slow
def test_a_deep_supervision_run_has_no_teacher_and_says_so():
    """teacher = self, deep supervision: no teacher anywhere, and no number made up for one."""
    message, view, _ = start("deep-owner", teacher="self", self_distill="deep", epochs=1, train_fraction=0.1)
    assert app.lab.queue.wait(view, timeout=180)
    out = refresh(None, view, "deep-owner", app.lab_lib.SHIPPED, True, view)
    status, acc_fig, fidelity_md = (out[k] for k in ("status", "acc_plot", "fidelity_markdown"))
    run = app.lab.run(view)
    assert run["state"] == "finished" and run["metrics"]["teacher_acc"] is None, run["message"]
    assert "no teacher" in status and "deep supervision (no teacher)" in status
    assert [line.name for line in acc_fig.data] == ["KD student", "baseline (no KD)"]
    assert "has no teacher" in fidelity_md and "agrees with the teacher" not in fidelity_md
    assert shown_confusions(out) == ["student", "baseline"]  # no teacher's
    p = predict(digit_canvas()[0], 4.0, view)
    assert p.teacher is None and "taught itself" in p.note
    assert set(p.student) == set(p.baseline) == {str(d) for d in range(10)}
    # The page's panel runs what the run exported when it finished: no teacher, so it shows none.
    assert (app.lab.store.run_dir(view) / "onnx" / "student.onnx").is_file()
    assert set(app.lab.drawing_onnx(view)[0]) == {"student", "baseline"}
    assert set(app.lab.drawing_onnx(app.lab_lib.SHIPPED)[0]) == {"teacher", "student", "baseline"}
    assert len(p.fig.data) == 4 and "no teacher" in p.fig.layout.title.text  # student and baseline, at T=1 and T


@pytest.mark.slow  # it downloads a run that one of the (slow) tests above has finished
def test_a_finished_runs_student_downloads_in_both_forms(tmp_path):
    import torch

    from kdapp.models import build
    run = next(r for r in app.lab.runs() if r["state"] == "finished" and r["has_checkpoints"])
    pt, onnx_file = app.ui.runs.downloads([run["id"]])[app.ui.runs.files]
    payload = torch.load(pt, weights_only=True)
    build(payload["arch"]).load_state_dict(payload["model"])
    assert onnx_file.endswith(".onnx") and "kdapp-" in onnx_file
    out = app.ui.runs.downloads(["nope"])
    assert out[app.ui.runs.files] is None and "no student" in out[app.ui.runs.note]


def test_a_settings_link_reads_back_as_the_same_settings():
    from urllib.parse import parse_qsl, urlsplit
    values = app.ui.distill.controls.inputs_for(teacher="mlp_1200", student="mlp_30", temperature=8, alpha=0.9, epochs=10,
                            train_fraction=0.1)
    note = app.ui.distill.settings_link(values)[app.ui.distill.notice]
    url = re.search(r"\((/\?[^)]+)\)", note).group(1)
    settings, ignored = app.lab.settings_from_url(dict(parse_qsl(urlsplit(html.unescape(url)).query)))
    from_page = app.lab.config(app.ui.distill.settings_of(values)).replace(device="auto")  # a link carries no device
    assert ignored == [] and app.lab.config(settings) == from_page
    assert "T=8.0" in url and "fraction=0.1" in url
    assert "No link" in app.ui.distill.settings_link(app.ui.distill.controls.inputs_for(temperature=-1))[app.ui.distill.notice]


def test_the_techniques_settings_travel_in_a_link_and_only_when_set():
    from urllib.parse import parse_qsl, urlsplit

    def link(**settings):
        note = app.ui.distill.settings_link(app.ui.distill.controls.inputs_for(**settings))[app.ui.distill.notice]
        query = dict(parse_qsl(urlsplit(html.unescape(re.search(r"\((/\?[^)]+)\)", note).group(1))).query))
        return query, app.lab.settings_from_url(query)
    query, (settings, ignored) = link(temperature_schedule="cosine", temperature_end=2.0, joint_epochs=3,
                                      quantize="qat")
    assert ignored == [] and settings["temperature_schedule"] == "cosine" and settings["temperature_end"] == 2.0
    assert settings["joint_epochs"] == 3 and settings["quantize"] == "qat"
    _, (settings, ignored) = link(feature_loss="hint", collapse_weight=0.1, adversarial_weight=0.5)
    assert ignored == [] and settings["collapse_weight"] == 0.1 and settings["adversarial_weight"] == 0.5
    _, (settings, ignored) = link(teacher_shifts=2)
    assert ignored == [] and settings["teacher_shifts"] == 2
    plain, _ = link()
    assert not set(plain) & {"temperature_schedule", "temperature_end", "joint_epochs", "collapse_weight",
                             "adversarial_weight", "teacher_shifts", "quantize"}


def test_the_kd_gain_interval_is_the_binomial_one():
    from kdapp.ui import reports
    # 1.96 * sqrt((0.98 * 0.02 + 0.97 * 0.03) / 2000), by hand: 0.0096718...
    assert reports.gain_interval(0.98, 0.97, 2000) == pytest.approx(0.0096718, abs=1e-6)
    text = reports.gain_text({"student_acc": 0.98, "baseline_acc": 0.97, "test_samples": 2000})
    assert text == "+1.00 ± 0.97 pts"


def test_a_page_without_its_owner_token_cannot_start():
    for owner in (None, ""):
        message, view, notice_for = start(owner)
        assert "still loading" in message and notice_for is None
        assert "still loading" in app.ui.distill.sweep("temperature")({app.ui.owner: owner, **app.ui.distill.controls.inputs_for()})[app.ui.distill.notice]


@pytest.mark.slow
def test_each_sweep_counts_once_and_a_third_is_refused():
    values = app.ui.distill.controls.values_of(app.ui.distill.controls.inputs_for(epochs=1, train_fraction=0.05))
    records = []
    try:
        for _ in range(2):
            new, message = app.lab.sweep(settings_from(values), "sweeper", "alpha")
            assert len(new) == 5, message
            records += new
        new, message = app.lab.sweep(settings_from(values), "sweeper", "alpha")
        assert new == [] and "Sweep not started" in message
    finally:
        for r in records:
            app.lab.cancel(r["id"], owner=None)
        for r in records:
            assert app.lab.queue.wait(r["id"], timeout=60)


def test_strangers_text_in_a_link_is_shown_verbatim():
    from kdapp.ui import reports
    text = reports.url_notice("[sign in](https://evil.example)", ["<img src=x onerror=alert(1)>", "a`b"])
    assert text.count("`") == 6 and "[sign in](https://evil.example)" in text  # inside code spans only


def test_predict_skips_the_queue_and_answers_the_browsers_route(app_url, tmp_path):
    """Drawings skip the queue: the page calls /predict with one POST to gradio_api/run/predict and
    reads the answer from its reply (no queue, no event stream); scripts keep /predict's contract."""
    import httpx
    with httpx.Client(base_url=app_url, timeout=60) as http:
        config = http.get("config").json()
        predict = next(d for d in config["dependencies"] if d.get("api_name") == "predict")
        assert predict["queue"] is False
        canvas, label = digit_canvas(3, seed=11)
        path = tmp_path / "digit.png"
        Image.fromarray(canvas, "RGBA").save(path)
        with open(path, "rb") as f:
            uploaded = http.post("gradio_api/upload", files={"files": ("digit.png", f, "image/png")}).json()[0]
        value = {"background": None, "layers": [], "composite": {"path": uploaded, "meta": {"_type": "gradio.FileData"}}}
        r = http.post("gradio_api/run/predict", json={"data": [value, 4.0, None], "session_hash": "route-test"})
        assert r.status_code == 200, r.text
        teacher, student, baseline, _, _, note = r.json()["data"]
        assert teacher["label"] == str(label) and student["label"] == str(label)
        assert "KL(teacher‖student)" in note


def test_importing_app_starts_no_thread_and_opens_no_database(tmp_path):
    """The lab opens with the server (LAUNCH's lifespan), not on import: Gradio's reload mode and
    tools import app.py freely."""
    import subprocess
    import sys
    code = ("import threading; before = {t.name for t in threading.enumerate()}; import app; "
            "print(sorted({t.name for t in threading.enumerate()} - before))")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(app.__file__).parent,
                         env={**os.environ, "KDAPP_RUNS_DIR": str(tmp_path / "runs")},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
    assert not (tmp_path / "runs").exists()  # no store, no secret, not even the folder


def test_a_sweep_over_seeds_and_a_lesson_queue_every_value_on_seeds_0_to_2():
    """Sweeps can repeat over seeds 0-2 (15 runs, one group), and a lesson queues its values on
    seeds 0-2 and shows its progress; the tick then says how many have finished."""
    from kdapp.lab import lessons
    data = {app.ui.owner: "learner", app.ui.distill.sweep_seeds: True, **app.ui.distill.controls.inputs_for(epochs=1, train_fraction=0.05)}
    records = []
    try:
        assert "15 runs at temperature = 1, 2, 4, 8, 16, each on seeds 0, 1, 2" in \
            app.ui.distill.sweep("temperature")(data)[app.ui.distill.notice]
        for r in app.lab.active("learner"):  # the queue holds 20 runs: make room for the lesson
            app.lab.cancel(r["id"], owner=None)
        out = app.ui.lessons.start("alpha")({app.ui.owner: "learner", **app.ui.distill.controls.inputs_for(epochs=1, train_fraction=0.05)})
        lesson = out[app.ui.lessons.lesson]
        assert "Lesson queued: 9 runs" in out[app.ui.lessons.note]
        records = app.lab.group_runs(lesson["group"])
        assert sorted((r["config"]["alpha"], r["config"]["seed"]) for r in records) == \
            [(a, s) for a in lessons.LESSONS["alpha"].values for s in (0, 1, 2)]
        assert "0 of 9 runs finished" in app.ui.lessons.tick(lesson, None, "learner", "en")[app.ui.lessons.result]
        # Clicked again on the same settings (or after a reload): the same runs, none queued twice.
        active = len(app.lab.active("learner"))
        again = app.ui.lessons.start("alpha")({app.ui.owner: "learner", **app.ui.distill.controls.inputs_for(epochs=1, train_fraction=0.05)})
        assert again[app.ui.lessons.lesson] == lesson and "already run on these settings" in again[app.ui.lessons.note]
        assert len(app.lab.group_runs(lesson["group"])) == 9 and len(app.lab.active("learner")) <= active
        # A page opened afresh shows the visitor's newest lesson; another visitor's page shows none.
        fresh = app.ui.lessons.tick(None, None, "learner", "en")
        assert fresh[app.ui.lessons.lesson] == lesson and "of 9 runs finished" in fresh[app.ui.lessons.result]
        assert app.ui.lessons.tick(None, None, "stranger", "en") == {app.ui.lessons.last: "looked"}
        # Other settings are another lesson.
        other = app.ui.lessons.start("alpha")({app.ui.owner: "learner", **app.ui.distill.controls.inputs_for(epochs=2, train_fraction=0.05)})
        assert "already run" not in other[app.ui.lessons.note]  # queued, or refused by the visitor's allowance
    finally:
        for r in app.lab.active("learner"):
            app.lab.cancel(r["id"], owner=None)
        for r in app.lab.runs():  # a worker still importing torch reads its stop line late on a busy box
            assert app.lab.queue.wait(r["id"], timeout=300)


def test_born_again_is_live_only_with_teacher_self():
    """An ordinary run must not look born-again: the self-distillation controls are greyed out."""
    for teacher, live in (("seed_teacher", False), ("self", True)):
        out = app.ui.distill.self_controls(teacher)
        assert out[app.ui.distill.controls["self_distill"]]["interactive"] is live
        assert out[app.ui.distill.controls["generations"]]["interactive"] is live


def shown_confusions(out):
    """The models whose confusion matrix a refresh shows, each one figure of one heatmap."""
    shown = [role for role in ("teacher", "student", "baseline") if out[f"confusion_{role}"]["visible"]]
    assert all(len(out[f"confusion_{role}"]["value"].data) == 1 for role in shown)
    return shown


def test_the_confusion_caption_says_what_the_diagonal_shows_and_each_model_has_its_figure():
    from kdapp.ui import i18n, plots
    assert "counted but not coloured" in i18n.translation("en").gettext("plot.confusion.title")
    counts = lambda wrong: [[5 if i == j else wrong for j in range(10)] for i in range(10)]
    fidelity = {"confusion": {"teacher": counts(1), "student": counts(2), "baseline": counts(3)}}
    figures = {role: plots.confusion_figure(fidelity, role).to_plotly_json() for role in plots.CONFUSION_ROLES}
    assert figures["student"]["layout"]["title"]["text"] == "KD student: 180 wrong"  # 90 cells × 2, by hand
    assert {f["data"][0]["zmax"] for f in figures.values()} == {3}  # one colour scale for the three
    assert figures["baseline"]["data"][0]["z"][4][4] is None  # the diagonal is not coloured ...
    assert figures["baseline"]["data"][0]["text"][4][4] == "5"  # ... but counted
    for wrong, expected in ((0, ["teacher"]), (1, ["teacher", "student", "baseline"])):
        fid = {"confusion": {"teacher": counts(wrong), "student": counts(wrong), "baseline": counts(wrong)}} \
            if wrong else None
        out = by_name(app.ui.distill.fidelity.confusion_outputs(fid))
        assert [r for r in plots.CONFUSION_ROLES if out[f"confusion_{r}"]["visible"]] == expected


def test_gallery_captions_fit_a_thumbnail_and_name_the_other_answer():
    from kdapp.evaluation import fidelity as fidelity_lib
    images = fidelity_lib.encode_images(np.zeros((1, 28, 28), np.uint8))
    group = {"index": [0], "images": images, "label": [7], "predicted": {"student": [7], "baseline": [1]}}
    (fixed,) = app.lab.gallery({"fixed": group}, "fixed")
    broken = dict(group, predicted={"student": [4], "baseline": [7]})
    (wrong,) = app.lab.gallery({"broken": broken}, "broken")
    assert fixed[1] == "7 → 1" and wrong[1] == "7 → 4"  # the label, then the wrong model's answer


def test_the_techniques_controls_become_settings():
    """The schedule's end value counts only with a schedule; the rest pass through by name."""
    values = {name: component.value for name, component in app.ui.distill.controls.items()}
    assert settings_from(values)["temperature_end"] is None  # constant: no end
    settings = settings_from(dict(values, temperature_schedule="cosine", temperature_end=2.0, joint_epochs=2,
                                      collapse_weight=0.01, adversarial_weight=0.5))
    assert (settings["temperature_schedule"], settings["temperature_end"], settings["joint_epochs"],
            settings["collapse_weight"], settings["adversarial_weight"]) == ("cosine", 2.0, 2, 0.01, 0.5)
    assert "mutual" in [value for _, value in app.lab.teacher_choices()]



def test_the_second_teachers_labels_follow_the_first_teacher(tmp_path, monkeypatch):
    """The first teacher's architecture picked again is its copy 2: the label says whether that network is
    saved (not copy 1's "pretrained"), in the visitor's language, and follows the first teacher's choice."""
    monkeypatch.setattr(app.lab, "runs_dir", tmp_path)
    first = dict((v, label) for label, v in app.lab.teacher_choices())
    labels = dict((v, label) for label, v in app.lab.second_teacher_choices("mlp_30"))
    assert "self" not in labels and "mutual" not in labels
    assert labels["mlp_30"].endswith(" params · a second network, trained first")
    assert labels["lenet5"] == first["lenet5"]  # another architecture: its own copy 1, as for the first teacher
    (tmp_path / "teachers").mkdir()
    (tmp_path / "teachers" / "mlp_30-sample-copy2.pt").write_bytes(b"")  # found by name
    assert dict((v, label) for label, v in app.lab.second_teacher_choices("mlp_30"))["mlp_30"].endswith(
        "a second network, pretrained")
    update = app.ui.distill.second_teacher_choices("mlp_30", "zh")
    words = dict((v, label) for label, v in update["choices"])
    assert words["mlp_30"].endswith("个参数 · 第二个网络，已预训练") and words[""] != "none"
    words = dict((v, label) for label, v in app.ui.distill.second_teacher_choices("lenet5", "en")["choices"])
    assert words["mlp_30"] == first["mlp_30"] and "a second network" in words["lenet5"]


def test_a_visitors_finished_run_stays_on_show_when_another_visitors_run_trains(monkeypatch):
    """Without a run picked (a reload), the tab shows the visitor's active run, else their newest finished
    one, and only then the run training now: their result does not give way to a stranger's run."""
    mine = {"id": "aaaa0001"}
    monkeypatch.setattr(app.lab, "latest_finished", lambda owner=None: mine if owner == "me" else None)
    tab = app.ui.distill
    theirs = {"id": "bbbb0002", "mine": False, "position": 0}
    newest = {"id": "cccc0003"}
    assert tab.shown_run(None, [theirs], newest, "me") is mine
    assert tab.shown_run(None, [theirs], newest, "new visitor") is theirs
    assert tab.shown_run(None, [], newest, "new visitor") is newest
    active_mine = {"id": "dddd0004", "mine": True, "position": 1}
    assert tab.shown_run(None, [theirs, active_mine], newest, "me") is active_mine

def test_a_changing_temperature_is_drawn_on_the_loss_plots_right_axis():
    from kdapp.ui import plots
    curves = {"step": [1, 2, 3], "loss": [1.0, 0.8, 0.6], "soft": [1.0, 0.8, 0.6], "hard": [1.0, 0.8, 0.6],
              "feature": [None] * 3, "baseline": [1.0, 0.9, 0.8], "teacher_loss": []}
    snapshot = {"id": "r", "config": {}, "curves": dict(curves, temperature=[8.0, 5.0, 2.0])}
    traces = plots.loss_figure(snapshot).to_dict()["data"]
    t = [d for d in traces if d["name"].startswith("temperature")]
    assert len(t) == 1 and t[0]["yaxis"] == "y2" and list(t[0]["y"]) == [8.0, 5.0, 2.0]
    flat = plots.loss_figure({"id": "r", "config": {}, "curves": dict(curves, temperature=[4.0] * 3)})
    assert not any(d["name"].startswith("temperature") for d in flat.to_dict()["data"])  # constant T: no line


@pytest.mark.slow
def test_a_run_with_the_techniques_from_the_ui():
    """A cosine T schedule with the collapse and adversarial terms on the hint, as the accordion sets them."""
    message, view, _ = start("techniques", epochs=1, train_fraction=0.1, feature_loss="hint",
                             temperature_schedule="cosine", temperature_end=1.0, collapse_weight=0.01,
                             adversarial_weight=0.5)
    assert app.lab.queue.wait(view, timeout=600)
    run = app.lab.run(view)
    assert run["state"] == "finished", run["message"]
    temperatures = run["curves"]["temperature"]
    assert temperatures[0] > temperatures[-1] == pytest.approx(1.0)
    assert all(v > 0 for v in run["curves"]["part:collapse"] + run["curves"]["part:adversarial"])
    status = refresh(None, view, "techniques", app.lab_lib.SHIPPED, True, None)["status"]
    for words in ("T 4→1 (cosine)", "collapse λ=0.01", "adversarial μ=0.5"):
        assert words in status, (words, status)


@pytest.mark.parametrize("choice", [None, 7, "", "nonexistent-int8"])
def test_odd_drawing_models_fall_back_to_the_shipped_ones_with_a_note(choice):
    """What a page's fallback sends as `models` is the browser's to choose: anything that is not a
    run (or a run's int8 students) reads the digit with the shipped models and says why."""
    notes = []
    models = app.lab.models_or_shipped(choice, notes)
    assert models[3] == app.lab.models(app.lab_lib.SHIPPED)[3] and len(notes) == 1 and "shipped" in notes[0]


def test_the_page_s_private_events_keep_their_names_whatever_the_wiring_order():
    """Scripts may POST /gradio_api/call/<name> to a private event; gradio numbers an unnamed handler
    by the order the events were wired, so the ones a reshuffle would move are named."""
    from kdapp.lab.lessons import LESSONS
    names = {fn.api_name for fn in app.demo.fns.values()}
    expected = {f"lesson_{key}" for key in LESSONS} | {"fidelity_fixed_example", "fidelity_broken_example",
                                                       "continual_start", "start", "predict", "runs"}
    assert expected <= names, expected - names
