"""TensorBoard export: event files read back with tensorboard's own reader hold the store's numbers."""
import zipfile

import pytest

from kdapp import cli
from kdapp.config import RunConfig
from kdapp.lab import tensorboard
from kdapp.lab.jobs import RunQueue
from kdapp.lab.store import RunStore
from kdapp.training.continual import ContinualConfig

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402  (after the skip)


def read_events(folder):
    """{tag: [(step, value)]} and the hparams of one run folder, as TensorBoard itself reads them."""
    reader = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.SCALARS: 0})
    reader.Reload()
    scalars = {tag: [(e.step, e.value) for e in reader.Scalars(tag)] for tag in reader.Tags()["scalars"]}
    content = reader.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    hparams = {name: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
               for name, value in start.hparams.items()}
    # No run defines the experiment: TensorBoard then builds the HParams table from every run's settings.
    assert "_hparams_/experiment" not in content
    return scalars, hparams


def assert_points_equal(read, expected):
    assert [step for step, _ in read] == [step for step, _ in expected]
    assert [value for _, value in read] == pytest.approx([value for _, value in expected], rel=1e-6)


def hand_record(**more):
    """A stopped DKD run as the store keeps it: a None where the baseline was not logged yet."""
    config = RunConfig(loss="dkd", extra_teachers=("mlp_1200",), augment=True).to_dict()
    return {"id": "0a1b2c3d", "state": "cancelled", "config": config, "created": 1.7e9, "started": 1.7e9 + 2,
            "curves": {"step": [10, 20, 30], "loss": [2.0, 1.5, 1.25], "soft": [1.0, 0.75, 0.5],
                       "hard": [1.0, 0.75, 0.75], "feature": [None, None, None], "baseline": [None, 1.2, 1.1],
                       "teacher_loss": [], "part:tckd": [0.5, 0.25, 0.125], "part:nckd": [0.5, 0.5, 0.375]},
            "accuracy": {"epoch": [1], "teacher": [0.98], "student": [0.9], "baseline": [0.85]},
            "metrics": None, **more}


def test_a_hand_made_run_reads_back_with_its_settings(tmp_path):
    record = hand_record()
    folder = tensorboard.export_runs([record, hand_record(id="ffffffff", curves={}, accuracy={})], tmp_path)
    assert [f.name for f in folder] == ["0a1b2c3d_seed_teacher-seed_student_T4_a0.7"]  # nothing to plot: skipped
    scalars, hparams = read_events(folder[0])
    assert set(scalars) == {"loss/kd_student", "loss/kd_soft", "loss/kd_hard", "loss/baseline", "loss/kd_tckd",
                            "loss/kd_nckd", "accuracy/kd_student", "accuracy/baseline", "accuracy/teacher"}
    assert_points_equal(scalars["loss/kd_student"], [(10, 2.0), (20, 1.5), (30, 1.25)])
    assert_points_equal(scalars["loss/baseline"], [(20, 1.2), (30, 1.1)])  # the None is left out, not a zero
    assert_points_equal(scalars["loss/kd_nckd"], [(10, 0.5), (20, 0.5), (30, 0.375)])
    assert_points_equal(scalars["accuracy/kd_student"], [(1, 0.9)])
    assert hparams["loss"] == "dkd" and hparams["temperature"] == 4.0 and hparams["augment"] == "true"
    assert hparams["extra_teachers"] == "mlp_1200" and hparams["omit_class"] == "none"
    assert not any(tag.startswith("final/") for tag in scalars)  # a stopped run has no final accuracies


def continual_record(**more):
    """A finished two-task continual run as the store keeps it: each strategy's accuracy-matrix rows."""
    config = ContinualConfig(tasks=2, epochs=1, data="sample", strategies=("finetune", "replay")).to_dict()
    rows = {"finetune": [[0.99, 0.0], [0.0, 0.98]], "replay": [[0.99, 0.0], [0.85, 0.9]]}
    return {"id": "c0ffee00", "state": "finished", "config": config, "created": 1.7e9, "started": 1.7e9 + 2,
            "curves": {"step": []}, "metrics": {"strategies": {
                "finetune": {"acc_matrix": rows["finetune"], "average_acc": 0.49, "forgetting": 0.99},
                "replay": {"acc_matrix": rows["replay"], "average_acc": 0.875, "forgetting": 0.14}}},
            "accuracy": {"continual": [{"strategy": name, "task": i, "accuracies": row}
                                       for name, matrix in rows.items() for i, row in enumerate(matrix)]}, **more}


def test_a_continual_run_reads_back_as_its_accuracy_matrix(tmp_path):
    (folder,) = tensorboard.export_runs([continual_record()], tmp_path)
    assert folder.name == "c0ffee00_continual_class_2tasks_T2"
    scalars, hparams = read_events(folder)
    assert_points_equal(scalars["continual/finetune/task1"], [(1, 0.99), (2, 0.0)])  # forgotten after task 2
    assert_points_equal(scalars["continual/replay/task1"], [(1, 0.99), (2, 0.85)])
    assert_points_equal(scalars["continual/replay/task2"], [(1, 0.0), (2, 0.9)])
    # The mean over the tasks learned so far: task 1 alone, then (0.85 + 0.9) / 2.
    assert_points_equal(scalars["continual/replay/seen_average"], [(1, 0.99), (2, 0.875)])
    assert_points_equal(scalars["final/finetune_forgetting"], [(2, 0.99)])
    assert_points_equal(scalars["final/replay_average_acc"], [(2, 0.875)])
    assert hparams["kind"] == "continual" and hparams["strategies"] == "finetune,replay"
    assert hparams["scenario"] == "class" and hparams["memory"] == 200.0
    # Queued, nothing learnt yet: skipped like a distillation run with no curves.
    assert tensorboard.export_runs([continual_record(accuracy={}, metrics=None)], tmp_path / "none") == []


