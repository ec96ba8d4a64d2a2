"""Distillation losses as pure functions. Everything works in log space, so any finite logits
give a finite loss (the seed's exp(logits/T) / sum overflows for logits/T > 88 in float32)."""
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F


class KDParts(NamedTuple):
    total: torch.Tensor  # alpha * soft + (1 - alpha) * hard
    soft: torch.Tensor   # the logit loss: T^2 * KL(teacher_T || student_T) for classic KD
    hard: torch.Tensor   # CE(student, labels) at T = 1
    parts: dict | None = None  # the soft loss's own terms, named: DKD's tckd/nckd, DIST's inter/intra


# The logit losses a run can use for its soft term (--loss); see logit_loss.
LOGIT_LOSSES = ("kd", "dkd", "dist", "lskd")


def check_hparams(temperature, alpha):
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if not (isinstance(alpha, (int, float)) and 0.0 <= alpha <= 1.0):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")


def standardize(logits, eps=1e-7):
    """Logit standardisation (Sun et al., "Logit Standardization in Knowledge Distillation",
    CVPR 2024): z-score each logit vector, (z - mean(z)) / (std(z) + eps), std unbiased as in the
    authors' code. The student then need not match the teacher's logit *scale*, only its shape."""
    return (logits - logits.mean(dim=1, keepdim=True)) / (logits.std(dim=1, keepdim=True) + eps)


def teacher_log_probs(teacher_logits, temperature, loss="kd"):
    """log softmax(t/T) (of the standardised logits for `lskd`). For several teachers (a list) the
    soft targets are the *average of the probabilities*, log(mean_k p_k) = logsumexp_k(log p_k) -
    log K, still in log space. This is what the engine caches: every logit loss here is a function
    of the teacher's probabilities at T."""
    prepare = standardize if loss == "lskd" else (lambda t: t)
    if isinstance(teacher_logits, (list, tuple)):
        stacked = torch.stack([F.log_softmax(prepare(t) / temperature, dim=1) for t in teacher_logits])
        return torch.logsumexp(stacked, dim=0) - math.log(len(teacher_logits))
    return F.log_softmax(prepare(teacher_logits) / temperature, dim=1)


def soft_loss(student_logits, teacher_log_p, temperature):
    """T^2 * KL(p || q) with p the teacher's (log-)probabilities and q = softmax(s/T), averaged
    over the batch ("batchmean", the true KL; "mean" would also divide by the 10 classes).
    The T^2 keeps its gradients on the scale of the hard loss as T changes (Hinton et al. 2015)."""
    log_q = F.log_softmax(student_logits / temperature, dim=1)
    kl = F.kl_div(log_q, teacher_log_p, reduction="batchmean", log_target=True)
    return kl * temperature ** 2


def distillation_loss(student_logits, teacher_log_p, targets, temperature, alpha, loss="kd", **weights):
    """alpha * soft + (1 - alpha) * CE, from precomputed teacher log-probabilities at T (what the
    engine caches; see teacher_log_probs). The soft term is `loss`:

        kd    T^2 KL(p_t || p_s)                           Hinton et al. 2015
        dkd   T^2 (dkd_alpha TCKD + dkd_beta NCKD)         Zhao et al. 2022 (dkd_terms)
        dist  T^2 (dist_beta inter + dist_gamma intra)     Huang et al. 2022 (dist_terms)
        lskd  KD on standardised logits                    Sun et al. 2024 (standardize)
    """
    hard = F.cross_entropy(student_logits, targets)
    parts = None
    if loss == "kd":
        soft = soft_loss(student_logits, teacher_log_p, temperature)
    elif loss == "lskd":
        soft = soft_loss(standardize(student_logits), teacher_log_p, temperature)
    elif loss == "dkd":
        tckd, nckd = (t.mean() for t in dkd_terms(F.log_softmax(student_logits / temperature, dim=1),
                                                  teacher_log_p, targets))
        parts = {"tckd": tckd, "nckd": nckd}
        soft = temperature ** 2 * (weights.get("dkd_alpha", 1.0) * tckd + weights.get("dkd_beta", 8.0) * nckd)
    elif loss == "dist":
        inter, intra = dist_terms(F.softmax(student_logits / temperature, dim=1), teacher_log_p.exp())
        parts = {"inter": inter, "intra": intra}
        soft = temperature ** 2 * (weights.get("dist_beta", 1.0) * inter + weights.get("dist_gamma", 1.0) * intra)
    else:
        raise ValueError(f"loss must be one of {', '.join(LOGIT_LOSSES)}, got {loss!r}")
    return KDParts(alpha * soft + (1.0 - alpha) * hard, soft, hard, parts)


