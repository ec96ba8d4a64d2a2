"""The articles' remaining techniques (kdapp.training.techniques), each against a hand computation,
then in short real runs on the sample."""
import argparse
import math

import numpy as np
import pytest
import torch

from kdapp import cli
from kdapp.config import RunConfig
from kdapp.training import teachers, train
from kdapp.models import build
from kdapp.training.features import FeatureDistiller
from kdapp.training.techniques import (CurriculumTemperature, Discriminator, TemperatureSchedule, adversarial_loss,
                                       collapse_loss, difficulty, grad_reverse, max_norm_, mutual_loss,
                                       scheduled_temperature)


def np_log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


# ---- temperature schedules ----
@pytest.mark.parametrize("schedule,step,want", [
    ("constant", 5, 8.0),
    ("linear", 0, 8.0), ("linear", 5, 5.0), ("linear", 10, 2.0),       # 8 + (2 - 8) * 5/10
    ("cosine", 0, 8.0), ("cosine", 5, 5.0), ("cosine", 10, 2.0),       # the midpoint of a cosine is the mean
    ("cosine", 2, 2.0 + 6.0 * (1 + math.cos(math.pi * 0.2)) / 2),      # 7.427...
])
def test_schedules_match_their_formulas(schedule, step, want):
    assert scheduled_temperature(schedule, 8.0, 2.0, step, 11) == pytest.approx(want, rel=1e-12)


def test_the_difficulty_ramps_from_0_to_1_over_the_first_half():
    assert difficulty(0, 100) == 0.0
    assert difficulty(25, 100) == pytest.approx(0.5)  # cos(pi/2) = 0
    assert difficulty(50, 100) == difficulty(99, 100) == 1.0


def test_grad_reverse_is_the_identity_forwards_and_flips_the_gradient():
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = grad_reverse(x, 0.5)
    assert torch.equal(y, x)
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert x.grad.tolist() == [-0.5, -1.0, -1.5]


def test_the_learned_temperature_starts_where_asked_stays_in_range_and_climbs_the_loss():
    """T = low + (high - low) sigmoid(theta): dT/dtheta = (high - low) s (1 - s) by hand; behind the
    GRL with scale lam the gradient theta receives is -lam times that."""
    t = CurriculumTemperature(start=4.0, low=1.0, high=8.0)
    T = t(0.7)
    assert T.item() == pytest.approx(4.0, rel=1e-6)
    T.backward()
    s = (4.0 - 1.0) / 7.0
    assert t.theta.grad.item() == pytest.approx(-0.7 * 7.0 * s * (1 - s), rel=1e-5)
    with torch.no_grad():
        t.theta.fill_(100.0)
    assert t(1.0).item() == pytest.approx(8.0)  # bounded, however far theta goes


def test_ctkd_range_is_between_t_and_t_end_or_the_whole_slider():
    config = RunConfig(temperature_schedule="ctkd", temperature=4.0, temperature_end=1.0)
    t = TemperatureSchedule(config, 10, "cpu").learned
    assert (t.low, t.high) == (1.0, 4.0)
    t = TemperatureSchedule(RunConfig(temperature_schedule="ctkd"), 10, "cpu").learned
    assert (t.low, t.high) == (0.5, 20.0)


# ---- mutual learning ----
def test_mutual_loss_matches_hand_computation():
    g = torch.Generator().manual_seed(1)
    z, peer = torch.randn(6, 10, generator=g, dtype=torch.float64) * 3, torch.randn(6, 10, generator=g,
                                                                                    dtype=torch.float64) * 3
    y = torch.randint(0, 10, (6,), generator=g)
    T, alpha = 3.0, 0.6
    p, log_q = np_log_softmax(peer.numpy() / T), np_log_softmax(z.numpy() / T)
    kl = (np.exp(p) * (p - log_q)).sum() / 6
    ce = -np_log_softmax(z.numpy())[np.arange(6), y.numpy()].mean()
    got = mutual_loss(z.requires_grad_(), peer.requires_grad_(), y, T, alpha)
    assert got.item() == pytest.approx(alpha * T * T * kl + (1 - alpha) * ce, rel=1e-10)
    got.backward()
    assert peer.grad is None  # the peer's side is held fixed


