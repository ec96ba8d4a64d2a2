"""The articles' remaining techniques, each a small piece the training loop calls.

- a temperature that changes during training (the KD article §6.2: high T early to carry general
  knowledge, lower T later to sharpen), on a fixed schedule or learned adversarially (CTKD);
- mutual learning (Zhang et al. 2018), for a peer trained from scratch or for a pretrained
  teacher fine-tuned beside its student (progressive distillation, the KD article §6.1);
- the feature article's (§5.3) feature-collapse regulariser λ‖Cov(F_S) − I‖²_F and its
  adversarial distillation through a gradient reversal layer.

Each function is pure and carries its formula and paper; kdapp.training.distillation and teachers wire them in.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdapp.config import RANGES


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def grad_reverse(x, scale=1.0):
    """The gradient reversal layer of Ganin & Lempitsky, "Unsupervised Domain Adaptation by
    Backpropagation" (ICML 2015): the identity forwards, −scale·∂L/∂x backwards. Whatever sits
    before it climbs the loss that whatever sits after it descends: one optimiser step trains both
    sides of a two-player game."""
    return _GradReverse.apply(x, scale)


def scheduled_temperature(schedule, start, end, step, total_steps):
    """T at `step` of `total_steps`, with p = step / (total_steps − 1) going 0 -> 1:

        constant: T = start
        linear:   T = start + (end − start)·p
        cosine:   T = end + (start − end)·(1 + cos(π p)) / 2

    The KD article (§6.2) starts high (general knowledge in the soft targets) and ends low
    (sharper targets); `end` may be above `start` too."""
    p = min(step, total_steps - 1) / max(total_steps - 1, 1)
    if schedule == "constant":
        return start
    if schedule == "linear":
        return start + (end - start) * p
    if schedule == "cosine":
        return end + (start - end) * (1 + math.cos(math.pi * p)) / 2
    raise ValueError(f"temperature schedule must be one of constant, linear, cosine; got {schedule!r}")


def difficulty(step, total_steps, ramp=0.5):
    """CTKD's curriculum λ (Li et al. 2023, eq. 7, λ_min = 0, λ_max = 1): a cosine ramp from 0 to 1
    over the first `ramp` share of the run, then 1:

        λ = (1 − cos(π · min(step / (ramp · total_steps), 1))) / 2

    λ scales the reversed gradient that the temperature receives: easy (T barely fights the
    student) early, hard later."""
    r = min(step / max(ramp * total_steps, 1), 1.0)
    return (1 - math.cos(math.pi * r)) / 2


class CurriculumTemperature(nn.Module):
    """Curriculum temperature for KD (Li et al., "Curriculum Temperature for Knowledge
    Distillation", AAAI 2023), with one global T: a learnable θ mapped into [low, high],

        T = low + (high − low) · sigmoid(GRL_λ(θ)),

    θ starting where T = `start` (or 5% of the range inside it, when `start` is one of its ends). T sits in the same loss as the student, behind a gradient
    reversal layer, so the student's step lowers the KD loss while T's step *raises* it: T moves to
    where the student finds the teacher hardest to match, scaled by the difficulty λ(step)."""

    def __init__(self, start, low, high):
        super().__init__()
        self.low, self.high = low, high
        share = min(max((start - low) / (high - low), 0.05), 0.95)  # at an edge, sigmoid's gradient vanishes
        self.theta = nn.Parameter(torch.tensor(math.log(share / (1 - share))))

    def forward(self, scale):
        return self.low + (self.high - self.low) * torch.sigmoid(grad_reverse(self.theta, scale))


class TemperatureSchedule:
    """The run's T at each step: `at(step)` gives a float (fixed schedules) or a 0-dim tensor that
    carries gradients back to CurriculumTemperature (ctkd, whose `parameters()` the KD optimiser
    also steps); `value(step)` gives the float for the step events."""

    def __init__(self, config, total_steps, device):
        self.schedule, self.total = config.temperature_schedule, total_steps
        self.start = config.temperature
        self.end = config.temperature if config.temperature_end is None else config.temperature_end
        self.learned = CurriculumTemperature(self.start, *ctkd_range(config)).to(device) \
            if self.schedule == "ctkd" else None
        self.last = self.start

    @property
    def changes(self):
        return self.schedule != "constant"

    def parameters(self):
        return list(self.learned.parameters()) if self.learned is not None else []

    def at(self, step):
        if self.learned is not None:
            t = self.learned(difficulty(step, self.total))
            self.last = t.detach()
            return t
        self.last = scheduled_temperature(self.schedule, self.start, self.end, step, self.total)
        return self.last

    def value(self):
        return float(self.last)


def ctkd_range(config):
    """CTKD's T lives between temperature and temperature_end when both are set, else in the
    temperature setting's whole range (0.5 to 20)."""
    if config.temperature_end is not None and config.temperature_end != config.temperature:
        return min(config.temperature, config.temperature_end), max(config.temperature, config.temperature_end)
    return RANGES["temperature"].low, RANGES["temperature"].high


def mutual_loss(logits, peer_logits, targets, temperature, alpha):
    """One network's loss in deep mutual learning (Zhang et al., "Deep Mutual Learning", CVPR 2018),
    at the run's T and α as in KD:

        L = α·T²·KL(softmax(z_peer/T) ‖ softmax(z/T)) + (1 − α)·CE(z, y)

    with the peer's logits held fixed (detached): each network learns from the labels and from
    the other's current predictions. The paper's own form is α = 1/2 (up to a factor 2), T = 1."""
    peer_log_p = F.log_softmax(peer_logits.detach() / temperature, dim=1)
    log_q = F.log_softmax(logits / temperature, dim=1)
    soft = F.kl_div(log_q, peer_log_p, reduction="batchmean", log_target=True) * temperature ** 2
    return alpha * soft + (1 - alpha) * F.cross_entropy(logits, targets)


def collapse_loss(features):
    """The feature article's (§5.3) regulariser against feature collapse, ‖Cov(F_S) − I‖²_F: the
    student's (adapted) features should be decorrelated with unit variance, not squeezed onto a
    few directions. For conv maps (N,C,H,W) each position is a sample of C channels; for vectors
    (N,D), each example. Cov = (F − μ)ᵀ(F − μ) / (n − 1). Zero exactly for whitened features."""
    f = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1]) if features.dim() == 4 else features.flatten(1)
    centred = f - f.mean(dim=0, keepdim=True)
    cov = centred.T @ centred / (len(f) - 1)
    return (cov - torch.eye(cov.shape[0], device=cov.device, dtype=cov.dtype)).pow(2).sum()


