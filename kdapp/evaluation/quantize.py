"""int8 students: post-training static quantization of the ONNX export, and what it costs and gains.

The path is ONNX Runtime's `quantize_static` on the file `kdapp.evaluation.export` already
writes, not torch's own: `torch.ao.quantization` (eager and FX modes) is deprecated and being
removed, and its successor, torchao's PT2E flow, is a new dependency whose quantized model
runs in torch only. The int8 ONNX is the artefact itself: it is what downloads, what
onnxruntime (and onnxruntime-web in the browser) runs, and what the tables measure, so
every number below is measured on the very file a user gets. docs/deployment.md has the
whole argument and the measured table.

The scheme (QDQ: QuantizeLinear/DequantizeLinear pairs that onnxruntime fuses into integer
kernels), which kdapp.training.qat's fake quantization mirrors:
- weights: int8, symmetric, one scale per output channel: q = round(w / s), s = max|w_c| / 127,
  q in [-127, 127];
- activations (the input image, every ReLU's output, the logits): uint8, asymmetric, one scale
  per tensor from the min and max seen on calibration digits: s = (max - min) / 255 with the
  range stretched to hold 0, zero point z = round(-min / s);
- biases: int32 at scale s_input * s_weight (their error is below anything int8 adds).
"""
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from kdapp import checkpoints
from kdapp.evaluation import export

CALIBRATION_DIGITS = 512  # training digits whose activations set the ranges; more changes nothing at 1e-3
CALIBRATION_BATCH = 64
LATENCY_BATCHES = (1, 256)  # one drawn digit; a batch as a server scoring many would send
EVAL_BATCH = 1000


def _ort():
    try:
        import onnxruntime  # lazy: only quantized runs and their tables need it
    except ImportError as e:
        raise ImportError("int8 quantization needs onnxruntime: pip install 'onnxruntime>=1.19'") from e
    return onnxruntime


def calibration_images(train_x, n=CALIBRATION_DIGITS, seed=0):
    """`n` training digits drawn with `seed`, as the float32 numpy array the ONNX input takes."""
    generator = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(train_x), generator=generator)[:n]
    return train_x[idx.to(train_x.device)].detach().cpu().numpy().astype(np.float32)


class _NoPreprocessingAdvice(logging.Filter):
    """quantize_static advises shape inference first (onnxruntime.quantization.preprocess), for
    models whose shapes it cannot infer; ours have static shapes, and the advice is noise."""

    def filter(self, record):
        return "pre-processing" not in record.getMessage()


