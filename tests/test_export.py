"""Downloads: the .pt rebuilds from the file alone, and the ONNX file, run by onnxruntime
(an independent implementation), gives the logits torch gives."""
import numpy as np
import onnxruntime as ort
import pytest
import torch

from kdapp import checkpoints
from kdapp.evaluation import export
from kdapp.data import MNIST_MEAN, MNIST_STD
from kdapp.models import ARCHITECTURES, build


def torch_logits(model, x):
    with torch.no_grad():
        return model.eval()(x).numpy()


def onnx_logits(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([export.OUTPUT_NAME], {export.INPUT_NAME: x.numpy()})[0]


def rebuild_from_pt(path):
    """What a user of the download does: no kdapp.checkpoints, no pickled code."""
    payload = torch.load(path, weights_only=True)
    model = build(payload["arch"])
    model.load_state_dict(payload["model"])
    return model.eval(), payload


def normalised_noise(n, generator):
    """Random pixels in [0,1], normalised as MNIST is, so inputs sit in the models' range."""
    return (torch.rand(n, 1, 28, 28, generator=generator) - MNIST_MEAN) / MNIST_STD


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_both_downloads_give_the_models_logits(tmp_path, arch):
    torch.manual_seed(0)
    model = build(arch).eval()
    checkpoint = checkpoints.save(tmp_path / "run.pt", model, arch, {"epochs": 1}, "sample", {"student_acc": 0.5})

    pt = export.export_pt(checkpoint, tmp_path / "download" / f"{arch}.pt")
    onnx_path = export.export_onnx(checkpoint, tmp_path / "download" / f"{arch}.onnx")
    assert sorted(p.name for p in pt.parent.iterdir()) == sorted([f"{arch}.pt", f"{arch}.onnx"])  # no temp or .data files

    generator = torch.Generator().manual_seed(1)
    for batch in (5, 1):  # 1 differs from the batch the export traced: the batch axis is dynamic
        x = normalised_noise(batch, generator)
        expected = torch_logits(model, x)

        rebuilt, payload = rebuild_from_pt(pt)
        assert np.array_equal(torch_logits(rebuilt, x), expected)
        assert payload["arch"] == arch and payload["data"] == "sample" and payload["metrics"] == {"student_acc": 0.5}

        got = onnx_logits(onnx_path, x)
        assert got.shape == (batch, 10) and got.dtype == np.float32
        assert np.abs(got - expected).max() <= 1e-4


def test_onnx_file_describes_its_input_and_model(tmp_path):
    checkpoint = checkpoints.save(tmp_path / "run.pt", build("seed_student"), "seed_student", data="sample")
    session = ort.InferenceSession(str(export.export_onnx(checkpoint, tmp_path / "m.onnx")),
                                   providers=["CPUExecutionProvider"])
    (image,), (logits,) = session.get_inputs(), session.get_outputs()
    assert (image.name, image.type, image.shape[1:]) == ("image", "tensor(float)", [1, 28, 28])
    assert (logits.name, logits.shape[1:]) == ("logits", [10])
    assert isinstance(image.shape[0], str) and isinstance(logits.shape[0], str)  # symbolic batch
    props = session.get_modelmeta().custom_metadata_map
    assert props["arch"] == "seed_student" and props["data"] == "sample"
    assert float(props["mnist_mean"]) == MNIST_MEAN and float(props["mnist_std"]) == MNIST_STD


def test_shipped_student_reads_real_digits_the_same_after_export(tmp_path, sample):
    shipped = checkpoints.student_path(checkpoints.SHIPPED_DIR, "seed_student", "kd", "sample")
    model, _ = checkpoints.load(shipped)
    x, y = sample.test_x[:32], sample.test_y[:32].numpy()
    expected = torch_logits(model, x)
    assert (expected.argmax(1) == y).sum() >= 30  # the reference itself reads these digits

    rebuilt, _ = rebuild_from_pt(export.export_pt(shipped, tmp_path / "student.pt"))
    assert np.array_equal(torch_logits(rebuilt, x), expected)

    got = onnx_logits(export.export_onnx(shipped, tmp_path / "student.onnx"), x)
    assert np.array_equal(got.argmax(1), expected.argmax(1))
    assert np.abs(got - expected).max() <= 1e-4


@pytest.mark.parametrize("exporter", [export.export_pt, export.export_onnx])
def test_missing_or_corrupt_checkpoint_is_a_clear_error_and_writes_nothing(tmp_path, exporter):
    out = tmp_path / "out" / "download"
    with pytest.raises(checkpoints.CheckpointError, match="does not exist"):
        exporter(tmp_path / "nope.pt", out)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(checkpoints.save(tmp_path / "good.pt", build("mlp_30"), "mlp_30").read_bytes()[:3000])
    with pytest.raises(checkpoints.CheckpointError, match="corrupt"):
        exporter(corrupt, out)
    assert not out.parent.exists()
