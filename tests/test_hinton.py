"""Hinton, Vinyals & Dean (2015) on full MNIST: the shipped teacher (Hinton et al. 2012's recipe), its
second and third copies, and the pair distilled from both at T=20. Their test errors are counted by a forward pass written out
in numpy, not by the models' own code, and must be what results/README.md says they are."""
import json
import re

import numpy as np
import pytest

from kdapp import checkpoints, data
from kdapp.evaluation import selection
from kdapp.tools.reproduce import RESULTS_DIR

FILES = {"teacher": "mlp_1200-mnist.pt", "copy2": "mlp_1200-mnist-copy2.pt", "copy3": "mlp_1200-mnist-copy3.pt",
         "kd": "mlp_800-kd-mnist.pt", "baseline": "mlp_800-baseline-mnist.pt"}
SCORE = {"teacher": "test_acc", "copy2": "test_acc", "copy3": "test_acc", "kd": "student_acc",
         "baseline": "baseline_acc"}  # in metrics


def numpy_errors(model, x, y):
    """Test errors of a 784-h-h-10 ReLU MLP from its weights alone (dropout is off at test time)."""
    w = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
    h = np.maximum(x.reshape(len(x), -1) @ w["fc1.weight"].T + w["fc1.bias"], 0)
    h = np.maximum(h @ w["fc2.weight"].T + w["fc2.bias"], 0)
    return int(((h @ w["fc3.weight"].T + w["fc3.bias"]).argmax(1) != y).sum())


def documented_errors():
    """{role: errors} from results/README.md's checkpoint table, e.g. '| `mlp_800-kd-mnist.pt` | ... | (98 errors) |'."""
    text = (RESULTS_DIR / "README.md").read_text(encoding="utf-8")
    return {role: int(re.search(rf"^\| `{re.escape(name)}` \|.*\((\d+) errors\) \|$", text, re.M).group(1))
            for role, name in FILES.items()}


@pytest.fixture(scope="module")
def shipped():
    return {role: checkpoints.load(checkpoints.SHIPPED_DIR / name) for role, name in FILES.items()}


def test_the_shipped_hinton_models_score_what_the_results_say(mnist_dir, shipped):
    mnist = data.load("mnist", mnist_dir)
    x, y = mnist.test_x.double().numpy(), mnist.test_y.numpy()
    errors = {role: numpy_errors(model, x, y) for role, (model, _) in shipped.items()}
    assert errors == documented_errors()
    for role, (_, meta) in shipped.items():  # what a checkpoint says it scored is what it scores
        assert round((1 - meta["metrics"][SCORE[role]]) * 10_000) == errors[role], role
    # KD's gain clears the 95% interval of a difference of two accuracies on 10,000 digits (±0.30 points, 30 errors, here)
    assert errors["teacher"] < errors["kd"] < errors["baseline"] - 30, errors


def test_they_were_trained_by_the_papers_recipe(shipped):
    for role, seed in (("teacher", 0), ("copy2", 1), ("copy3", 2)):  # the other copies: the same recipe, the next seeds
        teacher = shipped[role][1]
        assert teacher["data"] == "mnist" and teacher["arch"] == "mlp_1200"
        for phase in (teacher["config"], teacher["config"]["init"]):  # 250 epochs, then 40 averaging the weights
            assert phase["augment"] == "shift2" and phase["max_norm"] == 3.5 and phase["seed"] == seed
        assert teacher["config"]["swa"] and teacher["config"]["init"]["epochs"] == 250
    for role in ("kd", "baseline"):
        config = shipped[role][1]["config"]
        assert (config["student"], config["temperature"], config["train_fraction"], config["augment"]) == \
            ("mlp_800", 20.0, 1.0, False)  # T=20 on the unjittered transfer set, every digit
        # the cumbersome model: both teachers, each read at the 25 shifts of -2..2 px (the students never see them)
        assert (config["teacher"], config["extra_teachers"], config["teacher_shifts"]) == ("mlp_1200", ["mlp_1200"], 2)


@pytest.mark.slow
def test_the_shipped_students_are_the_seeds_the_validation_rule_chose(mnist_dir, shipped):
    """results/hinton-selection.json is `select --json`'s record: the shipped KD student and baseline are
    its choices, and their errors on the 480,000 moved training digits are recounted here."""
    record = json.loads((RESULTS_DIR / "hinton-selection.json").read_text(encoding="utf-8"))
    mnist = data.load("mnist", mnist_dir)
    for role in ("kd", "baseline"):
        model, meta = shipped[role]
        scores = {int(seed): errors for seed, errors in record[role]["validation_errors"].items()}
        assert sorted(scores) == [0, 1, 2, 3, 4]
        assert meta["config"]["seed"] == record[role]["chosen_seed"] == selection.choose(scores)
        assert selection.validation_errors(model, mnist.train_x, mnist.train_y) == scores[meta["config"]["seed"]]
        assert record[role]["test_errors"][str(meta["config"]["seed"])] == documented_errors()[role]
