"""Fidelity numbers against an independent computation (numpy loops over a small fixed set), and
the same numbers from a real run, stored with it."""
import math

import numpy as np
import pytest
import torch

from kdapp.evaluation import fidelity
from kdapp.training import train
from kdapp.config import RunConfig

# Six digits, labels 0..2; each row: teacher, student, baseline logits.
Y = [0, 1, 2, 0, 1, 2]
TEACHER = [[4, 1, 0], [0, 3, 1], [1, 0, 2], [2, 2.5, 0], [0, 5, 0], [0, 1, 3]]
STUDENT = [[3, 0, 0], [1, 2, 0], [0, 2, 1], [1, 3, 0], [0, 4, 1], [0, 0, 2]]
BASELINE = [[0, 2, 0], [0, 3, 0], [0, 1, 3], [3, 0, 0], [2, 1, 0], [0, 0, 1]]


def _softmax(row, T):
    e = [math.exp(v / T) for v in row]
    return [v / sum(e) for v in e]


def _pad(rows):  # the module works on 10 classes; pad with very negative logits
    return torch.tensor([r + [-30.0] * 7 for r in rows])


@pytest.fixture
def result():
    x = torch.randn(6, 1, 28, 28)
    return fidelity.fidelity({"teacher": _pad(TEACHER), "student": _pad(STUDENT), "baseline": _pad(BASELINE)},
                             torch.tensor(Y), 2.0, x), x


def test_agreement_accuracy_and_kl_match_a_hand_computation(result):
    out, _ = result
    argmax = lambda rows: [max(range(3), key=r.__getitem__) for r in rows]
    t, s, b = argmax(TEACHER), argmax(STUDENT), argmax(BASELINE)
    assert out["accuracy"]["student"] == pytest.approx(np.mean([p == y for p, y in zip(s, Y)]))
    assert out["agreement"]["student"] == pytest.approx(np.mean([p == q for p, q in zip(s, t)]))
    assert out["agreement"]["baseline"] == pytest.approx(np.mean([p == q for p, q in zip(b, t)]))
    for role, rows in (("student", STUDENT), ("baseline", BASELINE)):
        for key, T in (("T1", 1.0), ("T", 2.0)):
            want = np.mean([sum(p * math.log(p / q) for p, q in zip(_softmax(tr, T), _softmax(r, T)))
                            for tr, r in zip(TEACHER, rows)])
            assert out["kl"][role][key] == pytest.approx(want, rel=1e-4, abs=1e-5)


def test_confusions_per_class_and_where_kd_changed_the_answer(result):
    out, x = result
    argmax = lambda rows: [max(range(3), key=r.__getitem__) for r in rows]
    s, b = argmax(STUDENT), argmax(BASELINE)
    for role, rows in (("student", STUDENT), ("baseline", BASELINE)):
        want = np.zeros((10, 10), int)
        for y, p in zip(Y, argmax(rows)):
            want[y][p] += 1
        np.testing.assert_array_equal(out["confusion"][role], want)
        for c in range(3):
            mine = [p == y for p, y in zip(argmax(rows), Y) if y == c]
            assert out["per_class"][role][c] == pytest.approx(np.mean(mine))
    fixed = [i for i in range(6) if s[i] == Y[i] and b[i] != Y[i]]
    broken = [i for i in range(6) if s[i] != Y[i] and b[i] == Y[i]]
    assert out["fixed"]["index"] == fixed and out["broken"]["index"] == broken
    assert out["fixed"]["count"] - out["broken"]["count"] == round(
        (out["accuracy"]["student"] - out["accuracy"]["baseline"]) * 6)
    # Thumbnails are the digits themselves, and each carries all three softmaxes.
    images = fidelity.decode_images(out["fixed"]["images"])
    np.testing.assert_array_equal(images, fidelity.to_uint8(x[fixed]).numpy())
    assert out["fixed"]["probs"]["teacher"][0][:3] == pytest.approx(_softmax(TEACHER[fixed[0]], 1.0), abs=1e-4)


