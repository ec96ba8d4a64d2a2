"""The command line: its defaults are the app's default run, shown in --help; clear errors; one-line data fallback."""
import argparse
import json
import logging

import pytest
import torch

from kdapp import checkpoints, cli, data
from kdapp.config import DEFAULTS, RunConfig
from kdapp.models import ARCHITECTURES


def parse(*argv):
    parser = argparse.ArgumentParser()
    cli.add_run_options(parser)
    return cli.config_from_args(parser.parse_args(list(argv)))


def test_no_options_is_the_apps_default_run():
    assert parse() == RunConfig() == DEFAULTS
    # The default run teaches: scarce labels, no shifts (results/default-run.json: its gain clears
    # its 95% interval on seeds 0, 1 and 2).
    assert (DEFAULTS.epochs, DEFAULTS.lr, DEFAULTS.batch_size, DEFAULTS.data, DEFAULTS.augment,
            DEFAULTS.train_fraction) == (40, 0.01, 128, "sample", False, 0.1)


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(["distill", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("(default: 40)", "(default: 0.01)", "(default: 128)", "(default: 4.0)", "(default: 0.7)",
                  "(default: sample)", "(default: 0.1)", "from 0.5 to 20"):
        assert shown in text, shown


def test_every_setting_given_on_the_command_line_reaches_the_run():
    """Each RunConfig field, moved off its default on the command line, arrives as given: an option
    the parser drops, or routes to the wrong field (say --dkd-beta into dkd_alpha), fails here."""
    expected = RunConfig(
        teacher="lenet5_wide", extra_teachers=("lenet5",), student="lenet5", temperature=8.0, alpha=0.9,
        alpha_end=0.3, epochs=3, teacher_epochs=5, lr=0.002, batch_size=64, train_fraction=0.5, loss="dkd",
        dkd_alpha=0.5, dkd_beta=4.0, dist_beta=2.0, dist_gamma=3.0, omit_class=3, feature_loss="gram",
        feature_weight=0.5, clip_grad_norm=5.0, augment=True, consistent=True, baseline=False, data="mnist",
        device="cpu", seed=7, quantize="ptq", temperature_schedule="cosine", temperature_end=2.0,
        collapse_weight=0.1, adversarial_weight=0.5)
    assert parse("--teachers", "lenet5_wide,lenet5", "--student", "lenet5", "-T", "8", "--alpha", "0.9",
                 "--alpha-end", "0.3", "--epochs", "3", "--teacher-epochs", "5", "--lr", "0.002",
                 "--batch-size", "64", "--train-fraction", "0.5", "--loss", "dkd", "--dkd-alpha", "0.5",
                 "--dkd-beta", "4", "--dist-beta", "2", "--dist-gamma", "3", "--omit-class", "3",
                 "--feature-loss", "gram", "--feature-weight", "0.5", "--clip-grad-norm", "5", "--augment",
                 "--consistent", "--no-baseline", "--data", "mnist", "--device", "cpu", "--seed", "7",
                 "--quantize", "ptq", "--temperature-schedule", "cosine", "--temperature-end", "2",
                 "--collapse-weight", "0.1", "--adversarial-weight", "0.5") == expected
    self_taught = parse("--teacher", "self", "--self-distill", "deep", "--generations", "2")
    assert self_taught == RunConfig(teacher="self", self_distill="deep", generations=2)
    assert parse("--joint-epochs", "2") == RunConfig(joint_epochs=2)
    assert parse("--teacher-shifts", "2") == RunConfig(teacher_shifts=2)  # refused beside consistent teaching
    # Between the two, every setting but the hosted time limit left its default: a new field
    # with no option on the command line makes this fail.
    moved = {name for name, value in expected.to_dict().items() if value != DEFAULTS.to_dict()[name]}
    assert moved | {"self_distill", "generations", "joint_epochs", "teacher_shifts", "time_limit_s"} == \
        set(DEFAULTS.to_dict())


@pytest.mark.parametrize("command", ["distill", "train-teacher", "robustness", "bench", "reproduce", "loadtest",
                                     "data import"])
def test_every_option_has_help(command):
    captured = {}
    original = argparse._SubParsersAction.add_parser

    def keep(self, name, **kwargs):
        captured[name] = original(self, name, **kwargs)
        return captured[name]
    with pytest.MonkeyPatch.context() as m:
        m.setattr(argparse._SubParsersAction, "add_parser", keep)
        with pytest.raises(SystemExit):
            cli.main(["--help"])
    parser = captured[command.split()[-1]]
    bare = [a.option_strings or a.dest for a in parser._actions
            if not a.help and not isinstance(a, argparse._SubParsersAction)]
    assert not bare, f"{command}: options without help: {bare}"


def test_an_unknown_teacher_names_every_choice_self_included(capsys):
    assert cli.main(["distill", "--teacher", "nonsense"]) == 2
    err = capsys.readouterr().err
    assert "self" in err and all(name in err for name in ARCHITECTURES)


def test_a_feature_loss_alone_gets_a_sensible_weight():
    config = parse("--feature-loss", "hint")
    assert config.feature_loss == "hint" and config.feature_weight == 1.0


def test_bad_values_get_a_sentence_not_a_traceback(capsys):
    assert cli.main(["distill", "--temperature", "0", "--epochs", "1"]) == 2
    assert "temperature must be from 0.5 to 20" in capsys.readouterr().err
    assert cli.main(["distill", "--student", "mlp_30", "--feature-loss", "attention"]) == 2
    assert "attention transfer needs conv feature maps" in capsys.readouterr().err
    # a teacher may train for up to 2,000 epochs, not a run's 100; max-norm must be positive
    assert cli.main(["train-teacher", "--epochs", "3000"]) == 2
    assert "epochs must be from 1 to 2000, got 3000" in capsys.readouterr().err
    assert cli.main(["train-teacher", "--max-norm", "0"]) == 2
    assert "max-norm must be above 0 to 100" in capsys.readouterr().err
    assert cli.main(["train-teacher", "--init", "no/such.pt", "--swa"]) == 2
    assert "checkpoint no/such.pt does not exist" in capsys.readouterr().err


def test_a_teacher_started_from_another_records_its_whole_lineage(tmp_path):
    """train-teacher --init A --swa: the saved file says it averaged, and carries A's own recipe and score."""
    init = checkpoints.SHIPPED_DIR / "mlp_30-sample.pt"
    out = tmp_path / "t.pt"
    assert cli.main(["train-teacher", "--teacher", "mlp_30", "--epochs", "1", "--data", "sample", "--init", str(init),
                     "--swa", "--lr", "0.001", "--quiet", "--out", str(out)]) == 0
    _, meta = checkpoints.load(out)
    _, before = checkpoints.load(init)
    assert meta["config"]["swa"] and meta["config"]["epochs"] == 1
    assert meta["config"]["init"] == {**before["config"], "data": "sample", "metrics": before["metrics"]}


def test_train_teacher_copy_2_is_the_next_seeds_network_under_its_own_name(tmp_path):
    """train-teacher --copy 2 into a folder: <arch>-<data>-copy2.pt, trained with --seed + 1, as a run that names
    the architecture twice trains its missing copy 2, so that the two are different networks."""
    argv = ["train-teacher", "--teacher", "mlp_30", "--epochs", "1", "--data", "sample", "--seed", "3", "--quiet",
            "--out", f"{tmp_path}/"]
    assert cli.main(argv) == 0 and cli.main(argv + ["--copy", "2"]) == 0
    (one, first), (two, second) = (checkpoints.load(tmp_path / name) for name in ("mlp_30-sample.pt",
                                                                                   "mlp_30-sample-copy2.pt"))
    assert (first["config"]["seed"], second["config"]["seed"]) == (3, 4)
    assert not torch.equal(one.fc1.weight, two.fc1.weight)


def test_distill_resume_carries_on_from_its_point(tmp_path, capsys):
    """distill --resume PATH: a point saved after the last epoch finishes the run without training again."""
    argv = ["distill", "--student", "mlp_30", "--epochs", "1", "--data", "sample", "--quiet", "--json",
            "--runs-dir", str(tmp_path / "runs"), "--resume", str(tmp_path / "point.pt"), "--no-baseline"]
    assert cli.main(argv) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert cli.main([a for a in argv if a != "--quiet"]) == 0
    out = capsys.readouterr()
    assert "resumed after epoch 1 from its resume point" in out.err
    assert json.loads(out.out.splitlines()[-1])["student_acc"] == first["student_acc"]
    (tmp_path / "point.pt").write_bytes(b"not a point")  # a damaged point: start afresh by deleting it
    assert cli.main(argv) == 2
    assert f"could not be read (the file is damaged); delete {tmp_path / 'point.pt'} to start it afresh" in \
        capsys.readouterr().err


def test_a_failed_download_is_one_line(monkeypatch, tmp_path, caplog, capfd):
    """torchvision prints every mirror it tries and every failure; we say one line instead."""
    import torchvision.datasets

    class Offline:
        def __init__(self, root, train=True, download=False):
            if download:
                print("Downloading http://mirror/train-images-idx3-ubyte.gz\nFailed to download (trying next):\n"
                      "<urlopen error [Errno 111] Connection refused>")
                raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried http://a, got:\nrefused")
            raise RuntimeError("Dataset not found. You can use download=True to download it")
    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    monkeypatch.setattr(data, "_CACHE", {})
    with caplog.at_level(logging.WARNING):
        dataset = data.load("auto", tmp_path)
    assert dataset.source == "sample"
    out, err = capfd.readouterr()
    assert "Downloading" not in out + err and "trying next" not in out + err
    messages = [r.getMessage() for r in caplog.records if r.name == "kdapp.data"]
    assert len(messages) == 1 and "\n" not in messages[0] and "using the bundled" in messages[0]


@pytest.mark.slow
def test_a_fresh_data_folder_imports_full_mnist_and_distills_on_it(tmp_path):
    """The full-MNIST issue's acceptance, as a newcomer types it: `data import`, then a 1-epoch
    distill on the 60,000 / 10,000 split with the shipped full-MNIST teacher."""
    import json
    import subprocess
    import sys
    from tests.conftest import ROOT, SHARED_MNIST, need_mnist
    need_mnist()
    run = lambda *args: subprocess.run([sys.executable, "-m", "kdapp", *args], cwd=ROOT, capture_output=True,
                                       text=True, timeout=900)
    imported = run("data", "import", str(SHARED_MNIST), "--data-dir", str(tmp_path / "data"))
    assert imported.returncode == 0 and "full MNIST (60,000 train / 10,000 test)" in imported.stderr, imported.stderr
    result = run("distill", "--data", "mnist", "--epochs", "1", "--train-fraction", "1", "--json", "--quiet", "--data-dir",
                 str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["data"] == "mnist" and metrics["test_samples"] == 10000 and metrics["train_samples"] == 60000
    assert metrics["teacher_acc"] >= 0.992  # the shipped full-MNIST teacher, not one trained in 1 epoch
    assert metrics["student_acc"] > 0.95


def test_a_teacher_trained_on_other_data_is_never_used(tmp_path, sample, monkeypatch):
    """The sample's test digits are MNIST training digits: a full-MNIST teacher saved under the
    sample's name must be refused (and a new one trained), never used to teach a sample run."""
    from kdapp import checkpoints
    from kdapp.training import teachers
    from kdapp.models import build
    fake = checkpoints.teacher_path(tmp_path / "teachers", "mlp_30", "sample")
    checkpoints.save(fake, build("mlp_30"), "mlp_30", data="mnist")
    shipped = checkpoints.SHIPPED_DIR
    monkeypatch.setattr(checkpoints, "SHIPPED_DIR", tmp_path / "none-shipped")  # only the planted file
    said = []
    assert teachers.get_teacher("mlp_30", sample, tmp_path, said.append) is None
    assert any(e["type"] == "warning" and "never have seen the run's test digits" in e["message"] for e in said)
    # And every shipped teacher is found only for the data it records.
    for path in shipped.glob("*.pt"):
        _, meta = checkpoints.load(path)
        assert path.stem.split("-copy")[0].endswith("-" + meta["data"]), path


def test_distill_out_into_the_folder_that_holds_its_teacher(tmp_path, capsys, monkeypatch):
    """scripts/train_checkpoints.sh distills with --out checkpoints/, where the teacher already is:
    the teacher is left as it is (not copied onto itself) and the students are saved beside it."""
    from kdapp import checkpoints
    monkeypatch.setattr(checkpoints, "SHIPPED_DIR", tmp_path / "none-shipped")  # the teacher is trained here
    runs = tmp_path / "runs"
    code = cli.main(["distill", "--quiet", "--teacher", "mlp_30", "--student", "mlp_30", "--teacher-epochs", "1",
                     "--epochs", "1", "--train-fraction", "0.1", "--runs-dir", str(runs), "--out", str(runs / "teachers")])
    assert code == 0, capsys.readouterr().err[-2000:]
    assert sorted(p.name for p in (runs / "teachers").iterdir()) == [
        "mlp_30-baseline-sample.pt", "mlp_30-kd-sample.pt", "mlp_30-sample.pt"]


def test_a_cli_run_is_listed_in_the_apps_store(tmp_path, capsys):
    """One notebook: `distill` records its finished run in the app's store (--runs-dir, default
    KDAPP_RUNS_DIR) with curves, metrics, config and no owner, so the Runs tab lists, compares and
    links it; and its last line carries the gain's 95% interval, as the page shows it."""
    from kdapp.lab import facade
    from kdapp.lab.store import RunStore
    runs = tmp_path / "runs"
    code = cli.main(["distill", "--quiet", "--student", "mlp_30", "--epochs", "2", "--train-fraction", "0.05",
                     "--runs-dir", str(runs), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert "KD gain" in last and "±" in last and "(95% interval)" in last, last
    store = RunStore(runs)
    (record,) = store.list()
    assert record["state"] == "finished" and store.owner_of(record["id"]) is None
    assert record["config"] == RunConfig(student="mlp_30", epochs=2, train_fraction=0.05).to_dict()
    assert record["metrics"]["student_acc"] == json.loads(out.strip().splitlines()[-1])["student_acc"]
    assert len(record["curves"]["step"]) > 0 and record["accuracy"]["epoch"] == [1, 2]
    assert record["fidelity"] and record["has_checkpoints"] and record["id"] in last
    store.close()
    lab = facade.Lab(runs_dir=runs)  # as the app sees it: listed, and its models load for the drawing
    try:
        assert [r["id"] for r in lab.runs()] == [record["id"]]
        assert lab.models(record["id"])[1] is not None  # raises LookupError when it cannot load them
    finally:
        lab.close()
    assert cli.main(["distill", "--quiet", "--student", "mlp_30", "--epochs", "1", "--train-fraction", "0.05",
                     "--runs-dir", str(runs), "--no-record"]) == 0
    assert len(RunStore(runs, read_only=True).list()) == 1


def test_a_missing_mnist_skip_says_how_to_get_it():
    from tests.conftest import NO_MNIST, ROOT
    assert "python -m kdapp data import DIR" in NO_MNIST
    assert ".." not in NO_MNIST and str(ROOT.parent) not in NO_MNIST  # no path outside the repo
