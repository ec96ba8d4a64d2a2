"""Choosing the shipped student among seeds by held-out digits: the score is recounted here in numpy,
the tie rule and the refusals are checked, and the test split is never read."""
import json

import numpy as np
import pytest
import torch

from kdapp import checkpoints, cli, data, models
from kdapp.evaluation import selection


def numpy_shift(x, dy, dx, fill):
    """x (N,1,28,28) moved dy px down and dx px right, written out with slices, not padding."""
    out = np.full_like(x, fill)
    h, w = x.shape[-2:]
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def numpy_errors(model, x, y):
    w = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
    h = np.maximum(x.reshape(len(x), -1) @ w["fc1.weight"].T + w["fc1.bias"], 0)
    h = np.maximum(h @ w["fc2.weight"].T + w["fc2.bias"], 0)
    return int(((h @ w["fc3.weight"].T + w["fc3.bias"]).argmax(1) != y).sum())


@pytest.fixture(scope="module")
def digits():
    sample = data.load("sample")
    return sample.train_x[:300], sample.train_y[:300]


def trained(arch, x, y, seed, steps=60):
    """A model that reads digits somewhat (random weights would get every moved digit wrong alike)."""
    torch.manual_seed(seed)
    model = models.build(arch)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def test_the_one_pixel_offsets_are_the_eight_neighbours():
    assert sorted(selection.ONE_PIXEL) == sorted({(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)} - {(0, 0)})


def test_validation_errors_match_a_numpy_count_of_the_moved_digits(digits):
    x, y = digits
    model = trained("mlp_30", x, y, seed=0)
    xn, yn = x.double().numpy(), y.numpy()
    expected = sum(numpy_errors(model, numpy_shift(xn, dy, dx, data.BACKGROUND), yn) for dy, dx in selection.ONE_PIXEL)
    assert 0 < expected < len(x) * 8  # a count that could have been anything
    assert selection.validation_errors(model, x, y) == expected


def test_the_fewest_errors_win_and_ties_go_to_the_lower_seed():
    assert selection.choose({3: 10, 1: 12, 4: 9}) == 4
    assert selection.choose({3: 9, 1: 12, 2: 9}) == 2
    with pytest.raises(ValueError):
        selection.choose({})


def save_candidate(directory, model, seed, acc, **config):
    for kind in ("kd", "baseline"):
        checkpoints.save(checkpoints.student_path(directory, "mlp_30", kind, "sample"), model, "mlp_30",
                         config={"seed": seed, "temperature": 20.0, **config}, data="sample",
                         metrics={"student_acc": acc, "baseline_acc": acc})


def test_the_cli_copies_the_candidate_with_fewer_validation_errors_without_reading_the_test_digits(
        tmp_path, digits, monkeypatch, capsys):
    x, y = digits
    weak, strong = trained("mlp_30", x, y, seed=1, steps=3), trained("mlp_30", x, y, seed=2)
    assert selection.validation_errors(strong, x, y) < selection.validation_errors(weak, x, y)
    # the weak one claims the better test score: the choice must not look at it
    save_candidate(tmp_path / "s1", weak, seed=1, acc=0.99)
    save_candidate(tmp_path / "s2", strong, seed=2, acc=0.5)
    no_test = data.Dataset(train_x=x, train_y=y, test_x=None, test_y=torch.zeros(10_000), source="sample")
    monkeypatch.setattr(data, "load", lambda *a, **k: no_test)
    out = tmp_path / "out"
    assert cli.main(["select", "--candidates", str(tmp_path / "s1"), str(tmp_path / "s2"), "--student", "mlp_30",
                     "--data", "sample", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["kd"]["chosen_seed"] == report["baseline"]["chosen_seed"] == 2
    assert report["kd"]["test_errors"] == {"1": 100, "2": 5000}  # reported beside, after the choice
    chosen, meta = checkpoints.load(checkpoints.student_path(out, "mlp_30", "kd", "sample"))
    assert meta["config"]["seed"] == 2
    assert all(torch.equal(a, b) for a, b in zip(chosen.state_dict().values(), strong.state_dict().values()))


def test_candidates_of_different_recipes_or_the_same_seed_are_refused(tmp_path, digits, capsys):
    x, y = digits
    model = trained("mlp_30", x, y, seed=0, steps=1)
    save_candidate(tmp_path / "a", model, seed=0, acc=0.9)
    save_candidate(tmp_path / "b", model, seed=1, acc=0.9, temperature=4.0)
    save_candidate(tmp_path / "c", model, seed=0, acc=0.9)
    for pair, message in ((("a", "b"), "different recipes"), (("a", "c"), "its own seed")):
        assert cli.main(["select", "--candidates", *(str(tmp_path / d) for d in pair), "--student", "mlp_30",
                         "--data", "sample"]) == 2
        assert message in capsys.readouterr().err
