"""KD and feature losses against hand computations in float64 numpy."""
import numpy as np
import pytest
import torch

from kdapp.losses import attention_loss, hint_loss, kd_loss, kd_loss_parts, teacher_log_probs


def np_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def hand_kd(s, t, y, T, alpha):
    p, q = np_softmax(t / T), np_softmax(s / T)
    kl = np.sum(p * (np.log(p) - np.log(q))) / len(s)   # batchmean: sum over classes, mean over N
    ce = -np.mean(np.log(np_softmax(s)[np.arange(len(y)), y]))
    return alpha * T * T * kl + (1 - alpha) * ce, T * T * kl, ce


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 10, generator=g) * 3, torch.randn(8, 10, generator=g) * 3
    y = torch.randint(0, 10, (8,), generator=g)
    return s.double(), t.double(), y


@pytest.mark.parametrize("T,alpha", [(1.0, 0.5), (4.0, 0.7), (20.0, 0.9), (0.5, 0.3)])
def test_kd_loss_matches_hand_computation(logits, T, alpha):
    s, t, y = logits
    total, soft, hard = kd_loss_parts(s, t, y, T, alpha)
    want_total, want_soft, want_hard = hand_kd(s.numpy(), t.numpy(), y.numpy(), T, alpha)
    assert total.item() == pytest.approx(want_total, rel=1e-10)
    assert soft.item() == pytest.approx(want_soft, rel=1e-10)
    assert hard.item() == pytest.approx(want_hard, rel=1e-10)
    assert kd_loss(s, t, y, T, alpha).item() == pytest.approx(want_total, rel=1e-10)


def test_alpha_zero_is_cross_entropy_and_alpha_one_is_scaled_kl(logits):
    s, t, y = logits
    _, soft, ce = hand_kd(s.numpy(), t.numpy(), y.numpy(), 4.0, 0.0)
    assert kd_loss(s, t, y, 4.0, 0.0).item() == pytest.approx(ce, rel=1e-10)
    assert kd_loss(s, t, y, 4.0, 1.0).item() == pytest.approx(soft, rel=1e-10)


def test_identical_logits_give_zero_soft_loss(logits):
    s, _, y = logits
    assert kd_loss_parts(s, s.clone(), y, 3.0, 0.5).soft.item() == pytest.approx(0.0, abs=1e-12)


def test_extreme_logits_stay_finite_with_finite_gradients():
    s = torch.tensor([[1e4, -1e4, 0.0, 5e3, -5e3, 1, 2, 3, 4, 5.0]] * 4, requires_grad=True)
    t = torch.tensor([[-1e4, 1e4, 0.0, -5e3, 5e3, 5, 4, 3, 2, 1.0]] * 4)
    y = torch.tensor([0, 1, 2, 3])
    loss = kd_loss(s, t, y, temperature=0.5, alpha=0.7)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    # The seed's softmax_with_temperature = exp(z/T) / sum overflows on exactly this input.
    with np.errstate(over="ignore", invalid="ignore"):
        seed = np.exp(t.numpy() / 0.5) / np.exp(t.numpy() / 0.5).sum(1, keepdims=True)
    assert not np.isfinite(seed).all()


@pytest.mark.parametrize("T,alpha", [(0, 0.5), (-1, 0.5), (float("nan"), 0.5), (float("inf"), 0.5),
                                     (2, -0.1), (2, 1.1), (2, float("nan"))])
def test_invalid_hyperparameters_are_refused(logits, T, alpha):
    s, t, y = logits
    with pytest.raises(ValueError):
        kd_loss(s, t, y, T, alpha)


def test_multi_teacher_averages_probabilities_not_logits(logits):
    s, t, _ = logits
    t2 = -t
    got = teacher_log_probs([t, t2], 2.0).exp().numpy()
    want = (np_softmax(t.numpy() / 2) + np_softmax(t2.numpy() / 2)) / 2
    np.testing.assert_allclose(got, want, rtol=1e-12)
    averaged_logits = np_softmax((t.numpy() + t2.numpy()) / 2 / 2)
    assert not np.allclose(got, averaged_logits)


def test_hint_loss_is_mean_squared_error():
    a, b = torch.randn(3, 4, 5, 5, dtype=torch.float64), torch.randn(3, 4, 5, 5, dtype=torch.float64)
    want = ((a.numpy() - b.numpy()) ** 2).mean()
    assert hint_loss(a, b).item() == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError, match="adapt"):
        hint_loss(a, b[:, :2])


def test_attention_loss_matches_hand_computation():
    g = torch.Generator().manual_seed(1)
    fs, ft = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64), torch.randn(2, 5, 4, 4, generator=g, dtype=torch.float64)

    def att(f):
        a = (np.abs(f) ** 2).sum(axis=1).reshape(len(f), -1)
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    want = ((att(fs.numpy()) - att(ft.numpy())) ** 2).sum(axis=1).mean()
    assert attention_loss(fs, ft).item() == pytest.approx(want, rel=1e-12)
    assert attention_loss(ft, ft).item() == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError, match="MLP"):
        attention_loss(torch.randn(2, 8), torch.randn(2, 8))


def test_attention_loss_resizes_the_students_map():
    big, small = torch.rand(2, 3, 8, 8), torch.rand(2, 4, 4, 4)
    assert torch.isfinite(attention_loss(big, small))
    assert torch.isfinite(attention_loss(small, big))