# ---- Hinton 2012's max-norm constraint (the Hinton 2015 teacher's recipe) ----
def test_max_norm_projects_long_rows_onto_the_ball_and_leaves_short_ones_and_the_output_layer():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[3.0, 4.0], [0.6, 0.8]]))   # norms 5 and 1
        model[2].weight.copy_(torch.tensor([[30.0, 40.0], [0.0, 0.0]]))  # the output layer: free
    max_norm_(model, 2.0)
    # by hand: row 1 is scaled by 2/5 to (1.2, 1.6); row 2 (norm 1 <= 2) is untouched
    assert torch.allclose(model[0].weight, torch.tensor([[1.2, 1.6], [0.6, 0.8]]))
    assert torch.equal(model[2].weight, torch.tensor([[30.0, 40.0], [0.0, 0.0]]))
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 2), torch.nn.Flatten(), torch.nn.Linear(2, 1))
    with torch.no_grad():
        conv[0].weight.fill_(2.0)  # each filter: 4 weights of 2, norm 4
    max_norm_(conv.to(memory_format=torch.channels_last), 1.0)  # a channels_last conv is scaled in place too
    assert torch.allclose(conv[0].weight, torch.full((2, 1, 2, 2), 0.5))


def test_the_hinton_teacher_drops_pixels_and_hidden_units_in_training_only():
    teacher = build("mlp_1200")
    assert (teacher.input_dropout.p, teacher.dropout.p) == (0.2, 0.5)  # Hinton et al. 2012's rates
    x = torch.randn(4, 1, 28, 28)
    teacher.eval()
    assert torch.equal(teacher(x), teacher(x))
    teacher.train()
    assert not torch.equal(teacher(x), teacher(x))


# ---- the feature regularisers ----
def test_collapse_loss_by_hand_and_zero_for_whitened_features():
    four = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
    # mean 0, Cov = diag(2/3, 2/3) (n - 1 = 3): ||Cov - I||^2 = 2 (1/3)^2
    assert collapse_loss(four).item() == pytest.approx(2 / 9, rel=1e-12)
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(200, 5, generator=g, dtype=torch.float64) @ torch.randn(5, 5, generator=g, dtype=torch.float64)
    centred = raw - raw.mean(0)
    values, vectors = torch.linalg.eigh(centred.T @ centred / 199)
    whitened = centred @ vectors @ torch.diag(values.rsqrt()) @ vectors.T  # ZCA: Cov = I
    assert collapse_loss(whitened).item() == pytest.approx(0.0, abs=1e-18 ** 0.5)
    assert collapse_loss(raw).item() > 1.0
    # a conv map: every position is a sample of its channels
    maps = torch.randn(3, 4, 2, 2, generator=g, dtype=torch.float64)
    assert collapse_loss(maps).item() == pytest.approx(collapse_loss(maps.permute(0, 2, 3, 1).reshape(12, 4)).item())


def test_the_reversed_gradient_reaches_the_student_with_the_opposite_sign():
    """adversarial_loss's gradient on the student's features is minus the gradient of the same two
    BCE terms without the reversal layer, while the discriminator gets the plain gradient."""
    torch.manual_seed(0)
    critic = Discriminator(6)
    student = torch.randn(5, 6, requires_grad=True)
    teacher = torch.randn(5, 6)
    adversarial_loss(critic, student, teacher).backward()
    reversed_grad, critic_grad = student.grad.clone(), critic.net[0].weight.grad.clone()
    student.grad, critic.net[0].weight.grad = None, None
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    real, fake = critic(teacher), critic(student)
    (bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake))).backward()
    assert reversed_grad.abs().sum() > 0
    torch.testing.assert_close(reversed_grad, -student.grad)
    torch.testing.assert_close(critic_grad, critic.net[0].weight.grad)


def test_the_distiller_reports_its_regularisers_on_the_adapted_features():
    distiller = FeatureDistiller("hint", (3, 6, 6), (4, 6, 6), collapse=True, adversarial=True)
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(8, 3, 6, 6, generator=g), torch.randn(8, 4, 6, 6, generator=g)
    loss, terms = distiller.forward_terms(student, teacher)
    adapted, _ = distiller.adapter(student, teacher)
    assert set(terms) == {"collapse", "adversarial"}
    assert terms["collapse"].item() == pytest.approx(collapse_loss(adapted).item(), rel=1e-5)
    assert distiller(student, teacher).item() == pytest.approx(loss.item(), rel=1e-6)
    with pytest.raises(ValueError, match="adapter"):
        FeatureDistiller("attention", (3, 6, 6), (4, 6, 6), adversarial=True)