def quantize_onnx(fp32_path, out_path, calibration):
    """Write the int8 (QDQ) version of the fp32 ONNX file at `fp32_path` to `out_path`.

    `calibration` is a float32 array (N,1,28,28) of normalised training digits. The file keeps
    the fp32 file's input and output names and shapes and its metadata (arch, normalisation), so
    any consumer of the fp32 export runs it unchanged."""
    _ort()  # the clear install line when it is absent
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Digits(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{export.INPUT_NAME: calibration[i:i + CALIBRATION_BATCH]}
                                 for i in range(0, len(calibration), CALIBRATION_BATCH)])

        def get_next(self):
            return next(self.batches, None)

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        raw = Path(tmp) / "int8.onnx"
        quiet = _NoPreprocessingAdvice()
        logging.getLogger().addFilter(quiet)
        try:
            quantize_static(str(fp32_path), str(raw), Digits(), quant_format=QuantFormat.QDQ, per_channel=True,
                            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
        finally:
            logging.getLogger().removeFilter(quiet)
        proto = onnx.load(str(raw))
    fp32 = onnx.load(str(fp32_path))
    props = {p.key: p.value for p in fp32.metadata_props}
    onnx.helper.set_model_props(proto, {**props, "precision": "int8 (QDQ, per-channel weights)"})
    proto.doc_string = fp32.doc_string + " [int8: QDQ, weights per channel, activations uint8 per tensor]"
    onnx.checker.check_model(proto)
    content = proto.SerializeToString()
    return checkpoints.atomic_write(out_path, lambda f: f.write(content))


def export_fp32(model, arch, out_path, data=None):
    """A model in memory -> its fp32 ONNX file, through the download's own exporter."""
    with tempfile.TemporaryDirectory() as tmp:
        pt = checkpoints.save(Path(tmp) / "model.pt", model, arch, data=data)
        return export.export_onnx(pt, out_path)


def session(path, threads=1):
    """An onnxruntime session on one thread: latency on a shared CPU is steadiest that way, and the
    app answers one drawing per request."""
    ort = _ort()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_logits(path_or_session, x, batch_size=EVAL_BATCH):
    """Logits (N,10) as numpy from the ONNX file (or session) over `x` (a tensor or an array)."""
    sess = session(path_or_session) if isinstance(path_or_session, (str, os.PathLike)) else path_or_session
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    return np.concatenate([sess.run([export.OUTPUT_NAME], {export.INPUT_NAME: x[i:i + batch_size]})[0]
                           for i in range(0, len(x), batch_size)])


class OnnxModel:
    """An ONNX file (an int8 student) called as the drawing calls a torch model: x (N,1,28,28) ->
    logits as a tensor, computed by onnxruntime, the runtime its table was measured with."""

    def __init__(self, path):
        self.session = session(path)

    def __call__(self, x):
        return torch.from_numpy(onnx_logits(self.session, x))


def latency_ms(sess, batch, repeats=30, warmup=5):
    """Median wall time (ms) of one call at this batch size, on test-like zeros."""
    x = np.zeros((batch, 1, 28, 28), dtype=np.float32)
    for _ in range(warmup):
        sess.run(None, {export.INPUT_NAME: x})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sess.run(None, {export.INPUT_NAME: x})
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def agreement(a, b):
    """Top-1 agreement of two logit arrays (or label vectors)."""
    a = np.asarray(a)
    b = np.asarray(b)
    a = a.argmax(1) if a.ndim == 2 else a
    b = b.argmax(1) if b.ndim == 2 else b
    return float((a == b).mean())


def measure(path, test_x, test_y, teacher_logits=None, reference_logits=None, timing=True):
    """One table row for the ONNX file at `path`: bytes on disk, test accuracy, top-1 agreement with
    the teacher and with `reference_logits` (the fp32 model's), and latency at LATENCY_BATCHES.
    Returns (row, logits) so the caller can compare files with each other."""
    sess = session(path)
    logits = onnx_logits(sess, test_x)
    labels = test_y.detach().cpu().numpy() if isinstance(test_y, torch.Tensor) else np.asarray(test_y)
    row = {"bytes": os.path.getsize(path), "test_acc": agreement(logits, labels),
           "agreement_with_teacher": None if teacher_logits is None else agreement(logits, teacher_logits),
           "agreement_with_fp32": None if reference_logits is None else agreement(logits, reference_logits)}
    if timing:
        for batch in LATENCY_BATCHES:
            row[f"latency_ms_b{batch}"] = latency_ms(sess, batch)
            row[f"digits_per_s_b{batch}"] = batch * 1000 / row[f"latency_ms_b{batch}"]
    return row, logits


def compare(files, test_x, test_y, teacher_logits=None, timing=True):
    """Rows for the deployment table: `files` is {role: (fp32 ONNX path, int8 ONNX path)}, for
    example {"student": ..., "baseline": ...}. Each role gives an fp32 row and an int8 row, the
    int8 one with its agreement with the fp32 file and its size as a fraction of it. Plain data."""
    rows = []
    for role, (fp32_path, int8_path) in files.items():
        fp32_row, fp32_logits = measure(fp32_path, test_x, test_y, teacher_logits, timing=timing)
        int8_row, _ = measure(int8_path, test_x, test_y, teacher_logits, fp32_logits, timing=timing)
        int8_row["size_vs_fp32"] = int8_row["bytes"] / fp32_row["bytes"]
        rows.append({"model": role, "precision": "fp32", **fp32_row})
        rows.append({"model": role, "precision": "int8", **int8_row})
    return rows


def summary(method, rows):
    """The `quantized` object of `distill --json`, from compare()'s rows."""
    by = {(r["model"], r["precision"]): r for r in rows}
    get = lambda role, precision, key: by[(role, precision)][key] if (role, precision) in by else None
    return {"method": method,
            "student_acc": get("student", "int8", "test_acc"),
            "baseline_acc": get("baseline", "int8", "test_acc"),
            "fp32_student_acc": get("student", "fp32", "test_acc"),
            "student_bytes": get("student", "int8", "bytes"),
            "fp32_student_bytes": get("student", "fp32", "bytes"),
            "agreement_with_fp32": get("student", "int8", "agreement_with_fp32"),
            "baseline_agreement_with_fp32": get("baseline", "int8", "agreement_with_fp32"),
            "rows": rows}
