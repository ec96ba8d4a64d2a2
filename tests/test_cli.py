"""The command line: its defaults are the app's default run, shown in --help; clear errors; one-line data fallback."""
import argparse
import logging

import pytest

from kdapp import cli, data
from kdapp.config import DEFAULTS, RunConfig


def parse(*argv):
    parser = argparse.ArgumentParser()
    cli.add_run_options(parser)
    return cli.config_from_args(parser.parse_args(list(argv)))


def test_no_options_is_the_apps_default_run():
    assert parse() == RunConfig() == DEFAULTS
    assert (DEFAULTS.epochs, DEFAULTS.lr, DEFAULTS.batch_size, DEFAULTS.data) == (30, 0.005, 128, "sample")


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(["distill", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("(default: 30)", "(default: 0.005)", "(default: 128)", "(default: 4.0)", "(default: 0.7)",
                  "(default: sample)", "from 0.5 to 20"):
        assert shown in text, shown


def test_a_feature_loss_alone_gets_a_sensible_weight():
    config = parse("--feature-loss", "hint")
    assert config.feature_loss == "hint" and config.feature_weight == 1.0


def test_bad_values_get_a_sentence_not_a_traceback(capsys):
    assert cli.main(["distill", "--temperature", "0", "--epochs", "1"]) == 2
    assert "temperature must be from 0.5 to 20" in capsys.readouterr().err
    assert cli.main(["distill", "--student", "mlp_30", "--feature-loss", "attention"]) == 2
    assert "attention transfer needs conv feature maps" in capsys.readouterr().err


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