# ---- settings ----
@pytest.mark.parametrize("settings,message", [
    (dict(temperature_schedule="linear"), "temperature_end"),
    (dict(joint_epochs=2, teacher="self"), "pretrained teacher"),
    (dict(teacher="mutual", feature_loss="hint"), "logits only"),
    (dict(collapse_weight=0.1), "pick a feature loss"),
    (dict(adversarial_weight=0.1, feature_loss="attention"), "hint or gram"),
    (dict(teacher_shifts=1, consistent=True), "shift ensemble"),
    (dict(teacher_shifts=2, teacher="mutual"), "shift ensemble"),
    (dict(teacher_shifts=1, joint_epochs=2), "shift ensemble"),
    (dict(teacher_shifts=1, feature_loss="hint"), "shift ensemble"),
    (dict(teacher_shifts=1, teacher="self"), "shift ensemble"),
    (dict(teacher_shifts=1, teacher="self", self_distill="deep"), "shift ensemble"),
])
def test_combinations_that_cannot_work_are_refused_with_a_sentence(settings, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(**settings)


def test_every_technique_is_a_cli_option():
    parser = argparse.ArgumentParser()
    cli.add_run_options(parser)
    parse = lambda *argv: cli.config_from_args(parser.parse_args(list(argv)))
    config = parse("--temperature-schedule", "cosine", "--temperature-end", "2", "--feature-loss", "hint",
                   "--collapse-weight", "0.01", "--adversarial-weight", "0.5")
    assert (config.temperature_schedule, config.temperature_end, config.collapse_weight,
            config.adversarial_weight) == ("cosine", 2.0, 0.01, 0.5)
    assert parse("--joint-epochs", "3").joint_epochs == 3
    assert parse("--teacher", "mutual").teacher == "mutual"
    assert parse("--teacher-shifts", "2").teacher_shifts == 2


# ---- the shift ensemble as the teacher ----
def test_shift_ensemble_targets_match_a_hand_computation(sample):
    """log of the mean over the 9 offsets of softmax(W·shifted(x) + b)/T), in float64 numpy, with
    the shifts made pixel by pixel: what the engine's cached readings and teacher_log_probs give."""
    from types import SimpleNamespace

    from kdapp.data import MNIST_MEAN, MNIST_STD
    from kdapp.losses import teacher_log_probs
    from kdapp.training.targets import cached_teacher_logits

    torch.manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    x = sample.train_x[:6]
    dataset = SimpleNamespace(train_x=x, train_y=sample.train_y[:6])
    subset = torch.tensor([4, 0, 2])  # the run's digits, in its order
    phases = []
    logits = cached_teacher_logits(RunConfig(teacher_shifts=1), [teacher], None, dataset, subset,
                                   phases.append, lambda: False, None)
    assert len(logits) == 9 and "each read at 9 shifts" in phases[0]["message"]
    T = 4.0
    got = teacher_log_probs(logits, T).numpy()
    # cached under a key: each offset its own entry, the unmoved one the plain key (a second call reads them)
    for _ in range(2):
        keyed = cached_teacher_logits(RunConfig(teacher_shifts=1), [teacher], [("hand", "shift-test")], dataset,
                                      subset, phases.append, lambda: False, None)
        assert all(torch.equal(a, b) for a, b in zip(keyed, logits))
    cached = [k for k in teachers._LOGIT_CACHE if k[:2] == ("hand", "shift-test")]
    assert len(cached) == 9 and ("hand", "shift-test") in cached

    W, b = (p.detach().double().numpy() for p in teacher[1].parameters())
    background = (0 - MNIST_MEAN) / MNIST_STD
    images = x[:, 0].double().numpy()
    probs = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            moved = np.full_like(images, background)
            for i in range(28):
                for j in range(28):
                    if 0 <= i - dy < 28 and 0 <= j - dx < 28:
                        moved[:, i, j] = images[:, i - dy, j - dx]
            z = (moved[subset.numpy()].reshape(3, 784) @ W.T + b) / T
            probs.append(np.exp(np_log_softmax(z)))
    np.testing.assert_allclose(got, np.log(np.mean(probs, axis=0)), atol=1e-5)
    # radius 0 is the teacher as it is: one reading
    assert len(cached_teacher_logits(RunConfig(), [teacher], None, dataset, subset, phases.append,
                                     lambda: False, None)) == 1


def test_the_ensemble_s_test_answers_match_a_hand_computation(sample):
    """A run taught by a shift ensemble reports the ensemble's own test accuracy and each student's
    agreement with it (train.ensemble_metrics): checked against the mean of softmax((W·shifted(x) + b)/T)
    over the 9 offsets, in float64 numpy, at the run's T as the targets average them. One reading
    reports nothing. Keyed, the test readings are cached apart from the training ones."""
    from types import SimpleNamespace

    from kdapp.data import shift
    from kdapp.training.targets import cached_teacher_logits, ensemble_test_log_probs

    torch.manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    x, y = sample.test_x[:50], sample.test_y[:50]
    dataset = SimpleNamespace(test_x=x, test_y=y)
    W, b = (p.detach().double().numpy() for p in teacher[1].parameters())
    T = 3.0
    probs = [np.exp(np_log_softmax((shift(x, dy, dx).reshape(50, 784).double().numpy() @ W.T + b) / T))
             for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    answer = np.mean(probs, axis=0).argmax(1)
    with torch.no_grad():
        student_answer = student(x).argmax(1).numpy()
    config = RunConfig(teacher_shifts=1, temperature=T)
    result = SimpleNamespace(config=config, student=student, baseline=None)
    phases = []
    got = train.ensemble_metrics(result, [teacher], [None], dataset, emit=phases.append)
    assert got["targets_readings"] == 9 and got["targets_temperature"] == T
    assert "baseline_targets_agreement" not in got
    assert phases[0]["message"] == "reading the test digits as the 9-reading ensemble does"
    assert got["targets_acc"] == pytest.approx((answer == y.numpy()).mean())
    assert got["student_targets_agreement"] == pytest.approx((student_answer == answer).mean())
    assert 0 < got["student_targets_agreement"] < 1  # a random student: the check can fail both ways
    # keyed: the training readings (6 digits) first, then the test ones (50) under their own 9 keys
    key = ("hand", "ensemble-test")
    train_set = SimpleNamespace(train_x=sample.train_x[:6], train_y=sample.train_y[:6])
    cached_teacher_logits(config, [teacher], [key], train_set, torch.arange(6), phases.append, lambda: False, None)
    keyed = ensemble_test_log_probs(config, [teacher], [key], x)
    assert keyed.shape == (50, 10) and torch.allclose(keyed, ensemble_test_log_probs(config, [teacher], [None], x))
    assert len([k for k in teachers._LOGIT_CACHE if k[:3] == (*key, "test")]) == 9
    # two teachers, one reading each: the second teacher here is the student itself
    with torch.no_grad():
        second = np.exp(np_log_softmax(student(x).double().numpy() / T))
    pair = np.mean([probs[4], second], axis=0).argmax(1)  # probs[4]: the unmoved reading
    two = SimpleNamespace(config=RunConfig(extra_teachers=("lenet5",), temperature=T), student=student,
                          baseline=student)
    got = train.ensemble_metrics(two, [teacher, student], [None, None], dataset)
    assert got["targets_readings"] == 2
    assert got["baseline_targets_agreement"] == pytest.approx((student_answer == pair).mean())
    assert train.ensemble_metrics(SimpleNamespace(config=RunConfig(), student=student, baseline=None),
                                  [teacher], [None], dataset) == {}


# ---- short real runs ----
TINY = dict(data="sample", epochs=1, train_fraction=0.05, batch_size=64)
KEY = dict(teacher_keys=[("test", "techniques")])  # the teacher's logits computed once for these tests


@pytest.mark.slow  # ~60 s on the shared 2-core box; a few seconds on a free one
def test_a_schedule_and_ctkd_report_their_temperature_per_step(sample, shipped_teacher):
    events = []
    train.distill(RunConfig(**TINY, temperature=8.0, temperature_end=2.0, temperature_schedule="linear",
                            baseline=False), [shipped_teacher], sample, emit=events.append, **KEY)
    temperatures = [e["temperature"] for e in events if e["type"] == "step"]
    assert temperatures[0] == 8.0 and temperatures[-1] == pytest.approx(2.0)  # T at each logged step
    assert temperatures == sorted(temperatures, reverse=True)
    events = []
    train.distill(RunConfig(**TINY, temperature=4.0, temperature_end=1.0, temperature_schedule="ctkd",
                            baseline=False), [shipped_teacher], sample, emit=events.append, **KEY)
    temperatures = [e["temperature"] for e in events if e["type"] == "step"]
    assert all(1.0 <= t <= 4.0 for t in temperatures) and temperatures[-1] != 4.0  # it learned


@pytest.mark.slow  # ~60 s on the shared 2-core box; a few seconds on a free one
def test_joint_epochs_fine_tune_a_copy_of_the_teacher(sample, shipped_teacher):
    before = [p.clone() for p in shipped_teacher.parameters()]
    events = []
    result = train.distill(RunConfig(**TINY, joint_epochs=1), [shipped_teacher], sample, emit=events.append, **KEY)
    assert [e["epoch"] for e in events if e["type"] == "epoch"] == [0, 1, 2]
    assert all(torch.equal(a, b) for a, b in zip(before, shipped_teacher.parameters()))  # the caller's is untouched
    assert any(not torch.equal(a, b) for a, b in zip(before, result.teacher.parameters()))
    assert result.metrics["teacher_acc"] > 0.9 and not shipped_teacher.training


def test_mutual_learning_trains_two_networks_from_scratch(sample):
    config = RunConfig(**TINY, teacher="mutual", student="mlp_30")
    result = train.train_students(config, [None], sample)
    assert result.metrics["teacher_acc"] > 0.2 and result.metrics["student_acc"] > 0.2  # chance is 0.1
    assert result.baseline is not None  # the student alone, as always
    assert any(not torch.equal(a, b) for a, b in zip(result.teacher.parameters(), result.student.parameters()))


@pytest.mark.slow  # the teacher reads 8,000 digits 9 times
def test_a_shift_ensemble_teacher_trains_a_student(sample, shipped_teacher):
    events = []
    result = train.distill(RunConfig(**TINY, teacher_shifts=1, baseline=False), [shipped_teacher], sample,
                           emit=events.append, **KEY)
    assert any("each read at 9 shifts" in e["message"] for e in events if e["type"] == "phase")
    assert result.metrics["student_acc"] > 0.3


@pytest.mark.slow  # ~60 s on the shared 2-core box; a few seconds on a free one
def test_collapse_and_adversarial_terms_train_and_are_reported(sample, shipped_teacher):
    events = []
    config = RunConfig(**TINY, feature_loss="hint", collapse_weight=0.01, adversarial_weight=0.5, baseline=False)
    result = train.distill(config, [shipped_teacher], sample, emit=events.append)
    parts = [e["parts"] for e in events if e["type"] == "step"]
    assert all(p["collapse"] > 0 and p["adversarial"] > 0 for p in parts)
    assert result.metrics["student_acc"] > 0.3


def test_the_techniques_table_says_plainly_what_does_not_help():
    from kdapp.tools.reproduce.techniques import verdict
    gains = {"KD": [0.010, 0.012, 0.011], "T linear 8→2": [0.011, 0.012, 0.010], "CTKD": [0.030, 0.031, 0.029],
             "mutual": [-0.01, -0.012, -0.011], "KD + hint": [0.01, 0.01, 0.01], "+ collapse": [0.01, 0.011, 0.009]}
    text = verdict(gains)
    assert "Classic KD gains +1.10 points" in text
    assert "Better than their reference by more than the seed-to-seed spread: CTKD (+1.90 vs KD)." in text
    assert "T linear 8→2 (+0.00 vs KD)" in text and "+ collapse (+0.00 vs KD + hint)" in text
    assert "Worse than their reference by more than the spread: mutual (-2.20 vs KD)" in text
    assert "No technique beats" in verdict({"KD": [0.01, 0.012], "CTKD": [0.01, 0.012]})