@pytest.mark.slow
def test_a_run_stores_fidelity_and_its_net_count_is_the_kd_gain(tmp_path, sample):
    result = train.run(RunConfig(epochs=1, seed=2), runs_dir=tmp_path)
    f, m = result.fidelity, result.metrics
    assert f["test_samples"] == len(sample.test_y) == m["test_samples"]
    assert f["accuracy"]["student"] == pytest.approx(m["student_acc"], abs=1e-6)
    assert f["fixed"]["count"] - f["broken"]["count"] == round((m["student_acc"] - m["baseline_acc"]) * 2000)
    assert len(f["fixed"]["index"]) == min(32, f["fixed"]["count"])
    # Independent recount of agreement from the saved checkpoints.
    from kdapp import checkpoints
    from kdapp.training.teachers import predict_logits
    student, _ = checkpoints.load(result.paths["student"])
    teacher, _ = checkpoints.load(result.paths["teacher"])
    agree = (predict_logits(student, sample.test_x).argmax(1) == predict_logits(teacher, sample.test_x).argmax(1))
    assert f["agreement"]["student"] == pytest.approx(agree.float().mean().item(), abs=1e-6)


def test_an_ensemble_teacher_is_its_readings_probabilities_averaged():
    """Two readings of the teacher: its answers are those of the mean of their softmaxes at T=1, and each
    KL is against the mean of their softmaxes at that T (not the softmax of an averaged logit)."""
    second = [[0, 4, 0], [0, 3, 1], [3, 0, 0], [4, 0, 0], [0, 5, 0], [1, 0, 0]]
    out = fidelity.fidelity({"teacher": [_pad(TEACHER), _pad(second)], "student": _pad(STUDENT)},
                            torch.tensor(Y), 2.0, torch.randn(6, 1, 28, 28))
    mean = lambda a, b, T: [(p + q) / 2 for p, q in zip(_softmax(a, T), _softmax(b, T))]
    answers = [max(range(3), key=mean(a, b, 1.0).__getitem__) for a, b in zip(TEACHER, second)]
    assert answers != [max(range(3), key=r.__getitem__) for r in TEACHER]  # the check can tell them apart
    assert out["teacher_readings"] == 2
    assert out["accuracy"]["teacher"] == pytest.approx(np.mean([p == y for p, y in zip(answers, Y)]))
    s = [max(range(3), key=r.__getitem__) for r in STUDENT]
    assert out["agreement"]["student"] == pytest.approx(np.mean([p == q for p, q in zip(s, answers)]))
    for key, T in (("T1", 1.0), ("T", 2.0)):
        want = np.mean([sum(p * math.log(p / q) for p, q in zip(mean(a, b, T)[:3], _softmax(r, T)))
                        for a, b, r in zip(TEACHER, second, STUDENT)])
        assert out["kl"]["student"][key] == pytest.approx(want, rel=1e-4, abs=1e-5)


@pytest.mark.slow
def test_a_shift_ensemble_run_measures_its_students_against_the_ensemble(tmp_path, sample):
    """teacher_shifts=1: the fidelity panel and the int8 table compare the students with the 9 readings'
    averaged probabilities, recounted here in float64 numpy from the saved teacher and the int8 file."""
    pytest.importorskip("onnxruntime")
    from kdapp import checkpoints
    from kdapp.data import shift
    from kdapp.evaluation import quantize
    from kdapp.training.teachers import predict_logits
    from kdapp.ui import run_report
    result = train.run(RunConfig(epochs=1, train_fraction=0.2, teacher_shifts=1, quantize="ptq", seed=3),
                       runs_dir=tmp_path)
    f = result.fidelity
    teacher, _ = checkpoints.load(result.paths["teacher"])
    x, y = sample.test_x, sample.test_y.numpy()
    probs = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            z = predict_logits(teacher, shift(x, dy, dx)).double().numpy()
            e = np.exp(z - z.max(1, keepdims=True))
            probs.append(e / e.sum(1, keepdims=True))
    answer = np.mean(probs, axis=0).argmax(1)
    single = predict_logits(teacher, x).argmax(1).numpy()
    student = predict_logits(result.student, x).argmax(1).numpy()
    assert (answer != single).any()  # the ensemble and the single reading differ somewhere: the check can fail
    assert f["teacher_readings"] == 9
    assert f["accuracy"]["teacher"] == pytest.approx((answer == y).mean(), abs=1e-6)
    assert f["agreement"]["student"] == pytest.approx((student == answer).mean(), abs=1e-6)
    int8 = quantize.onnx_logits(result.paths["student_int8"], x.numpy()).argmax(1)
    row = next(r for r in result.metrics["quantized"]["rows"] if (r["model"], r["precision"]) == ("student", "int8"))
    assert row["agreement_with_teacher"] == pytest.approx((int8 == answer).mean(), abs=1e-6)
    assert "9 readings" in run_report.fidelity_markdown(f)