def dkd_terms(student_log_p, teacher_log_p, targets):
    """Decoupled KD (Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022), per example:

        TCKD = KL(b_t || b_s),   b = [p_target, 1 - p_target]         (the binary target-class KL)
        NCKD = KL(p^_t || p^_s), p^ = softmax over the non-target classes (target masked out)

    from log-probabilities at T. Classic KD's KL is TCKD + (1 - p_t,target) NCKD: the coupling
    weight that DKD drops, so that NCKD, the "dark knowledge", is not suppressed when the
    teacher is confident. Returns (tckd, nckd), each of shape (N,)."""
    n, c = student_log_p.shape
    target = F.one_hot(targets, c).bool()
    others = ~target

    def split(log_p):
        log_target = log_p[target]                              # log p_y, (N,)
        log_others = log_p[others].view(n, c - 1)              # the other classes, in order
        log_rest = torch.logsumexp(log_others, dim=1)           # log (1 - p_y), stably
        return torch.stack([log_target, log_rest], 1), log_others - log_rest[:, None]

    binary_s, nontarget_s = split(student_log_p)
    binary_t, nontarget_t = split(teacher_log_p)
    kl = lambda log_q, log_p: (log_p.exp() * (log_p - log_q)).sum(dim=1)
    return kl(binary_s, binary_t), kl(nontarget_s, nontarget_t)


def _pearson(a, b, dim, eps=1e-8):
    a = a - a.mean(dim=dim, keepdim=True)
    b = b - b.mean(dim=dim, keepdim=True)
    return (a * b).sum(dim) / (a.norm(dim=dim) * b.norm(dim=dim) + eps)


def dist_terms(student_p, teacher_p):
    """DIST (Huang et al., "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022): match
    *relations*, not values, with y = softmax(z/tau) and rho the Pearson correlation:

        inter = 1 - mean_i rho(y_s[i, :], y_t[i, :])   (each example's ranking of the classes)
        intra = 1 - mean_c rho(y_s[:, c], y_t[:, c])   (each class's ranking of the examples)

    Returns (inter, intra), scalars; the loss is tau^2 (beta inter + gamma intra)."""
    return 1 - _pearson(student_p, teacher_p, dim=1).mean(), 1 - _pearson(student_p, teacher_p, dim=0).mean()


def self_distillation_loss(logits, aux_logits, targets, temperature, alpha, loss="kd", **weights):
    """Deep supervision with the network as its own teacher (Zhang et al., "Be Your Own Teacher",
    ICCV 2019): the final classifier learns from the labels, and each shallower head k learns from
    the labels and from the final classifier's softmax at T, which is held fixed (detached):

        L = CE(z, y) + mean_k [ alpha * soft(z_k, softmax(z/T)) + (1 - alpha) * CE(z_k, y) ]

    with `soft` the chosen logit loss (see distillation_loss). Returns KDParts whose `hard` is the
    final classifier's CE, `soft` the heads' mean soft term and `parts` their mean named terms.
    The feature half of deep supervision (the hint from each shallow stage to the deepest) is
    kdapp.training.features.DeepSupervision's."""
    hard = F.cross_entropy(logits, targets)
    target_log_p = teacher_log_probs(logits.detach(), temperature, loss)
    heads = [distillation_loss(z, target_log_p, targets, temperature, alpha, loss, **weights) for z in aux_logits]
    parts = {name: _mean(h.parts[name] for h in heads) for name in heads[0].parts} if heads[0].parts else None
    return KDParts(hard + _mean(h.total for h in heads), _mean(h.soft for h in heads), hard, parts)


def _mean(values):
    return torch.stack(list(values)).mean()


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
    teacher's shape (see kdapp.training.features.FeatureAdapter). Mean over all elements."""
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


def gram_matrix(features):
    """Channel Gram matrix G = F F^T / (H W) of conv maps (N,C,H,W) -> (N,C,C): which channels
    fire together, wherever they fire (the style of Gatys et al.; the feature article's third loss)."""
    if features.dim() != 4:
        raise ValueError("Gram matching needs conv feature maps (N,C,H,W); "
                         f"got shape {tuple(features.shape)} (an MLP has no channels to correlate)")
    flat = features.flatten(2)
    return flat @ flat.transpose(1, 2) / flat.shape[-1]


def gram_loss(student_features, teacher_features):
    """Gram-matrix matching: L = mean_n || G(F_t) - G(F_s) ||_F^2 / C^2, with the student's features
    already mapped to the teacher's C channels by the adapter (kdapp.training.features.FeatureAdapter).
    The 1/C^2 (a mean over the matrix's entries) keeps it on the hint loss's scale, so the same
    feature weight of 1 suits both: for seed_student -> seed_teacher at initialisation the sum is
    ~960, the mean ~0.24, the hint ~0.96."""
    if student_features.shape[:2] != teacher_features.shape[:2]:
        raise ValueError(f"Gram shapes differ: {tuple(student_features.shape)} vs {tuple(teacher_features.shape)}")
    return (gram_matrix(teacher_features) - gram_matrix(student_features)).pow(2).mean(dim=(1, 2)).mean()

