import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from kdapp import checkpoints
from kdapp.models import build


def test_round_trip_rebuilds_the_model_from_the_file_alone(tmp_path):
    model = build("lenet5").eval()
    path = checkpoints.save(tmp_path / "m.pt", model, "lenet5", {"epochs": 3}, "sample", {"test_acc": 0.5})
    loaded, meta = checkpoints.load(path)
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model(x))
    assert meta["arch"] == "lenet5" and meta["data"] == "sample" and meta["metrics"]["test_acc"] == 0.5
    assert meta["config"] == {"epochs": 3} and "created" in meta
    # weights_only=True is enough to read it: no code runs on load.
    assert set(torch.load(path, weights_only=True)) >= {"model", "arch", "config", "data", "metrics"}


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_file_gives_a_clear_error(tmp_path, damage):
    good = checkpoints.save(tmp_path / "good.pt", build("mlp_30"), "mlp_30")
    bad = tmp_path / "bad.pt"
    content = good.read_bytes()
    bad.write_bytes({"truncate": content[: len(content) // 2], "garbage": os.urandom(5000), "empty": b""}[damage])
    with pytest.raises(checkpoints.CheckpointError, match="corrupt"):
        checkpoints.load(bad)


def test_missing_file_and_wrong_architecture(tmp_path):
    with pytest.raises(checkpoints.CheckpointError, match="does not exist"):
        checkpoints.load(tmp_path / "nope.pt")
    path = checkpoints.save(tmp_path / "m.pt", build("mlp_30"), "mlp_800")  # lying metadata
    with pytest.raises(checkpoints.CheckpointError, match="does not fit"):
        checkpoints.load(path)


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))
    path = tmp_path / "evil.pt"
    torch.save({"arch": "mlp_30", "model": Evil()}, path)
    with pytest.raises(checkpoints.CheckpointError):
        checkpoints.load(path)
    assert not (tmp_path / "pwned").exists()


def test_a_failed_save_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    path = checkpoints.save(tmp_path / "m.pt", build("mlp_30"), "mlp_30", metrics={"v": 1})

    def crash(obj, f):
        f.write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        checkpoints.save(path, build("mlp_30"), "mlp_30", metrics={"v": 2})
    monkeypatch.undo()
    assert checkpoints.load(path)[1]["metrics"] == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temp file left behind


WRITER = """
import sys, torch
sys.path.insert(0, {root!r})
from kdapp import checkpoints
from kdapp.models import build
model = build("mlp_1200")  # ~9.6 MB per file, so a kill lands mid-write often
i = 0
while True:
    i += 1
    checkpoints.save({path!r}, model, "mlp_1200", metrics={{"i": i}})
"""


@pytest.mark.slow
def test_kill_during_save_leaves_a_loadable_file(tmp_path):
    """SIGKILL a process that saves in a loop, many times: the file always loads."""
    path = tmp_path / "m.pt"
    checkpoints.save(path, build("mlp_1200"), "mlp_1200", metrics={"i": 0})
    root = str(checkpoints.SHIPPED_DIR.parent)
    for attempt in range(5):
        proc = subprocess.Popen([sys.executable, "-c", WRITER.format(root=root, path=str(path))])
        time.sleep(2.5 + 0.37 * attempt)  # torch import ~2 s, then saves; vary where the kill lands
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        model, meta = checkpoints.load(path)
        assert meta["arch"] == "mlp_1200"
