"""Distillation losses as pure functions, and the registry that names them.

Everything works in log space, so any finite logits give a finite loss (the seed's
exp(logits/T) / sum overflows for logits/T > 88 in float32).

`LOGIT_LOSSES` and `FEATURE_LOSSES` are the one home of every loss a run can pick: its label, its
function, its named parts, the settings it reads and the architectures it accepts. The config's
choices, the CLI, the UI's menus, the reports and the plots all read them, so a new loss is one
entry here and its test (torchdistill keeps its losses in a registry the same way).
"""
import math
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F


class KDParts(NamedTuple):
    total: torch.Tensor  # alpha * soft + (1 - alpha) * hard
    soft: torch.Tensor   # the logit loss: T^2 * KL(teacher_T || student_T) for classic KD
    hard: torch.Tensor   # CE(student, labels) at T = 1
    parts: dict | None = None  # the soft loss's own terms, named: DKD's tckd/nckd, DIST's inter/intra


class LogitLoss(NamedTuple):
    """A soft term: soft(student_logits, teacher_log_p, targets, T, **settings) -> (loss, {part: loss})."""
    label: str                    # the menu's words, with the paper
    short: str                    # the settings line's and the tables' name
    soft: Callable
    curve: str                    # the loss chart's name for the soft curve
    explain: str = ""             # one sentence for the page: what it matches
    parts: dict = {}              # named terms it reports -> their chart names
    settings: dict = {}           # RunConfig fields it reads -> their symbol in the settings line
    standardize: bool = False     # the teacher's logits are z-scored before the softmax at T


class FeatureLoss(NamedTuple):
    """A feature term: loss(student_features, teacher_features), the student's adapted first if `adapter`."""
    label: str
    loss: Callable
    what: str                     # how an error message names it
    adapter: bool = True          # a learned adapter maps the student's features to the teacher's shape
    needs_maps: bool = False      # conv feature maps (N,C,H,W) on both sides: a CNN student and teacher


def standardize(logits, eps=1e-7):
    """Logit standardisation (Sun et al., "Logit Standardization in Knowledge Distillation",
    CVPR 2024): z-score each logit vector, (z - mean(z)) / (std(z) + eps), std unbiased as in the
    authors' code. The student then need not match the teacher's logit *scale*, only its shape."""
    return (logits - logits.mean(dim=1, keepdim=True)) / (logits.std(dim=1, keepdim=True) + eps)


def teacher_log_probs(teacher_logits, temperature, loss="kd"):
    """log softmax(t/T) (of the standardised logits for losses that ask for it). For several
    teachers (a list) the soft targets are the *average of the probabilities*,
    log(mean_k p_k) = logsumexp_k(log p_k) - log K, still in log space. This is what the engine
    caches: every logit loss here is a function of the teacher's probabilities at T."""
    prepare = standardize if LOGIT_LOSSES[loss].standardize else (lambda t: t)
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


def distillation_loss(student_logits, teacher_log_p, targets, temperature, alpha, loss="kd", **settings):
    """alpha * soft + (1 - alpha) * CE(s, y), from precomputed teacher log-probabilities at T
    (what the engine caches; see teacher_log_probs). The soft term is LOGIT_LOSSES[loss]; the
    settings it reads (e.g. DKD's dkd_alpha, dkd_beta) must be given by name."""
    if loss not in LOGIT_LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOGIT_LOSSES)}, got {loss!r}")
    entry = LOGIT_LOSSES[loss]
    missing = [name for name in entry.settings if name not in settings]
    if missing:
        raise ValueError(f"the {entry.short} loss needs {', '.join(missing)}")
    soft, parts = entry.soft(student_logits, teacher_log_p, targets, temperature,
                             **{name: settings[name] for name in entry.settings})
    hard = F.cross_entropy(student_logits, targets)
    return KDParts(alpha * soft + (1.0 - alpha) * hard, soft, hard, parts or None)


def kd_soft(student_logits, teacher_log_p, targets, temperature):
    """Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (2015):
    T^2 KL(softmax(t/T) || softmax(s/T))."""
    return soft_loss(student_logits, teacher_log_p, temperature), {}


