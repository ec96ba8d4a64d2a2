"""Real, short runs on the bundled MNIST sample."""
import pytest
import torch

from kdapp import teachers, train
from kdapp.config import RunConfig
from kdapp.losses import teacher_log_probs


def test_short_distillation_beats_chance_by_far(sample, shipped_teacher):
    config = RunConfig(data="sample", epochs=2, train_fraction=0.5, batch_size=64, lr=0.005)
    events = []
    result = train.distill(config, [shipped_teacher], sample, emit=events.append)
    m = result.metrics
    assert m["teacher_acc"] > 0.985  # the shipped teacher meets its target
    assert m["student_acc"] > 0.90 and m["baseline_acc"] > 0.85  # chance is 0.10; ~0.95 seen
    steps = [e for e in events if e["type"] == "step"]
    assert steps and all(e["baseline"] is not None and e["soft"] >= 0 for e in steps)
    assert [e["epoch"] for e in events if e["type"] == "epoch"] == [0, 1, 2]
    assert steps[-1]["step"] == steps[-1]["steps"] and steps[-1]["eta_s"] == 0
    assert not shipped_teacher.training  # the teacher stays in eval mode throughout


def test_alpha_zero_makes_the_kd_student_identical_to_its_baseline(sample, shipped_teacher):
    """With alpha = 0 the KD loss is plain CE, so a student with the same initial weights and the
    same batches must end exactly where the baseline does: a check on both claims at once."""
    config = RunConfig(data="sample", epochs=1, alpha=0.0, train_fraction=0.05, batch_size=32)
    result = train.distill(config, [shipped_teacher], sample)
    for a, b in zip(result.student.state_dict().values(), result.baseline.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    config = RunConfig(data="sample", epochs=1, alpha=0.5, train_fraction=0.05, batch_size=32)
    result = train.distill(config, [shipped_teacher], sample)
    assert not torch.allclose(result.student.fc2.weight, result.baseline.fc2.weight)


def test_cached_teacher_targets_are_index_aligned(sample, shipped_teacher):
    x = sample.train_x
    cached = teachers.cached_logits(("test", "aligned"), shipped_teacher, x)
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(3))[:50]
    with torch.no_grad():
        direct = shipped_teacher(x[idx])
    torch.testing.assert_close(cached[idx], direct, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(teacher_log_probs(cached[idx], 4.0), teacher_log_probs(direct, 4.0),
                               rtol=1e-4, atol=1e-4)


def test_feature_losses_and_multi_teacher_train(sample, shipped_teacher):
    lenet = train.train_teacher("lenet5", sample, epochs=1, batch_size=128)[0]
    for kind, weight in (("hint", 1.0), ("attention", 50.0)):
        config = RunConfig(data="sample", epochs=1, train_fraction=0.1, feature_loss=kind,
                           feature_weight=weight, baseline=False, alpha_end=0.2, clip_grad_norm=5.0)
        result = train.distill(config, [shipped_teacher], sample)
        assert result.baseline is None and result.metrics["student_acc"] > 0.5
    config = RunConfig(data="sample", epochs=1, train_fraction=0.1, extra_teachers=("lenet5",))
    result = train.distill(config, [shipped_teacher, lenet], sample)
    assert len(result.metrics["teacher_accs"]) == 2 and result.metrics["student_acc"] > 0.5


def test_teacher_training_learns(sample):
    model, acc = train.train_teacher("mlp_30", sample, epochs=3, lr=0.005, batch_size=128)
    assert acc > 0.8 and not model.training  # chance is 0.10


def test_stop_request_raises_cancelled(sample, shipped_teacher):
    calls = []

    def stop_after_ten():
        calls.append(1)
        return len(calls) > 10
    with pytest.raises(train.Cancelled):
        train.distill(RunConfig(data="sample", epochs=3), [shipped_teacher], sample,
                       should_stop=stop_after_ten)


def test_run_records_its_data_and_saves_students(tmp_path):
    config = RunConfig(data="sample", epochs=1, train_fraction=0.1)
    result = train.run(config, runs_dir=tmp_path)
    assert result.metrics["data"] == "sample" and result.metrics["device"] == "cpu"
    from kdapp import checkpoints
    _, meta = checkpoints.load(result.paths["student"])
    assert meta["data"] == "sample" and meta["config"]["temperature"] == 4.0
    assert meta["metrics"]["student_acc"] == result.metrics["student_acc"]


def test_device_override_is_validated():
    assert train.pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            train.pick_device("cuda")


def test_teacher_logits_are_cached_on_disk_for_the_next_process(sample, shipped_teacher, tmp_path, monkeypatch):
    calls = []
    real_pass = teachers.teacher_pass

    def counting_pass(teacher, x, should_stop=None):
        calls.append(len(x))
        return real_pass(teacher, x)
    monkeypatch.setattr(teachers, "teacher_pass", counting_pass)
    monkeypatch.setattr(teachers, "_LOGIT_CACHE", {})
    key = ("disk", "test")
    first = teachers.cached_logits(key, shipped_teacher, sample.test_x, cache_dir=tmp_path)
    monkeypatch.setattr(teachers, "_LOGIT_CACHE", {})  # a fresh process
    second = teachers.cached_logits(key, shipped_teacher, sample.test_x, cache_dir=tmp_path)
    assert calls == [2000] and torch.equal(first, second)
    for path in tmp_path.iterdir():
        path.write_bytes(b"corrupt")
    monkeypatch.setattr(teachers, "_LOGIT_CACHE", {})
    third = teachers.cached_logits(key, shipped_teacher, sample.test_x, cache_dir=tmp_path)
    assert calls == [2000, 2000] and torch.equal(first, third)