def test_export_zip_holds_one_folder_a_run_and_refuses_an_empty_one(tmp_path):
    path = tensorboard.export_zip([hand_record(), hand_record(id="0a1b2c3e")], tmp_path / "runs.zip")
    with zipfile.ZipFile(path) as archive:
        folders = {name.split("/")[0] for name in archive.namelist()}
        archive.extractall(tmp_path / "unzipped")
    assert folders == {"0a1b2c3d_seed_teacher-seed_student_T4_a0.7", "0a1b2c3e_seed_teacher-seed_student_T4_a0.7"}
    scalars, _ = read_events(tmp_path / "unzipped" / "0a1b2c3e_seed_teacher-seed_student_T4_a0.7")
    assert_points_equal(scalars["loss/kd_soft"], [(10, 1.0), (20, 0.75), (30, 0.5)])
    with pytest.raises(ValueError, match="none of these runs has curves"):
        tensorboard.export_zip([hand_record(curves={}, accuracy={})], tmp_path / "empty.zip")


def test_cli_exports_a_real_run_while_the_server_owns_the_store(tmp_path, capsys):
    """A real 2-epoch run through the queue, exported by `python -m kdapp runs export --tensorboard`
    while its queue still has the store open; tensorboard's reader finds the store's numbers."""
    queue = RunQueue(RunStore(tmp_path / "runs"), data_dir=tmp_path / "data")
    try:
        run = queue.submit(RunConfig(epochs=2, train_fraction=0.05), owner="a")[0]
        assert queue.wait(run["id"], timeout=240)
        record = queue.store.get(run["id"])
        assert record["state"] == "finished", record["message"]
        queued = queue.submit(RunConfig(epochs=40), owner="b")[0]  # running or queued while we export
        finished = continual_record()  # a continual run the store holds beside them is exported too
        continual = queue.store.create(finished["config"], owner="c", state="finished")["id"]
        queue.store.update(continual, accuracy=finished["accuracy"], metrics=finished["metrics"])
        out = tmp_path / "tb"
        assert cli.main(["runs", "export", "--tensorboard", str(out), "--runs-dir", str(tmp_path / "runs")]) == 0
        assert queue.store.get(queued["id"])["state"] in ("queued", "running")  # read-only: not "interrupted"
        queue.cancel(queued["id"], None)
    finally:
        queue.close()
    assert f"--logdir {out}" in capsys.readouterr().err
    continual_scalars, _ = read_events(out / tensorboard.run_name(dict(finished, id=continual)))
    assert_points_equal(continual_scalars["continual/replay/seen_average"], [(1, 0.99), (2, 0.875)])
    scalars, hparams = read_events(out / tensorboard.run_name(record))
    curves, accuracy, m = record["curves"], record["accuracy"], record["metrics"]
    assert_points_equal(scalars["loss/kd_student"], list(zip(curves["step"], curves["loss"])))
    assert_points_equal(scalars["loss/kd_soft"], list(zip(curves["step"], curves["soft"])))
    assert_points_equal(scalars["loss/baseline"], list(zip(curves["step"], curves["baseline"])))
    assert accuracy["epoch"] == [1, 2]
    assert_points_equal(scalars["accuracy/kd_student"], list(zip(accuracy["epoch"], accuracy["student"])))
    assert_points_equal(scalars["accuracy/baseline"], list(zip(accuracy["epoch"], accuracy["baseline"])))
    assert_points_equal(scalars["final/kd_gain"], [(2, m["student_acc"] - m["baseline_acc"])])
    assert {k: hparams[k] for k in ("teacher", "student", "epochs", "train_fraction")} == \
        {"teacher": "seed_teacher", "student": "seed_student", "epochs": 2, "train_fraction": 0.05}
    assert_points_equal(scalars["final/kd_student_acc"], [(2, m["student_acc"])])


def test_cli_says_what_to_do_without_a_store_or_run(tmp_path, capsys):
    assert cli.main(["runs", "export", "--tensorboard", str(tmp_path / "tb"), "--runs-dir", str(tmp_path)]) == 2
    assert "no run store at" in capsys.readouterr().err
    RunStore(tmp_path)
    assert cli.main(["runs", "export", "--tensorboard", str(tmp_path / "tb"), "--runs-dir", str(tmp_path),
                     "--run", "deadbeef"]) == 2
    assert "no run deadbeef" in capsys.readouterr().err


def test_the_runs_tab_button_zips_the_selected_runs(monkeypatch, tmp_path):
    import app
    records = {r["id"]: r for r in (hand_record(), hand_record(id="0a1b2c3e", curves={}, accuracy={}))}
    monkeypatch.setattr(app.lab, "run", records.get)
    out = app.ui.runs.tensorboard_download(["0a1b2c3d"])
    with zipfile.ZipFile(out[app.ui.runs.files][0]) as archive:
        assert {name.split("/")[0] for name in archive.namelist()} == {"0a1b2c3d_seed_teacher-seed_student_T4_a0.7"}
    assert "tensorboard --logdir" in out[app.ui.runs.note]
    out = app.ui.runs.tensorboard_download(["0a1b2c3e"])  # queued: nothing to plot yet
    assert out[app.ui.runs.files] is None and "none of these runs has curves" in out[app.ui.runs.note]
