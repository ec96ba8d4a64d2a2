"""KD and feature losses against hand computations in float64 numpy."""
import numpy as np
import pytest
import torch

from kdapp.training.features import DeepSupervision, FeatureDistiller, align, teachers_target
from kdapp.config import RunConfig
from kdapp.losses import (FEATURE_LOSSES, LOGIT_LOSSES, attention_loss, distillation_loss, dkd_terms, gram_loss,
                          hint_loss, self_distillation_loss, teacher_log_probs)


def kd_parts(s, t, y, T, alpha):
    """Classic KD from raw teacher logits, as the engine computes it (log-probabilities at T first)."""
    return distillation_loss(s, teacher_log_probs(t, T), y, T, alpha)


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
    total, soft, hard, _ = kd_parts(s, t, y, T, alpha)
    want_total, want_soft, want_hard = hand_kd(s.numpy(), t.numpy(), y.numpy(), T, alpha)
    assert total.item() == pytest.approx(want_total, rel=1e-10)
    assert soft.item() == pytest.approx(want_soft, rel=1e-10)
    assert hard.item() == pytest.approx(want_hard, rel=1e-10)
    assert kd_parts(s, t, y, T, alpha).total.item() == pytest.approx(want_total, rel=1e-10)


def test_alpha_zero_is_cross_entropy_and_alpha_one_is_scaled_kl(logits):
    s, t, y = logits
    _, soft, ce = hand_kd(s.numpy(), t.numpy(), y.numpy(), 4.0, 0.0)
    assert kd_parts(s, t, y, 4.0, 0.0).total.item() == pytest.approx(ce, rel=1e-10)
    assert kd_parts(s, t, y, 4.0, 1.0).total.item() == pytest.approx(soft, rel=1e-10)


def test_identical_logits_give_zero_soft_loss(logits):
    s, _, y = logits
    assert kd_parts(s, s.clone(), y, 3.0, 0.5).soft.item() == pytest.approx(0.0, abs=1e-12)


def test_extreme_logits_stay_finite_with_finite_gradients():
    s = torch.tensor([[1e4, -1e4, 0.0, 5e3, -5e3, 1, 2, 3, 4, 5.0]] * 4, requires_grad=True)
    t = torch.tensor([[-1e4, 1e4, 0.0, -5e3, 5e3, 5, 4, 3, 2, 1.0]] * 4)
    y = torch.tensor([0, 1, 2, 3])
    loss = kd_parts(s, t, y, 0.5, 0.7).total
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    # The seed's softmax_with_temperature = exp(z/T) / sum overflows on exactly this input.
    with np.errstate(over="ignore", invalid="ignore"):
        seed = np.exp(t.numpy() / 0.5) / np.exp(t.numpy() / 0.5).sum(1, keepdims=True)
    assert not np.isfinite(seed).all()


@pytest.mark.parametrize("T,alpha", [(0, 0.5), (-1, 0.5), (float("nan"), 0.5), (float("inf"), 0.5),
                                     (2, -0.1), (2, 1.1), (2, float("nan"))])
def test_invalid_hyperparameters_are_refused(T, alpha):
    with pytest.raises(ValueError, match="temperature|alpha"):
        RunConfig(temperature=T, alpha=alpha)


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


# ---- the logit losses since 2022, each against numpy in float64 ----
def hand_ce(s, y):
    return -np.mean(np.log(np_softmax(s)[np.arange(len(y)), y]))


def hand_dkd_terms(s, t, y, T):
    """Per example: TCKD on [p_y, 1 - p_y], NCKD on the other classes renormalised."""
    p_s, p_t = np_softmax(s / T), np_softmax(t / T)
    tckd, nckd = [], []
    for i, label in enumerate(y):
        b_s = np.array([p_s[i, label], 1 - p_s[i, label]])
        b_t = np.array([p_t[i, label], 1 - p_t[i, label]])
        tckd.append(np.sum(b_t * np.log(b_t / b_s)))
        rest = [k for k in range(s.shape[1]) if k != label]
        q_s, q_t = p_s[i, rest] / p_s[i, rest].sum(), p_t[i, rest] / p_t[i, rest].sum()
        nckd.append(np.sum(q_t * np.log(q_t / q_s)))
    return np.array(tckd), np.array(nckd)


