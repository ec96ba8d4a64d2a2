"""Downloads of a finished run's model: the checkpoint as a `.pt`, or the network as ONNX.

The `.pt` is the checkpoint itself ({"model", "arch", "config", ...}), re-saved after it has
been rebuilt once, so it loads with `torch.load(path, weights_only=True)` and
`kdapp.models.build(payload["arch"]).load_state_dict(payload["model"])` and needs nothing
else. The ONNX file needs no kdapp and no torch: input "image" (N,1,28,28) float32,
normalised as (pixel/255 - MNIST_MEAN) / MNIST_STD; output "logits" (N,10), raw as every
model here returns them (softmax gives class probabilities).

ONNX goes through the TorchScript exporter (`dynamo=False`). It is deprecated since torch
2.9 in favour of the torch.export-based one, but on these small static graphs it gives the
same operators and numbers while needing only `onnx`; the new exporter also needs
`onnxscript`, takes ~0.7 s instead of ~0.02 s, prints progress to stdout, and by default
writes the weights to a second `.data` file.
"""
import io

import torch

from kdapp import checkpoints
from kdapp.data import MNIST_MEAN, MNIST_STD

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
# Every operator these models use (Conv, MaxPool, Gemm, Relu, Flatten) exists since opset 13;
# 18 is read by onnxruntime >= 1.14 and is also the lowest the torch.export-based exporter
# writes, so moving to that exporter later keeps the files the same opset.
OPSET = 18


def export_pt(checkpoint_path, out_path):
    """Write the checkpoint at `checkpoint_path` to `out_path` as a self-contained `.pt`.

    Raises checkpoints.CheckpointError if the checkpoint is missing, corrupt or does not
    rebuild its architecture, so a download is never a file that cannot be used."""
    checkpoints.load(checkpoint_path)  # rebuilds the model: the verification
    payload = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    return checkpoints.atomic_save(payload, out_path)


def export_onnx(checkpoint_path, out_path):
    """Write the checkpoint's model, in eval mode, to `out_path` as ONNX with a dynamic batch.

    The file's metadata_props carry arch, data, created and the normalisation constants, so a
    consumer can tell what the model expects from the file alone. Raises
    checkpoints.CheckpointError for a missing or broken checkpoint, and ImportError with the
    install line when `onnx` is absent."""
    try:
        import onnx  # lazy: only this download needs it, and torch.onnx.export does too
    except ImportError as e:
        raise ImportError("ONNX export needs the onnx package: pip install 'onnx>=1.17'") from e
    model, meta = checkpoints.load(checkpoint_path)
    example = torch.zeros(2, 1, 28, 28)  # any batch size; the batch axis is exported as dynamic
    buffer = io.BytesIO()
    torch.onnx.export(
        model.eval(), (example,), buffer, dynamo=False, opset_version=OPSET,
        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    proto = onnx.load_model_from_string(buffer.getvalue())
    onnx.helper.set_model_props(proto, {
        "arch": meta["arch"],
        "data": str(meta.get("data")),
        "created": str(meta.get("created")),
        "mnist_mean": repr(MNIST_MEAN),
        "mnist_std": repr(MNIST_STD),
    })
    proto.doc_string = (f"kdapp {meta['arch']}: {INPUT_NAME} (N,1,28,28) float32 = "
                        f"(pixel/255 - {MNIST_MEAN}) / {MNIST_STD} -> {OUTPUT_NAME} (N,10)")
    onnx.checker.check_model(proto)
    content = proto.SerializeToString()
    return checkpoints.atomic_write(out_path, lambda f: f.write(content))
