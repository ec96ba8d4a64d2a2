"""Quantization-aware distillation: fine-tune a finished student through int8 fake quantization.

The student is fine-tuned with its weights and activations rounded to the int8 grid that
kdapp.evaluation.quantize exports with (weights int8 symmetric per output channel; the input,
every ReLU's output and the logits uint8 per tensor), so it learns weights that survive the
rounding. Rounding has no gradient; the straight-through estimator (Bengio et al., 2013) passes
the gradient through unchanged inside the representable range and stops it outside, as
`torch.fake_quantize_per_*_affine` do. This is QAT (Jacob et al., CVPR 2018) with the KD loss
from the fp32 teacher (Polino et al., "Model compression via distillation and quantization",
ICLR 2018; Mishra & Marr, "Apprentice", ICLR 2018): the KD student keeps its teacher during QAT,
the baseline gets the same QAT with the labels alone, so the comparison stays fair.

After fine-tuning the fake quantization is removed and the latent fp32 weights are exported:
onnxruntime's quantize_static then rounds them to exactly the integers training saw (the same
per-channel symmetric rule; a test holds the two equal), and recalibrates the activation ranges.
"""
import copy
import math
import tempfile
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from kdapp import data as data_lib, events
from kdapp.losses import LOGIT_LOSSES, distillation_loss, teacher_log_probs
from kdapp.models import build
from kdapp.training.teachers import Cancelled, evaluate, predict_logits, shift_readings
from kdapp.training.optim import AdamCosine

WEIGHT_QMAX = 127          # int8 weights in [-127, 127]: symmetric, as onnxruntime's symmetric int8
ACTIVATION_QMAX = 255      # uint8 activations in [0, 255]
RANGE_MOMENTUM = 0.01      # activation ranges: a moving average of each batch's min and max
QAT_EPOCHS = 1             # a finished student needs little: full MNIST is 469 steps an epoch
QAT_LR_FACTOR = 0.1        # fine-tuning at a tenth of the run's learning rate keeps what it learned


def weight_scales(weight):
    """One scale per output channel: max|w| / 127 (1 for an all-zero channel, as onnxruntime)."""
    absmax = weight.detach().abs().flatten(1).amax(1)
    return torch.where(absmax > 0, absmax / WEIGHT_QMAX, torch.ones_like(absmax)).float()


def fake_quantize_weight(weight):
    """`weight` rounded to its per-channel int8 grid and back: round(w / s) * s, q in [-127, 127]."""
    scales = weight_scales(weight)
    zero = torch.zeros(len(scales), dtype=torch.int32, device=weight.device)
    return torch.fake_quantize_per_channel_affine(weight, scales, zero, 0, -WEIGHT_QMAX, WEIGHT_QMAX)


def activation_qparams(low, high):
    """(scale, zero point) of a uint8 tensor holding [low, high], as onnxruntime computes them:
    the range stretched to hold 0 (so that 0, a ReLU's floor, is exact), s = (high - low) / 255,
    z = round(-low / s)."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    scale = (high - low) / ACTIVATION_QMAX
    if scale < torch.finfo(torch.float32).tiny:
        return 1.0, 0
    return scale, int(round(-low / scale))


def fake_quantize_activation(x, low, high):
    scale, zero_point = activation_qparams(low, high)
    return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, 0, ACTIVATION_QMAX)


class FakeQuantWeight(nn.Module):
    """A parametrization: the layer computes with its weight's int8 version."""

    def forward(self, weight):
        return fake_quantize_weight(weight)


class FakeQuantActivation(nn.Module):
    """Rounds a tensor to uint8 over the range it has seen (moving min and max while training,
    frozen in eval), the range onnxruntime's calibration would give it."""

    def __init__(self):
        super().__init__()
        self.register_buffer("low", torch.tensor(float("nan")))
        self.register_buffer("high", torch.tensor(float("nan")))

    def forward(self, x):
        if self.training:
            low, high = x.detach().min(), x.detach().max()
            if torch.isnan(self.low):
                self.low.copy_(low)
                self.high.copy_(high)
            else:
                self.low.lerp_(low, RANGE_MOMENTUM)
                self.high.lerp_(high, RANGE_MOMENTUM)
        if torch.isnan(self.low):
            return x  # nothing seen yet: no range to round to
        return fake_quantize_activation(x, self.low.item(), self.high.item())


