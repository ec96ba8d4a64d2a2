"""The methods beyond classic KD, each trained end to end from the CLI with --json on the real
sample: DKD, DIST, LS-KD, Gram matching, multi-teacher features, born-again self-distillation and
deep-supervision self-distillation, and Hinton's held-out class (with its bias correction checked
by hand)."""
import json

import pytest
import torch

from kdapp import checkpoints, cli
from kdapp.evaluation import fidelity
from kdapp.training import train
from kdapp.config import RunConfig
from kdapp.models import build


def distill_json(capsys, tmp_path, *argv):
    code = cli.main(["distill", "--quiet", "--json", "--train-fraction", "1", "--runs-dir", str(tmp_path / "runs"), *argv])
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    return json.loads(out.out.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["dkd", "dist", "lskd"])
def test_each_logit_loss_trains_end_to_end(capsys, tmp_path, loss):
    m = distill_json(capsys, tmp_path, "--loss", loss, "--epochs", "2")
    assert m["train_samples"] == 8000 and m["student_acc"] > 0.9 and m["baseline_acc"] > 0.9


def test_dkd_and_dist_show_their_own_parts_as_curves():
    for loss, names in (("dkd", {"tckd", "nckd"}), ("dist", {"inter", "intra"})):
        seen = []
        train.run(RunConfig(loss=loss, epochs=1, train_fraction=0.1), emit=seen.append)
        steps = [e for e in seen if e["type"] == "step"]
        assert steps and all(set(e["parts"]) == names for e in steps)
        assert all(v >= 0 for e in steps for v in e["parts"].values())


@pytest.mark.slow
def test_gram_matching_with_two_teachers_averages_their_features(capsys, tmp_path):
    m = distill_json(capsys, tmp_path, "--teachers", "seed_teacher,lenet5", "--feature-loss", "gram",
                     "--epochs", "1", "--train-fraction", "0.5")
    assert len(m["teacher_accs"]) == 2 and m["student_acc"] > 0.85


def test_gram_is_refused_for_an_mlp_before_the_run(capsys, tmp_path):
    assert cli.main(["distill", "--student", "mlp_30", "--feature-loss", "gram", "--runs-dir", str(tmp_path)]) == 2
    assert "Gram matching needs conv feature maps" in capsys.readouterr().err


def test_born_again_generations_and_their_checkpoints(capsys, tmp_path):
    out = tmp_path / "out"
    m = distill_json(capsys, tmp_path, "--teacher", "self", "--generations", "2", "--epochs", "1",
                     "--train-fraction", "0.25", "--out", str(out))
    gens = m["generations"]
    assert len(gens) == 3 and m["baseline_acc"] == gens[0] and m["student_acc"] == gens[2]
    assert m["teacher_acc"] == pytest.approx(gens[1], abs=1e-6)  # generation 1 taught generation 2
    paths = checkpoints.drawing_paths(out)  # teacher (generation 1), student, baseline: all the student's arch
    assert {checkpoints.load(p)[1]["arch"] for p in paths.values()} == {"seed_student"}
    with pytest.raises(ValueError, match="only teacher"):
        RunConfig(teacher="self", extra_teachers=("lenet5",))


def test_deep_supervision_trains_with_no_teacher_at_all(capsys, tmp_path):
    """The feature article's self-distillation: heads on the student's shallower layers learn from
    its deepest one. No teacher is built, loaded or saved; the shipped student is the plain
    architecture (the heads and adapters are dropped)."""
    out = tmp_path / "out"
    m = distill_json(capsys, tmp_path, "--teacher", "self", "--self-distill", "deep",
                     "--epochs", "2", "--train-fraction", "0.25", "--out", str(out))
    assert m["teacher_acc"] is None and m["teacher_accs"] == [] and m["student_acc"] > 0.75  # 2 short epochs
    assert not (tmp_path / "runs" / "teachers").exists() and not list(out.glob("*self*"))
    student, meta = checkpoints.load(next(out.glob("seed_student-kd-*.pt")))
    assert meta["arch"] == "seed_student" and student.state_dict().keys() == build("seed_student").state_dict().keys()
    assert checkpoints.drawing_paths(out).keys() == {"student", "baseline"}  # a drawing folder with no teacher
    with pytest.raises(ValueError, match="its own feature loss"):
        RunConfig(teacher="self", self_distill="deep", feature_loss="hint")
    with pytest.raises(ValueError, match="self_distill must be one of"):
        RunConfig(teacher="self", self_distill="byot")