def lskd_soft(student_logits, teacher_log_p, targets, temperature):
    """KD on standardised logits (Sun et al. 2024): the student's logits are z-scored too."""
    return soft_loss(standardize(student_logits), teacher_log_p, temperature), {}


def dkd_soft(student_logits, teacher_log_p, targets, temperature, dkd_alpha, dkd_beta):
    """T^2 (dkd_alpha TCKD + dkd_beta NCKD), Zhao et al. 2022 (see dkd_terms)."""
    tckd, nckd = (t.mean() for t in dkd_terms(F.log_softmax(student_logits / temperature, dim=1),
                                              teacher_log_p, targets))
    return temperature ** 2 * (dkd_alpha * tckd + dkd_beta * nckd), {"tckd": tckd, "nckd": nckd}


def dist_soft(student_logits, teacher_log_p, targets, temperature, dist_beta, dist_gamma):
    """tau^2 (dist_beta inter + dist_gamma intra), Huang et al. 2022 (see dist_terms)."""
    inter, intra = dist_terms(F.softmax(student_logits / temperature, dim=1), teacher_log_p.exp())
    return temperature ** 2 * (dist_beta * inter + dist_gamma * intra), {"inter": inter, "intra": intra}


def logit_mse_soft(student_logits, teacher_log_p, targets, temperature):
    """Logit matching (Ba & Caruana, "Do Deep Nets Really Need to be Deep?", NeurIPS 2014), which
    Kim et al. (IJCAI 2021) show is KD's limit as T grows: the mean over the batch and the classes of

        ((s - mean(s)) - (t - mean(t)))^2

    Softmax ignores a shift of the logits, so both sides are centred. The teacher's centred logits
    come back exactly from its cached log-probabilities at T, t - mean(t) = T (log p_T - mean(log p_T)),
    so T plays no other part."""
    teacher = temperature * (teacher_log_p - teacher_log_p.mean(dim=1, keepdim=True))
    student = student_logits - student_logits.mean(dim=1, keepdim=True)
    return F.mse_loss(student, teacher), {}


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



LOGIT_LOSSES = {
    "kd": LogitLoss("KD (Hinton 2015)", "KD", kd_soft, "soft: KL·T²", "Hinton's KL at T."),
    "dkd": LogitLoss("DKD (Zhao 2022)", "DKD", dkd_soft, "soft: DKD·T²",
                     "the KL split into the target class (TCKD) and the others (NCKD, weighted ×8): dark knowledge "
                     "no longer muted by a confident teacher.",
                     parts={"tckd": "TCKD (target class)", "nckd": "NCKD (other classes)"},
                     settings={"dkd_alpha": "α", "dkd_beta": "β"}),
    "dist": LogitLoss("DIST (Huang 2022)", "DIST", dist_soft, "soft: DIST·τ²",
                      "match the ranking of classes and of examples (Pearson), not the probabilities.",
                      parts={"inter": "inter-class 1−ρ", "intra": "intra-class 1−ρ"},
                      settings={"dist_beta": "β", "dist_gamma": "γ"}),
    "lskd": LogitLoss("LS-KD (Sun 2024)", "LS-KD", lskd_soft, "soft: LS-KD KL·T²",
                      "KD on z-scored logits, so the student matches their shape, not their scale.", standardize=True),
    "mse": LogitLoss("logit MSE (Ba & Caruana 2014)", "logit MSE", logit_mse_soft, "soft: logit MSE",
                     "squared error between the centred logits: KD's limit at high T, with no T at all."),
}

FEATURE_LOSSES = {
    "hint": FeatureLoss("hint: FitNets MSE through a learned adapter (Romero 2015)", hint_loss, "the hint"),
    "attention": FeatureLoss("attention transfer (Zagoruyko 2017)", attention_loss, "attention transfer",
                             adapter=False, needs_maps=True),
    "gram": FeatureLoss("gram: channel Gram matrices after the adapter", gram_loss, "Gram matching",
                        needs_maps=True),
}
