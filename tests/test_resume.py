"""Resume points: a run stopped after an epoch and resumed ends exactly where an uninterrupted run
with the same seed ends (on the sample, in this process); damaged points and full disks fail the
run with a sentence, never a loop."""
import copy
import errno
import os

import pytest
import torch

from kdapp import checkpoints
from kdapp.config import RunConfig
from kdapp.training import resume as resume_lib, train

CONFIG = RunConfig(epochs=2, train_fraction=0.1, augment=True)  # shifts: the augmentation RNG must resume too


def run(tmp_path, name, config=CONFIG, **kwargs):
    events = []
    result = train.run(config, emit=events.append, runs_dir=tmp_path / "runs", out_dir=tmp_path / name,
                       resume_path=tmp_path / name / "resume.pt", **kwargs)
    return result, events


@pytest.mark.parametrize("config", [CONFIG, CONFIG.replace(feature_loss="hint", augment=False),
                                    CONFIG.replace(temperature_schedule="ctkd", temperature_end=2.0),
                                    CONFIG.replace(teacher="mutual"),
                                    CONFIG.replace(epochs=1, joint_epochs=1)],
                         ids=["kd-shifts", "hint-adapter", "ctkd-learned-T", "mutual", "joint-epochs"])
def test_a_resumed_run_ends_exactly_where_an_uninterrupted_one_does(tmp_path, config):
    whole, _ = run(tmp_path, "whole", config)
    point = tmp_path / "cut" / "resume.pt"
    with pytest.raises(train.Cancelled):  # stopped at the first step after epoch 1's point
        run(tmp_path, "cut", config, should_stop=point.exists)
    assert torch.load(point, weights_only=True)["epoch"] == 1
    resumed, events = run(tmp_path, "cut", config)
    assert [e for e in events if e["type"] == "resumed"] == [{"type": "resumed", "epoch": 1, "step": 7}]
    assert [e["epoch"] for e in events if e["type"] == "epoch"] == [0, 2]  # epoch 1 was not trained again
    for role in ("student", "baseline"):
        a, b = getattr(whole, role).state_dict(), getattr(resumed, role).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), role  # bit for bit
    for key in ("student_acc", "baseline_acc", "teacher_acc"):
        assert resumed.metrics[key] == whole.metrics[key]
    if config.teacher == "mutual" or config.joint_epochs:  # the teacher learned too: it resumed as well
        a, b = whole.teacher.state_dict(), resumed.teacher.state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_point_saved_after_the_last_epoch_finishes_the_run_without_training(tmp_path):
    whole, _ = run(tmp_path, "whole")
    (tmp_path / "again").mkdir()
    (tmp_path / "again" / "resume.pt").write_bytes((tmp_path / "whole" / "resume.pt").read_bytes())
    again, events = run(tmp_path, "again")
    assert not [e for e in events if e["type"] == "step"]
    assert again.metrics["student_acc"] == whole.metrics["student_acc"]


@pytest.mark.parametrize("content", [b"", b"not a torch file", b"PK\x03\x04" + bytes(100)])
def test_a_damaged_point_fails_the_run_with_a_sentence(tmp_path, content):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "resume.pt").write_bytes(content)
    with pytest.raises(resume_lib.ResumeError, match="could not be read .*press Run again") as e:
        run(tmp_path, "bad")
    assert str(tmp_path) not in str(e.value) and "Error" not in str(e.value)


def test_a_point_from_other_settings_is_refused(tmp_path):
    run(tmp_path, "whole")
    with pytest.raises(resume_lib.ResumeError, match="other settings"):
        train.run(CONFIG.replace(temperature=8.0), runs_dir=tmp_path / "runs", out_dir=tmp_path / "x",
                  resume_path=tmp_path / "whole" / "resume.pt")


def test_a_full_disk_fails_the_run_and_keeps_the_last_point(tmp_path, monkeypatch):
    real = checkpoints.atomic_write
    point = tmp_path / "full" / "resume.pt"

    def fills_up(path, write):
        if path == point and path.exists():  # epoch 1's point fits; epoch 2's finds the disk full
            def write_then_fail(f):
                f.write(b"x" * 4096)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(path, write_then_fail)
        return real(path, write)
    monkeypatch.setattr(checkpoints, "atomic_write", fills_up)
    with pytest.raises(resume_lib.ResumeError, match="after epoch 2: no space left on device; free some disk") as e:
        run(tmp_path, "full")
    assert str(tmp_path) not in str(e.value)
    assert torch.load(point, weights_only=True)["epoch"] == 1  # the last good point is whole
    assert [p.name for p in point.parent.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("averaging", [{}, {"swa": True, "init": checkpoints.SHIPPED_DIR / "mlp_1200-sample.pt"}],
                         ids=["plain", "swa"])
def test_a_resumed_teacher_ends_exactly_where_an_uninterrupted_one_does(sample, tmp_path, averaging):
    """train-teacher --resume: Hinton's teacher trains for hundreds of epochs, so an interrupted
    training carries on from its last epoch (mlp_1200's dropout, shifts and max-norm included, and
    with --swa the running mean of the weights)."""
    if "init" in averaging:
        averaging = {**averaging, "init": checkpoints.load(averaging["init"])}
    kwargs = dict(epochs=2, lr=0.005, batch_size=256, augment="shift2", max_norm=2.0, **averaging)
    whole, whole_acc = train.train_teacher("mlp_1200", sample, resume=resume_lib.ResumePoint(tmp_path / "whole.pt"),
                                           **kwargs)
    point = tmp_path / "cut.pt"
    with pytest.raises(train.Cancelled):  # stopped at the first step after epoch 1's point
        train.train_teacher("mlp_1200", sample, resume=resume_lib.ResumePoint(point), should_stop=point.exists,
                            **kwargs)
    events = []
    resumed, acc = train.train_teacher("mlp_1200", sample, resume=resume_lib.ResumePoint(point), emit=events.append,
                                       **kwargs)
    assert [e["epoch"] for e in events if e["type"] == "teacher_epoch"] == [2]  # epoch 1 was not trained again
    a, b = whole.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a) and acc == whole_acc
    with pytest.raises(resume_lib.ResumeError, match="other settings"):  # a point from other settings
        train.train_teacher("mlp_1200", sample, resume=resume_lib.ResumePoint(point), **{**kwargs, "max_norm": 3.0})


def test_a_point_made_from_another_teacher_is_refused(tmp_path, sample, shipped_teacher):
    """A retrained teacher checkpoint under the same settings must not resume the old teacher's students."""
    config = RunConfig(epochs=1, train_fraction=0.05)
    point = resume_lib.ResumePoint(tmp_path / "resume.pt")
    first = train.distill(config, [shipped_teacher], sample, resume=point)
    retrained = copy.deepcopy(shipped_teacher)
    with torch.no_grad():
        next(retrained.parameters()).add_(1e-3)
    with pytest.raises(resume_lib.ResumeError, match="made from an earlier version of its teacher"):
        train.distill(config, [retrained], sample, resume=point)
    events = []
    again = train.distill(config, [shipped_teacher], sample, resume=point, emit=events.append)  # the same teacher
    assert not [e for e in events if e["type"] == "step"] and again.metrics["student_acc"] == first.metrics["student_acc"]