def _is_relu(node, modules):
    if node.op == "call_function":
        return node.target in (F.relu, torch.relu)
    return node.op == "call_module" and isinstance(modules.get(node.target), nn.ReLU)


def prepare(model):
    """A copy of `model` that computes as its int8 export will: fake-quantized weights in every
    Conv2d and Linear, and fake-quantized activations where onnxruntime puts them (the input,
    each ReLU's output, the logits; max-pooling and flattening keep a tensor on its grid).
    Traced with torch.fx, so every model of the zoo works without a quantized twin."""
    model = copy.deepcopy(model).cpu().train()
    traced = torch.fx.symbolic_trace(model)
    graph, modules = traced.graph, dict(traced.named_modules())
    count = 0

    def quantize_after(node):
        nonlocal count
        name = f"activation_quant_{count}"
        count += 1
        traced.add_submodule(name, FakeQuantActivation())
        with graph.inserting_after(node):
            quantized = graph.call_module(name, (node,))
        node.replace_all_uses_with(quantized, delete_user_cb=lambda user: user is not quantized)

    for node in list(graph.nodes):
        if node.op == "placeholder" or _is_relu(node, modules):
            quantize_after(node)
        elif node.op == "output":
            quantize_after(node.args[0])
    graph.eliminate_dead_code()
    traced.recompile()
    for module in traced.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            parametrize.register_parametrization(module, "weight", FakeQuantWeight())
    return traced


@torch.no_grad()
def calibrate(prepared, x):
    """Set every activation range to the min and max over the digits `x` (one batch), as
    onnxruntime's MinMax calibration does; the model is left in eval mode, its ranges frozen."""
    for module in prepared.modules():
        if isinstance(module, FakeQuantActivation):
            module.low.fill_(float("nan"))
            module.high.fill_(float("nan"))
    prepared.train()(x)
    return prepared.eval()


def finish(prepared, arch):
    """The fine-tuned latent fp32 weights as a plain model of the zoo (in eval mode): what the
    ONNX export reads and onnxruntime quantizes."""
    prepared = copy.deepcopy(prepared)
    for module in prepared.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
    state = {k: v for k, v in prepared.state_dict().items() if not k.startswith("activation_quant_")}
    model = build(arch)
    model.load_state_dict(state)
    return model.eval()


def fine_tune(model, arch, dataset, config, teachers=(), epochs=QAT_EPOCHS, seed=0, emit=None,
              should_stop=lambda: False, label="student", teacher_logits=None):
    """Quantization-aware fine-tuning of `model` on the training split: with the KD loss of
    `config` (temperature, alpha, loss) from the fp32 `teachers`, or with labels alone when there
    are none. Batches are augmented as the run's were. As in distill(), consistent teaching asks
    the teachers about every pen-augmented batch, and otherwise their soft targets over the
    training set are computed once (or given as `teacher_logits`, one (N,10) tensor per teacher
    and shift-ensemble reading, config.teacher_shifts) and a ±2 px shift keeps the unshifted digit's
    target. Returns (fp32 model with the fine-tuned
    weights, fake-quantized test accuracy)."""
    emit = emit or (lambda event: None)
    device = dataset.train_x.device
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    student = prepare(model).to(device).train()
    n = len(dataset.train_y)
    steps_per_epoch = math.ceil(n / config.batch_size)
    optimizer = AdamCosine(student.parameters(), config.lr * QAT_LR_FACTOR, epochs * steps_per_epoch)
    how = f"KD from {'+'.join(config.teachers)}" if teachers else "labels only"
    emit(events.phase("quantization-aware training",
                      f"int8 fine-tuning of the {label} ({how}), {epochs} epoch{'s' * (epochs > 1)}"))
    settings = {name: getattr(config, name) for name in LOGIT_LOSSES[config.loss].settings}  # e.g. DKD's weights
    soft_targets = None
    if teachers and not config.consistent:
        logits = teacher_logits or [reading for t in teachers  # one reading each, or a shift ensemble's
                                    for reading in shift_readings(t, dataset.train_x, config.teacher_shifts,
                                                                  should_stop)]
        soft_targets = teacher_log_probs([l.to(device) for l in logits], config.temperature, config.loss)
    for epoch in range(epochs):
        student.train()
        for idx in torch.randperm(n, generator=generator).to(device).split(config.batch_size):
            if should_stop():
                raise Cancelled("stopped")
            x, y = dataset.train_x[idx], dataset.train_y[idx]
            if config.consistent:
                x = data_lib.random_pen(x, generator=generator)
            elif config.augment:
                x = data_lib.random_shift(x, generator=generator)
            logits = student(x)
            if teachers:
                if soft_targets is not None:
                    targets = soft_targets[idx]
                else:
                    with torch.no_grad():
                        targets = teacher_log_probs([t(x) for t in teachers], config.temperature, config.loss)
                loss = distillation_loss(logits, targets, y, config.temperature, config.alpha, config.loss,
                                         **settings).total
            else:
                loss = F.cross_entropy(logits, y)
            optimizer.step(loss)
    student.eval()
    acc = evaluate(student, dataset.test_x, dataset.test_y)
    return finish(student.cpu(), arch), acc