@pytest.mark.parametrize("T,alpha,a,b", [(1.0, 0.5, 1.0, 8.0), (4.0, 0.7, 1.0, 8.0), (2.0, 1.0, 0.5, 2.0)])
def test_dkd_matches_hand_computation(logits, T, alpha, a, b):
    s, t, y = logits
    tckd, nckd = hand_dkd_terms(s.numpy(), t.numpy(), y.numpy(), T)
    parts = distillation_loss(s, teacher_log_probs(t, T), y, T, alpha, "dkd", dkd_alpha=a, dkd_beta=b)
    want_soft = T * T * (a * tckd.mean() + b * nckd.mean())
    assert parts.parts["tckd"].item() == pytest.approx(tckd.mean(), rel=1e-9)
    assert parts.parts["nckd"].item() == pytest.approx(nckd.mean(), rel=1e-9)
    assert parts.soft.item() == pytest.approx(want_soft, rel=1e-9)
    assert parts.total.item() == pytest.approx(alpha * want_soft + (1 - alpha) * hand_ce(s.numpy(), y.numpy()),
                                               rel=1e-9)


@pytest.mark.parametrize("T", [1.0, 4.0, 20.0])
def test_dkd_with_its_coupling_weight_reinstated_is_classic_kd(logits, T):
    """Zhao et al.'s identity, per example: KL(p_t || p_s) = TCKD + (1 - p_t,target) NCKD."""
    s, t, y = logits
    log_q, log_p = torch.log_softmax(s / T, 1), teacher_log_probs(t, T)
    tckd, nckd = dkd_terms(log_q, log_p, y)
    p_target = log_p.exp()[torch.arange(len(y)), y]
    kl = (log_p.exp() * (log_p - log_q)).sum(1)
    torch.testing.assert_close(tckd + (1 - p_target) * nckd, kl, rtol=1e-10, atol=1e-12)
    # ... and, averaged and times T^2, classic KD's soft term
    kd_soft = distillation_loss(s, log_p, y, T, 0.5).soft
    assert (T * T * (tckd + (1 - p_target) * nckd).mean()).item() == pytest.approx(kd_soft.item(), rel=1e-10)


def hand_pearson(a, b):
    return np.corrcoef(a, b)[0, 1]


@pytest.mark.parametrize("T,beta,gamma", [(1.0, 1.0, 1.0), (4.0, 1.0, 2.0)])
def test_dist_matches_hand_computation(logits, T, beta, gamma):
    s, t, y = logits
    y_s, y_t = np_softmax(s.numpy() / T), np_softmax(t.numpy() / T)
    inter = 1 - np.mean([hand_pearson(y_s[i], y_t[i]) for i in range(len(y_s))])
    intra = 1 - np.mean([hand_pearson(y_s[:, c], y_t[:, c]) for c in range(y_s.shape[1])])
    parts = distillation_loss(s, teacher_log_probs(t, T), y, T, 0.7, "dist", dist_beta=beta, dist_gamma=gamma)
    assert parts.parts["inter"].item() == pytest.approx(inter, rel=1e-6)
    assert parts.parts["intra"].item() == pytest.approx(intra, rel=1e-6)
    assert parts.soft.item() == pytest.approx(T * T * (beta * inter + gamma * intra), rel=1e-6)
    # the same probabilities give a perfect correlation: zero loss
    same = distillation_loss(t, teacher_log_probs(t, T), y, T, 0.7, "dist", dist_beta=1.0, dist_gamma=1.0)
    assert same.soft.item() == pytest.approx(0.0, abs=1e-4)  # up to the 1e-8 guard in rho's denominator


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0])
def test_lskd_is_kd_on_z_scored_logits(logits, T):
    s, t, y = logits
    z = lambda v: (v - v.mean(1, keepdims=True)) / (v.std(1, ddof=1, keepdims=True) + 1e-7)
    _, want_soft, _ = hand_kd(z(s.numpy()), z(t.numpy()), y.numpy(), T, 1.0)
    parts = distillation_loss(s, teacher_log_probs(t, T, "lskd"), y, T, 0.7, "lskd")
    assert parts.soft.item() == pytest.approx(want_soft, rel=1e-9)
    assert parts.hard.item() == pytest.approx(hand_ce(s.numpy(), y.numpy()), rel=1e-10)  # CE on the raw logits
    # shifting and scaling the student's logits changes nothing: only their shape is matched
    moved = distillation_loss(3 * s + 5, teacher_log_probs(t, T, "lskd"), y, T, 1.0, "lskd")
    assert moved.soft.item() == pytest.approx(want_soft, rel=1e-6)


