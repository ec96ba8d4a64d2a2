"""Feature distillation: the learned adapter for FitNets hints, and the module the trainer uses.

The trainer asks each model for `forward_features(x) -> (logits, features)` and hands both
feature tensors to a FeatureDistiller; it never names a layer.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from kdapp.losses import attention_loss, hint_loss

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


class FeatureDistiller(nn.Module):
    """loss = distiller(student_features, teacher_features), for kind 'hint' or 'attention'."""

    def __init__(self, kind, student_shape, teacher_shape):
        super().__init__()
        if kind not in ("hint", "attention"):
            raise ValueError(f"unknown feature loss {kind!r}; choose hint or attention")
        if kind == "attention" and (len(student_shape) != 3 or len(teacher_shape) != 3):
            raise ValueError("attention transfer needs CNN feature maps on both sides; "
                             f"got student {student_shape} and teacher {teacher_shape}. "
                             "Pick CNNs (seed_teacher, seed_student, lenet5) or use the hint loss.")
        self.kind = kind
        self.adapter = FeatureAdapter(student_shape, teacher_shape) if kind == "hint" else None

    def forward(self, student_features, teacher_features):
        if self.kind == "hint":
            return hint_loss(*self.adapter(student_features, teacher_features))
        return attention_loss(student_features, teacher_features)

    @classmethod
    def for_models(cls, kind, student, teacher, probe):
        """Reads the feature shapes from one forward pass of each model on `probe` (N >= 2)."""
        with torch.no_grad():
            was_training = student.training
            s_shape = student.eval().forward_features(probe)[1].shape[1:]
            student.train(was_training)
            t_shape = teacher.forward_features(probe)[1].shape[1:]
        return cls(kind, s_shape, t_shape)
