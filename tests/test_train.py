"""Real, short runs on the bundled MNIST sample."""
import pytest
import torch

from kdapp import checkpoints
from kdapp.training import resume as resume_lib, teachers, train
from kdapp.config import RunConfig
from kdapp.losses import teacher_log_probs


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_the_kd_student_is_the_same_with_or_without_its_baseline(sample, shipped_teacher):
    """The reproduction's temperature sweep trains the KD student alone and borrows the seed table's
    baseline: that is honest only if training the baseline beside it changes nothing of the student."""
    config = RunConfig(data="sample", epochs=1, train_fraction=0.05, batch_size=32, augment=True)
    both = train.distill(config, [shipped_teacher], sample).student.state_dict()
    alone = train.distill(config.replace(baseline=False), [shipped_teacher], sample).student.state_dict()
    assert all(torch.equal(both[k], alone[k]) for k in both)


def test_cached_teacher_logits_equal_a_direct_pass(sample, shipped_teacher):
    x = sample.train_x[:2000]
    cached = teachers.cached_logits(("test", "aligned"), shipped_teacher, x)
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(3))[:50]
    with torch.no_grad():
        direct = shipped_teacher(x[idx])
    torch.testing.assert_close(cached[idx], direct, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(teacher_log_probs(cached[idx], 4.0), teacher_log_probs(direct, 4.0),
                               rtol=1e-4, atol=1e-4)


class NextDigitTeacher(torch.nn.Module):
    """The shipped teacher with its classes rolled by one: it reads a 3 as "4", a 9 as "0". A student
    that learns only from its cached soft targets (alpha = 1) learns that rolled mapping if, and
    only if, every digit of every batch is given the teacher's answer for that same digit."""

    def __init__(self, teacher):
        super().__init__()
        self.teacher = teacher

    def forward(self, x):
        return self.teacher(x).roll(1, dims=1)


def test_distill_gives_each_digit_the_teachers_soft_target_for_that_digit(sample):
    # A subset (train_fraction), a class left out and shuffled batches: every indexing step distill
    # takes between the cached targets and a batch. Targets shifted by one digit teach noise.
    # The shipped lenet5 (97.95%, 61k parameters) teaches: a cheap pass over the split.
    lenet5, _ = checkpoints.load(checkpoints.teacher_path(checkpoints.SHIPPED_DIR, "lenet5", "sample"))
    config = RunConfig(data="sample", epochs=1, alpha=1.0, train_fraction=0.3, omit_class=7, batch_size=32,
                       lr=0.005, augment=False)
    result = train.distill(config, [NextDigitTeacher(lenet5)], sample)
    seen = sample.test_y != 7
    x, y = sample.test_x[seen], sample.test_y[seen]
    with torch.no_grad():
        student, baseline = result.student(x).argmax(1), result.baseline(x).argmax(1)
    assert (student == (y + 1) % 10).float().mean() > 0.8   # the teacher's rolled answers (90%; shifted by one digit: 9%)
    assert (baseline == y).float().mean() > 0.8             # the same batches' labels
    assert result.metrics["teacher_acc"] < 0.05


@pytest.mark.slow
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


def test_an_architecture_named_twice_is_two_networks(tmp_path):
    """Hinton et al. 2015's ensemble of separately trained nets: a run naming mlp_30 twice loads the shipped
    one and trains copy 2 with the next seed, saves it as mlp_30-sample-copy2.pt, and a later run loads it."""
    config = RunConfig(data="sample", teacher="mlp_30", extra_teachers=("mlp_30",), teacher_epochs=1, epochs=1,
                       train_fraction=0.05, baseline=False, seed=3)
    assert config.teacher_copies == (("mlp_30", 1), ("mlp_30", 2))
    assert RunConfig(teacher="lenet5", extra_teachers=("mlp_30", "lenet5", "lenet5")).teacher_copies == \
        (("lenet5", 1), ("mlp_30", 1), ("lenet5", 2), ("lenet5", 3))
    said = []
    first = train.run(config, emit=said.append, runs_dir=tmp_path)
    copy2 = tmp_path / "teachers" / "mlp_30-sample-copy2.pt"
    model, meta = checkpoints.load(copy2)
    assert meta["config"]["seed"] == 4 and meta["data"] == "sample"
    shipped = checkpoints.load(checkpoints.SHIPPED_DIR / "mlp_30-sample.pt")[0]
    assert not torch.equal(model.fc1.weight, shipped.fc1.weight)  # another network, not the shipped one again
    assert len(first.metrics["teacher_accs"]) == 2 and first.metrics["targets_readings"] == 2
    said.clear()
    again = train.run(config, emit=said.append, runs_dir=tmp_path)
    messages = [e.get("message", "") for e in said if e["type"] == "phase"]
    assert "teacher mlp_30 from mlp_30-sample.pt" in messages
    assert "teacher mlp_30 from mlp_30-sample-copy2.pt" in messages
    assert not any(m.startswith("training mlp_30") for m in messages)  # nothing trained the second time
    assert again.metrics["teacher_accs"] == first.metrics["teacher_accs"]


def test_teacher_training_learns(sample):
    model, acc = train.train_teacher("mlp_30", sample, epochs=3, lr=0.005, batch_size=128)
    assert acc > 0.8 and not model.training  # chance is 0.10


def test_weight_averaging_returns_the_mean_of_the_weights_after_each_epoch(sample, tmp_path):
    """train-teacher --swa: at a constant learning rate the first k epochs of a run are the same
    whatever its length, so k-epoch runs' resume points hold the weights after each epoch of the
    3-epoch run; what it returns must be their mean, computed here independently."""
    init = checkpoints.SHIPPED_DIR / "mlp_30-sample.pt"
    kwargs = dict(lr=0.003, batch_size=256, init=checkpoints.load(init), swa=True)
    after = []
    for k in (1, 2, 3):
        point = resume_lib.ResumePoint(tmp_path / f"{k}.pt")
        averaged, acc = train.train_teacher("mlp_30", sample, k, resume=point, **kwargs)
        after.append(torch.load(point.path, weights_only=True)["kd_model"])  # the raw weights, not the mean
    for name, value in averaged.state_dict().items():
        torch.testing.assert_close(value, sum(w[name] for w in after) / 3, rtol=0, atol=1e-6)
    assert not torch.equal(averaged.state_dict()["fc1.weight"], after[-1]["fc1.weight"])
    assert acc == teachers.evaluate(averaged, sample.test_x, sample.test_y) and not averaged.training
    # At a rate of 0 the weights never move: what comes back is --init's model, bit for bit.
    still, _ = train.train_teacher("mlp_30", sample, 1, **{**kwargs, "lr": 0.0})
    start = checkpoints.load(init)[0].state_dict()
    assert all(torch.equal(still.state_dict()[k], start[k]) for k in start)


def test_init_must_hold_the_same_architecture_and_data(sample):
    with pytest.raises(ValueError, match="holds architecture mlp_30, not mlp_800"):
        train.train_teacher("mlp_800", sample, 1, init=checkpoints.load(checkpoints.SHIPPED_DIR / "mlp_30-sample.pt"))
    with pytest.raises(ValueError, match="trained on 'mnist' data, not 'sample'"):  # it has seen the sample's test digits
        train.train_teacher("mlp_1200", sample, 1, init=checkpoints.load(checkpoints.SHIPPED_DIR / "mlp_1200-mnist.pt"))


@pytest.mark.slow
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


@pytest.mark.slow
def test_teacher_logits_are_cached_on_disk_for_the_next_process(sample, shipped_teacher, tmp_path, monkeypatch):
    calls = []
    real_pass = teachers.teacher_pass

    def counting_pass(teacher, x, should_stop=None, transform=None):
        calls.append(len(x))
        return real_pass(teacher, x, transform=transform)
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


def test_shift_augmentation_keeps_the_cached_soft_targets(sample, shipped_teacher, monkeypatch):
    """--augment (the default): both students train on the same shifted batch, and the soft targets
    are the teacher's cached answers for those digits unshifted; the teacher never runs per batch."""
    from kdapp import data as data_lib
    shifted, targets = [], []
    from kdapp.training import targets as targets_lib
    real_shift, real_loss = data_lib.random_shift, targets_lib.distillation_loss
    monkeypatch.setattr(data_lib, "random_shift", lambda x, generator=None: shifted.append(real_shift(
        x, generator=generator)) or shifted[-1])
    monkeypatch.setattr(targets_lib, "distillation_loss", lambda logits, t, *a, **k: targets.append(t) or real_loss(
        logits, t, *a, **k))
    teacher_inputs = []
    teacher = type(shipped_teacher)()
    teacher.load_state_dict(shipped_teacher.state_dict())
    teacher.eval()
    teacher.register_forward_pre_hook(lambda module, args: teacher_inputs.append(len(args[0])))
    small = data_lib.Dataset(sample.train_x[:256], sample.train_y[:256], sample.test_x[:200], sample.test_y[:200],
                             "sample")
    config = RunConfig(epochs=1, batch_size=64, augment=True, train_fraction=1.0)
    train.distill(config, [teacher], small)

    assert len(shifted) == 4 and not any(n == 64 for n in teacher_inputs), "the teacher ran on a training batch"
    # The targets are the cached log-probabilities of the unshifted digits, row for row.
    generator = torch.Generator().manual_seed(config.seed)
    subset = torch.randperm(256, generator=generator)
    cached = teacher_log_probs([teachers.predict_logits(teacher, small.train_x)], config.temperature)
    for batch, target in zip(train.distributed.epoch_batches(256, 64, generator, "cpu"), targets):
        assert torch.allclose(target, cached[subset][batch], atol=1e-5)
    for x in shifted:  # a shifted batch is not the raw digits
        assert not any(torch.equal(x[0], raw) for raw in small.train_x)


def test_channels_last_students_compute_the_same_function(sample):
    """channels_last changes only the memory layout: the same logits (to float rounding) and a
    state_dict that a plain model loads."""
    from kdapp.models import build
    torch.manual_seed(0)
    plain = build("seed_student").eval()
    fast = train.channels_last(build("seed_student"))
    fast.load_state_dict(plain.state_dict())
    fast.eval()
    x = sample.test_x[:500]
    with torch.no_grad():
        assert torch.allclose(plain(x), fast(x), atol=1e-4)
    assert fast.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    again = build("seed_student")
    again.load_state_dict(fast.state_dict())
    with torch.no_grad():
        assert torch.allclose(again.eval()(x), plain(x), atol=1e-4)