def test_an_unknown_loss_is_refused(logits):
    s, t, y = logits
    with pytest.raises(ValueError, match="loss must be one of kd, dkd, dist, lskd, mse"):
        distillation_loss(s, teacher_log_probs(t, 1.0), y, 1.0, 0.5, "mystery")


def test_gram_loss_matches_hand_computation():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(3, 4, 5, 6, generator=g).double(), torch.randn(3, 4, 5, 6, generator=g).double()
    want = 0.0
    for n in range(3):
        fs, ft = s[n].reshape(4, 30).numpy(), t[n].reshape(4, 30).numpy()
        diff = ft @ ft.T / 30 - fs @ fs.T / 30
        want += np.sum(diff ** 2) / 16 / 3  # ||.||_F^2 / C^2, mean over the batch
    assert gram_loss(s, t).item() == pytest.approx(want, rel=1e-10)
    assert gram_loss(t, t).item() == 0.0
    # Gram matrices ignore where a pattern is: moving it in space changes nothing
    assert gram_loss(torch.roll(t, 2, dims=3), t).item() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="conv feature maps"):
        gram_loss(s.flatten(1), t.flatten(1))


def test_several_teachers_features_are_averaged_after_alignment():
    """The multi-teacher hint target: each teacher's map pooled (no parameters) to the first's
    shape, then averaged."""
    g = torch.Generator().manual_seed(4)
    first, second = torch.randn(2, 4, 6, 6, generator=g), torch.randn(2, 8, 12, 12, generator=g)
    aligned = align(second, (4, 6, 6))
    # channels 2k, 2k+1 and each 2x2 block averaged, by hand
    by_hand = second.view(2, 4, 2, 6, 2, 6, 2).mean(dim=(2, 4, 6))
    torch.testing.assert_close(aligned, by_hand)
    torch.testing.assert_close(teachers_target([first, second], (4, 6, 6)), (first + by_hand) / 2)
    vector = torch.randn(2, 10, generator=g)
    assert align(vector, (5,)).shape == (2, 5) and align(first, (16,)).shape == (2, 16)
    # the distiller takes the list and matches the student to the average
    distiller = FeatureDistiller("hint", (3, 6, 6), (4, 6, 6))
    student = torch.randn(2, 3, 6, 6, generator=g)
    want = hint_loss(*distiller.adapter(student, (first + by_hand) / 2))
    assert distiller(student, [first, second]).item() == pytest.approx(want.item(), rel=1e-6)