class Discriminator(nn.Module):
    """A small critic that tells teacher features (1) from the student's (0): conv maps are
    average-pooled to their channels first, then a 64-unit hidden layer."""

    def __init__(self, width):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, 64), nn.ReLU(), nn.Linear(64, 1))

    def forward(self, features):
        if features.dim() == 4:
            features = features.mean(dim=(2, 3))
        return self.net(features.flatten(1)).squeeze(1)


def adversarial_loss(discriminator, student_features, teacher_features):
    """Adversarial feature distillation through a gradient reversal layer (Ganin & Lempitsky 2015;
    the feature article's §5.3):

        L = BCE(D(F_T), 1) + BCE(D(GRL(F_S)), 0)

    One backward pass trains both players: D descends L (it learns to tell the two apart), and
    the student, behind the GRL, receives −∂L/∂F_S, so it climbs L: its features learn to pass
    for the teacher's. The teacher's features are fixed (detached)."""
    real = discriminator(teacher_features.detach())
    fake = discriminator(grad_reverse(student_features))
    return F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + \
        F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))


@torch.no_grad()
def max_norm_(model, c):
    """The max-norm constraint of Hinton et al., "Improving neural networks by preventing
    co-adaptation of feature detectors" (2012), used with dropout for Hinton et al. 2015's MNIST
    teacher: after each step, every hidden unit's incoming weight vector w is projected back onto
    the ball ‖w‖₂ ≤ c,

        w ← w · min(1, c / ‖w‖₂),

    for every Linear and Conv layer but the last (the output layer is left free). Bounding the
    weights, not penalising them, lets a large learning rate explore without blowing up. In place."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][:-1]
    for layer in layers:
        norms = layer.weight.flatten(1).norm(dim=1)  # one per unit: its incoming weights
        scale = c / norms.clamp(min=c)
        layer.weight.mul_(scale.view(-1, *[1] * (layer.weight.dim() - 1)))