def test_deep_supervision_heads_learn_from_the_final_layer():
    """Its step events carry the heads' soft term and the hint, and the final layer's CE falls. (The
    soft term, and with it the total, rises at first: a near-uniform final softmax is an easy
    target, a confident one a hard target.)"""
    seen = []
    train.run(RunConfig(teacher="self", self_distill="deep", epochs=2, train_fraction=0.2), emit=seen.append)
    steps = [e for e in seen if e["type"] == "step"]
    assert steps and all(e["feature"] is not None and e["feature"] >= 0 for e in steps)
    assert all(e["soft"] >= 0 for e in steps)
    assert steps[-1]["hard"] < steps[0]["hard"] / 2


def test_deep_supervision_heads_learn_from_the_deepest_layer(sample):
    """On a fixed batch, the loss trains the shallow head (the conv map's adapter and classifier)
    toward the final layer's answers: after 60 steps it agrees with them far more often."""
    from kdapp.training.features import DeepSupervision
    from kdapp.losses import self_distillation_loss
    torch.manual_seed(0)
    student = build("seed_student")
    x, y = sample.train_x[:128], sample.train_y[:128]
    deep = DeepSupervision.for_model(student, x[:2])
    optimizer = torch.optim.Adam([*student.parameters(), *deep.parameters()], lr=0.003)

    def head_agreement():
        with torch.no_grad():
            logits, stages = student.forward_stages(x)
            return (deep(stages)[0][0].argmax(1) == logits.argmax(1)).float().mean().item()
    before = head_agreement()
    for _ in range(60):
        logits, stages = student.forward_stages(x)
        aux, hint = deep(stages)
        loss = self_distillation_loss(logits, aux, y, 4.0, 0.7).total + hint
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert head_agreement() > before + 0.5, (before, head_agreement())  # measured: 0.02 -> 0.72
    with pytest.raises(ValueError, match="needs teacher=self"):
        RunConfig(self_distill="deep")


def test_bias_correction_by_hand():
    """Three digits, class 0 held out: raising its logit by the chosen shift makes it the answer
    for exactly as many digits as there are 0s (one here)."""
    logits = torch.tensor([[1.0, 3.0, 0.0], [0.0, 0.5, 2.0], [2.5, 2.0, 0.0]])
    labels = torch.tensor([0, 2, 0])
    assert fidelity.bias_for_share(logits, 0, 1) == pytest.approx((-0.5 + 2.0) / 2)  # between the two flips
    report = fidelity.omitted_class(logits, labels, 0)
    # before: digit 0 -> 1 (wrong), digit 1 -> 2 (right), digit 2 -> 0 (right)
    assert (report["errors"], report["omitted_errors"], report["omitted_acc"]) == (1, 1, 0.5)
    assert report["omitted_test_digits"] == 2
    # shifting to make 0 the answer for two digits: digit 2 (needs -0.5) and digit 0 (needs 2.0)
    two = fidelity.bias_for_share(logits, 0, 2)
    assert 2.0 < two < 2.0 + 1e-3 or two == pytest.approx((2.0 + 2.0) / 2)


@pytest.mark.slow
def test_missing_three_kd_student_reads_threes_it_never_saw(capsys, tmp_path):
    """Hinton's experiment on the sample: neither student sees a 3. The baseline reads none; the
    KD student reads some from the teacher's soft targets alone, and more after the bias correction."""
    # The round-1 recipe, 4 epochs: short and still clear. (The app's preset also turns shifts off.)
    m = distill_json(capsys, tmp_path, "--omit-class", "3", "-T", "20", "--alpha", "0.9", "--epochs", "4",
                     "--lr", "0.005", "--no-augment")
    assert m["omitted_class"] == 3 and m["omitted_test_digits"] == 200
    assert m["train_samples"] == 8000 - 832  # the sample's training 3s, all gone
    assert m["baseline_omitted_acc"] <= 0.02
    assert m["student_omitted_acc"] >= m["baseline_omitted_acc"] + 0.2
    assert m["student_omitted_acc_adjusted"] >= m["student_omitted_acc"]
