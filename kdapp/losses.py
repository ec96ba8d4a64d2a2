"""Distillation losses as pure functions. Everything works in log space, so any finite logits
give a finite loss (the seed's exp(logits/T) / sum overflows for logits/T > 88 in float32)."""
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F


class KDParts(NamedTuple):
    total: torch.Tensor  # alpha * soft + (1 - alpha) * hard
    soft: torch.Tensor   # T^2 * KL(teacher_T || student_T)
    hard: torch.Tensor   # CE(student, labels) at T = 1


def check_hparams(temperature, alpha):
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if not (isinstance(alpha, (int, float)) and 0.0 <= alpha <= 1.0):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")


def teacher_log_probs(teacher_logits, temperature):
    """log softmax(t/T). For several teachers (a list) the soft targets are the *average of the
    probabilities*, log(mean_k p_k) = logsumexp_k(log p_k) - log K, still in log space."""
    if isinstance(teacher_logits, (list, tuple)):
        stacked = torch.stack([F.log_softmax(t / temperature, dim=1) for t in teacher_logits])
        return torch.logsumexp(stacked, dim=0) - math.log(len(teacher_logits))
    return F.log_softmax(teacher_logits / temperature, dim=1)


def soft_loss(student_logits, teacher_log_p, temperature):
    """T^2 * KL(p || q) with p the teacher's (log-)probabilities and q = softmax(s/T), averaged
    over the batch ("batchmean", the true KL; "mean" would also divide by the 10 classes).
    The T^2 keeps its gradients on the scale of the hard loss as T changes (Hinton et al. 2015)."""
    log_q = F.log_softmax(student_logits / temperature, dim=1)
    kl = F.kl_div(log_q, teacher_log_p, reduction="batchmean", log_target=True)
    return kl * temperature ** 2


def distillation_loss(student_logits, teacher_log_p, targets, temperature, alpha):
    """KD loss from precomputed teacher log-probabilities at T (what the engine caches)."""
    soft = soft_loss(student_logits, teacher_log_p, temperature)
    hard = F.cross_entropy(student_logits, targets)
    return KDParts(alpha * soft + (1.0 - alpha) * hard, soft, hard)


def kd_loss_parts(student_logits, teacher_logits, targets, temperature, alpha):
    check_hparams(temperature, alpha)
    return distillation_loss(student_logits, teacher_log_probs(teacher_logits, temperature),
                             targets, temperature, alpha)


def kd_loss(student_logits, teacher_logits, targets, temperature, alpha):
    """Knowledge distillation loss of Hinton, Vinyals & Dean, "Distilling the Knowledge in a
    Neural Network" (2015), arXiv:1503.02531:

        L = alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y)

    s: student logits (N,C); t: teacher logits (N,C), or a list of them for several teachers
    (their probabilities are averaged); y: labels (N,). KL uses batchmean reduction. alpha
    weighs the soft term, as in the MNIST seed article. Requires T > 0 and 0 <= alpha <= 1.
    """
    return kd_loss_parts(student_logits, teacher_logits, targets, temperature, alpha).total


def hint_loss(student_features, teacher_features):
    """FitNets hint loss (Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015):

        L = mean((r(F_s) - F_t)^2)

    where r is a learned adapter that has already mapped the student's features to the
    teacher's shape (see kdapp.features.FeatureAdapter). Mean over all elements."""
    if student_features.shape != teacher_features.shape:
        raise ValueError(f"hint shapes differ: {tuple(student_features.shape)} vs "
                         f"{tuple(teacher_features.shape)}; adapt the student's features first")
    return F.mse_loss(student_features, teacher_features)


def attention_map(features, p=2):
    """Spatial attention of Zagoruyko & Komodakis, before normalisation: A = sum_c |F_c|^p, (N,H,W)."""
    if features.dim() != 4:
        raise ValueError("attention transfer needs conv feature maps (N,C,H,W); "
                         f"got shape {tuple(features.shape)} (an MLP has no spatial attention)")
    return features.abs().pow(p).sum(dim=1)


def attention_loss(student_features, teacher_features, p=2):
    """Attention transfer (Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017):

        L = mean_n || Q_s/||Q_s||_2 - Q_t/||Q_t||_2 ||_2^2,   Q = vec(sum_c |F_c|^p)

    When the maps differ in size, the student's map is resized to the teacher's H x W
    (adaptive average pooling when larger, bilinear when smaller) before normalising."""
    a_s, a_t = attention_map(student_features, p), attention_map(teacher_features, p)
    if a_s.shape[-2:] != a_t.shape[-2:]:
        size = a_t.shape[-2:]
        if a_s.shape[-2] >= size[0] and a_s.shape[-1] >= size[1]:
            a_s = F.adaptive_avg_pool2d(a_s.unsqueeze(1), size).squeeze(1)
        else:
            a_s = F.interpolate(a_s.unsqueeze(1), size=size, mode="bilinear",
                                align_corners=False).squeeze(1)
    diff = F.normalize(a_s.flatten(1), dim=1) - F.normalize(a_t.flatten(1), dim=1)
    return diff.pow(2).sum(dim=1).mean()