INT8_FILES = {"student": "student-int8.onnx", "baseline": "baseline-int8.onnx"}


def deploy(result, dataset, method, out_dir, teachers=(), emit=None, should_stop=lambda: False, timing=True,
           teacher_test_logits=None):
    """A finished run's students as int8 ONNX, and the table that says what it cost.

    `method` is "ptq" (calibrate and convert the fp32 students) or "qat" (fine_tune() them first:
    the KD student with the KD loss from `teachers`, the baseline with the labels alone). Writes
    INT8_FILES into `out_dir` and returns (kdapp.evaluation.quantize.summary: the `quantized`
    object of `distill --json`, {role: int8 path}). Agreement with the teacher is with
    `teacher_test_logits` (the soft targets' ensemble's answers, when they came from one), else with
    the first teacher's single reading of the test digits."""
    from kdapp.evaluation import quantize  # lazy: onnxruntime is needed by quantized runs only
    if method not in ("ptq", "qat"):
        raise ValueError(f"quantize must be ptq or qat to deploy, got {method!r}")
    emit = emit or (lambda event: None)
    config, device = result.config, dataset.train_x.device
    # The run's teachers; born-again has none pretrained, and its teacher is the last generation.
    teachers = [t for t in teachers if t is not None] or [t for t in (result.teacher,) if t is not None]
    teachers = [copy.deepcopy(t).to(device).eval() for t in teachers]
    fp32 = {role: model for role in INT8_FILES if (model := getattr(result, role)) is not None}
    deployed = dict(fp32)
    if method == "qat":
        if not teachers:
            raise ValueError("quantization-aware distillation needs the run's teacher; a run without one "
                             "(deep supervision) can use quantize=ptq")
        for role, model in fp32.items():
            deployed[role], _ = fine_tune(model, config.student, dataset, config,
                                          teachers if role == "student" else (), seed=config.seed, emit=emit,
                                          should_stop=should_stop, label=role)
    emit(events.phase("quantizing", "int8: calibrating on training digits and measuring size and speed"))
    calibration = quantize.calibration_images(dataset.train_x, seed=config.seed)
    out_dir = Path(out_dir)
    paths, files = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for role, model in deployed.items():
            # The fp32 file is the run's own student (before any fine-tuning): the reference the
            # int8 file is sized and compared against.
            reference = quantize.export_fp32(fp32[role].cpu(), config.student, Path(tmp) / f"{role}-fp32.onnx",
                                             dataset.source)
            tuned = quantize.export_fp32(model.cpu(), config.student, Path(tmp) / f"{role}-deployed.onnx",
                                         dataset.source)
            files[role] = (reference, quantize.quantize_onnx(tuned, out_dir / INT8_FILES[role], calibration))
            paths[f"{role}_int8"] = str(files[role][1])
        teacher_logits = None if teacher_test_logits is None else teacher_test_logits.cpu().numpy()
        if teachers and teacher_logits is None:
            teacher_logits = predict_logits(teachers[0], dataset.test_x).cpu().numpy()
        rows = quantize.compare(files, dataset.test_x, dataset.test_y, teacher_logits, timing=timing)
    return quantize.summary(method, rows), paths
