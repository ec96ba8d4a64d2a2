"""Feature distillation: the learned adapter for FitNets hints, and the module the trainer uses.

The trainer asks each model for `forward_features(x) -> (logits, features)` and hands both
feature tensors to a FeatureDistiller; it never names a layer.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from kdapp.losses import FEATURE_LOSSES, hint_loss
from kdapp.models import cnn_names
from kdapp.training.techniques import Discriminator, adversarial_loss, collapse_loss

VECTOR_GRID = 4  # a conv map meeting an MLP's vector is average-pooled to C x 4 x 4 first


class FeatureAdapter(nn.Module):
    """Maps the student's features to the teacher's shape (the seed article's FeatureAdapter).

    conv -> conv: 1x1 conv + BatchNorm for channels, then adaptive average pooling (student
    map larger) or bilinear upsampling (smaller) for H x W. vector -> vector: a linear layer.
    When one side is a conv map and the other a vector, the conv side is pooled to a small grid
    and flattened (the teacher's side without parameters), then a linear layer maps the student.
    """

    def __init__(self, student_shape, teacher_shape):
        super().__init__()
        self.student_shape, self.teacher_shape = tuple(student_shape), tuple(teacher_shape)
        both_conv = len(student_shape) == 3 and len(teacher_shape) == 3
        if both_conv:
            self.proj = nn.Sequential(nn.Conv2d(student_shape[0], teacher_shape[0], 1),
                                      nn.BatchNorm2d(teacher_shape[0]))
        else:
            self.proj = nn.Linear(_vector_size(student_shape), _vector_size(teacher_shape))
        self.both_conv = both_conv

    def forward(self, student_features, teacher_features):
        if self.both_conv:
            s = self.proj(student_features)
            size = teacher_features.shape[-2:]
            if s.shape[-2:] != size:
                if s.shape[-2] >= size[0] and s.shape[-1] >= size[1]:
                    s = F.adaptive_avg_pool2d(s, size)
                else:
                    s = F.interpolate(s, size=size, mode="bilinear", align_corners=False)
            return s, teacher_features
        return self.proj(_as_vector(student_features)), _as_vector(teacher_features)


def _vector_size(shape):
    return shape[0] * VECTOR_GRID * VECTOR_GRID if len(shape) == 3 else shape[0]


def _as_vector(features):
    if features.dim() == 4:
        features = F.adaptive_avg_pool2d(features, VECTOR_GRID)
    return features.flatten(1)


def align(features, shape):
    """Teacher features brought to another teacher's `shape` without parameters: adaptive average
    pooling over channels and space (or over a vector), so several teachers' maps can be averaged
    into one hint target. A conv map meeting a vector is flattened first (as _as_vector)."""
    if tuple(features.shape[1:]) == tuple(shape):
        return features
    if features.dim() == 4 and len(shape) == 3:
        return F.adaptive_avg_pool3d(features.unsqueeze(1), tuple(shape)).squeeze(1)
    vector = _as_vector(features).unsqueeze(1)
    size = shape[0] * shape[1] * shape[2] if len(shape) == 3 else shape[0]
    return F.adaptive_avg_pool1d(vector, size).squeeze(1).view(len(features), *shape)


def teachers_target(teacher_features, shape):
    """The multi-teacher hint target: the average of the teachers' features, each aligned to the
    first teacher's shape (the feature article's MultiTeacherDistiller, for teachers that differ)."""
    if len(teacher_features) == 1:
        return teacher_features[0]
    return torch.stack([align(f, shape) for f in teacher_features]).mean(0)


class FeatureDistiller(nn.Module):
    """loss = distiller(student_features, teacher_features) for a loss of kdapp.losses.FEATURE_LOSSES,
    through a learned adapter when the loss has one. teacher_features may be a list (several
    teachers): their aligned average is the target. With `collapse` or `adversarial` it also
    computes those regularisers (kdapp.training.techniques) on the same adapted features:
    forward_terms -> (loss, {"collapse": ..., "adversarial": ...}), unweighted."""

    def __init__(self, kind, student_shape, teacher_shape, collapse=False, adversarial=False):
        super().__init__()
        if kind not in FEATURE_LOSSES:
            raise ValueError(f"unknown feature loss {kind!r}; choose {', '.join(FEATURE_LOSSES)}")
        self.entry = FEATURE_LOSSES[kind]
        if self.entry.needs_maps and (len(student_shape) != 3 or len(teacher_shape) != 3):
            raise ValueError(f"{self.entry.what} needs CNN feature maps on both sides; "
                             f"got student {student_shape} and teacher {teacher_shape}. "
                             f"Pick CNNs ({cnn_names()}) or use the hint loss.")
        self.kind, self.teacher_shape = kind, tuple(teacher_shape)
        self.adapter = FeatureAdapter(student_shape, teacher_shape) if self.entry.adapter else None
        self.collapse = collapse
        if adversarial and self.adapter is None:
            raise ValueError(f"the adversarial term compares adapted features; {self.entry.what} has no adapter")
        width = teacher_shape[0] if self.adapter is None or self.adapter.both_conv else _vector_size(teacher_shape)
        self.discriminator = Discriminator(width) if adversarial else None

    def forward(self, student_features, teacher_features):
        return self.forward_terms(student_features, teacher_features)[0]

    def forward_terms(self, student_features, teacher_features):
        if isinstance(teacher_features, (list, tuple)):
            teacher_features = teachers_target(teacher_features, self.teacher_shape)
        if self.adapter is not None:
            student_features, teacher_features = self.adapter(student_features, teacher_features)
        terms = {}
        if self.collapse:
            terms["collapse"] = collapse_loss(student_features)
        if self.discriminator is not None:
            terms["adversarial"] = adversarial_loss(self.discriminator, student_features, teacher_features)
        return self.entry.loss(student_features, teacher_features), terms

    @classmethod
    def for_models(cls, kind, student, teacher, probe, collapse=False, adversarial=False):
        """Reads the feature shapes from one forward pass of each model on `probe` (N >= 2); with
        several teachers (a list) the first one's shape is the target's."""
        teacher = teacher[0] if isinstance(teacher, (list, tuple)) else teacher
        s_shape = _probe(student, probe, "forward_features")[1].shape[1:]
        t_shape = _probe(teacher, probe, "forward_features")[1].shape[1:]
        return cls(kind, s_shape, t_shape, collapse, adversarial)


class DeepSupervision(nn.Module):
    """Self-distillation with no pretrained teacher: the feature article's SelfDistillation, whose
    shallower feature maps are aligned to the deepest one, completed as in Zhang et al., "Be Your
    Own Teacher" (ICCV 2019). Each shallower stage of the student gets an adapter to its deepest
    stage's shape (what the final layer reads) and a linear classifier head on the adapted
    features. forward(stages) -> (the heads' logits, hint loss): the hint is the mean MSE between
    each adapted stage and the deepest stage, held fixed (detached) so the teacher side is not
    pulled toward its students. The heads learn from the labels and the final softmax
    (kdapp.losses.self_distillation_loss). Adapters and heads are dropped after training: the
    student that ships is the plain architecture."""

    def __init__(self, stage_shapes, classes=10):
        super().__init__()
        *shallow, deepest = [tuple(shape) for shape in stage_shapes]
        if not shallow or len(deepest) != 1:
            raise ValueError(f"deep supervision needs two or more stages ending in a vector; got {stage_shapes}")
        self.adapters = nn.ModuleList(FeatureAdapter(shape, deepest) for shape in shallow)
        self.heads = nn.ModuleList(nn.Linear(deepest[0], classes) for _ in shallow)

    def forward(self, stages):
        target = stages[-1].detach()
        aux_logits, hints = [], []
        for adapter, head, features in zip(self.adapters, self.heads, stages[:-1]):
            adapted, target_vector = adapter(features, target)
            hints.append(hint_loss(adapted, target_vector))
            aux_logits.append(head(adapted))
        return aux_logits, torch.stack(hints).mean()

    @classmethod
    def for_model(cls, student, probe):
        return cls([s.shape[1:] for s in _probe(student, probe, "forward_stages")[1]])


@torch.no_grad()
def _probe(model, probe, method):
    """model.<method>(probe) in eval mode and without gradients, the model's mode restored: the
    shapes an adapter is built for."""
    was_training = model.training
    out = getattr(model.eval(), method)(probe)
    model.train(was_training)
    return out