# ---- self-distillation by deep supervision ----
@pytest.mark.parametrize("T,alpha", [(1.0, 0.5), (4.0, 0.7)])
def test_self_distillation_loss_matches_hand_computation(logits, T, alpha):
    """CE of the final layer plus, averaged over the heads, each head's KD loss against the final
    layer's softmax at T, by hand."""
    z, z1, y = logits
    z2 = z1.flip(0) * 0.5
    total, soft, hard, _ = self_distillation_loss(z, [z1, z2], y, T, alpha)
    heads = [hand_kd(h.numpy(), z.numpy(), y.numpy(), T, alpha) for h in (z1, z2)]
    assert hard.item() == pytest.approx(hand_ce(z.numpy(), y.numpy()), rel=1e-9)
    assert soft.item() == pytest.approx(np.mean([h[1] for h in heads]), rel=1e-9)
    assert total.item() == pytest.approx(hand_ce(z.numpy(), y.numpy()) + np.mean([h[0] for h in heads]), rel=1e-9)


def test_self_distillation_teaches_the_heads_not_the_final_layer(logits):
    """The final layer's softmax is the heads' target, held fixed: with alpha = 1 the gradient it
    gets is exactly its own CE's."""
    z, z1, y = logits
    z, z1 = z.clone().requires_grad_(), z1.clone().requires_grad_()
    self_distillation_loss(z, [z1], y, 4.0, 1.0).total.backward()
    z_ce = z.detach().clone().requires_grad_()
    torch.nn.functional.cross_entropy(z_ce, y).backward()
    assert torch.allclose(z.grad, z_ce.grad) and z1.grad.abs().sum() > 0


@pytest.mark.parametrize("arch,heads", [("seed_student", 1), ("seed_teacher", 2), ("lenet5", 3), ("mlp_30", 1)])
def test_deep_supervision_has_a_head_per_shallow_stage(arch, heads):
    from kdapp.models import build
    model = build(arch)
    x = torch.randn(4, 1, 28, 28)
    deep = DeepSupervision.for_model(model, x)
    logits, stages = model.forward_stages(x)
    aux, hint = deep(stages)
    assert len(aux) == heads and all(a.shape == (4, 10) for a in aux) and hint.item() > 0
    assert all(a.in_features == stages[-1].shape[1] for a in deep.heads)  # heads read the deepest stage's shape


def test_the_deepest_stage_teaches_and_is_not_pulled_by_its_students():
    """The hint moves the shallow stage (conv1) and the adapters, never the layer that makes the
    deepest stage (fc1): its target is detached."""
    from kdapp.models import build
    model = build("seed_student")
    x = torch.randn(4, 1, 28, 28)
    deep = DeepSupervision.for_model(model, x)
    aux, hint = deep(model.forward_stages(x)[1])
    hint.backward()
    assert model.fc1.weight.grad is None and model.conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in deep.adapters.parameters())


@pytest.mark.parametrize("T", [1.0, 4.0, 20.0])
def test_logit_mse_matches_hand_computation_at_any_temperature(logits, T):
    """Ba & Caruana's logit matching on centred logits, from the cached log-probabilities at T."""
    s, t, y = logits
    centre = lambda v: v - v.mean(1, keepdims=True)
    want = np.mean((centre(s.numpy()) - centre(t.numpy())) ** 2)
    parts = distillation_loss(s, teacher_log_probs(t, T, "mse"), y, T, 0.6, "mse")
    assert parts.soft.item() == pytest.approx(want, rel=1e-9)
    assert parts.total.item() == pytest.approx(0.6 * want + 0.4 * hand_ce(s.numpy(), y.numpy()), rel=1e-9)
    shifted = distillation_loss(s + 7, teacher_log_probs(t - 3, T, "mse"), y, T, 1.0, "mse")
    assert shifted.soft.item() == pytest.approx(want, rel=1e-9)  # a shift of either side's logits changes nothing


def test_a_registered_loss_is_offered_everywhere():
    """The registry is the one list: the config, the CLI and the page's menu all offer each loss."""
    import argparse

    from kdapp import cli
    parser = argparse.ArgumentParser()
    cli.add_run_options(parser)
    offered = next(a for a in parser._actions if a.dest == "loss").choices
    for name in LOGIT_LOSSES:
        assert RunConfig(loss=name).loss == name and name in offered
    assert set(FEATURE_LOSSES) < set(next(a for a in parser._actions if a.dest == "feature_loss").choices)
