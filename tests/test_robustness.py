"""Other writers and other pens: the redrawing, consistent teaching, and the shipped models' targets."""
import copy
import types

import numpy as np
import pytest
import torch

from kdapp import checkpoints, data as data_lib
from kdapp.evaluation import robustness
from kdapp.training import targets, teachers, train
from kdapp.config import RunConfig


def test_redrawing_is_deterministic_for_a_seed():
    images, labels = robustness.uci_digits()
    assert images.shape == (1797, 32, 32) and images.dtype == np.uint8 and len(set(labels.tolist())) == 10
    a, pick_a = robustness.redrawn(images, seed=5, limit=40)
    b, pick_b = robustness.redrawn(images, seed=5, limit=40)
    c, _ = robustness.redrawn(images, seed=6, limit=40)
    assert torch.equal(a, b) and np.array_equal(pick_a, pick_b)
    assert not torch.equal(a, c)
    assert a.shape == (40, 1, 28, 28)


def test_consistent_teaching_runs_the_teacher_on_the_augmented_batch(sample, shipped_teacher, monkeypatch):
    """The teacher must see exactly the augmented images the student and the baseline see, and
    the cached (un-augmented) soft targets must not be used."""
    augmented = []
    real_pen = data_lib.random_pen

    def recording_pen(x, generator=None):
        out = real_pen(x, generator)
        augmented.append(out)
        return out
    monkeypatch.setattr(data_lib, "random_pen", recording_pen)
    monkeypatch.setattr(targets, "cached_logits", lambda key, teacher, x, *a, **k: pytest.fail(
        "consistent teaching must not use the cached soft targets") if x is sample.train_x else
        teachers.teacher_pass(teacher, x))

    small = data_lib.Dataset(sample.train_x[:256], sample.train_y[:256], sample.test_x[:200], sample.test_y[:200],
                             "sample")
    seen = {"teacher": [], "students": []}

    def watch(model, key):
        def forward_stages(self, x):  # every forward of a zoo model goes through it
            if key == "teacher" or self.training:  # leave out the students' evaluation passes
                seen[key].append(x)
            return type(self).forward_stages(self, x)
        # A bound method: deepcopy (the baseline is a copy of the student) rebinds it to the copy.
        model.forward_stages = types.MethodType(forward_stages, model)
        return model
    teacher = copy.deepcopy(shipped_teacher)
    watch(teacher, "teacher")
    original_build = targets.build
    monkeypatch.setattr(targets, "build", lambda name: watch(original_build(name), "students"))
    train.distill(RunConfig(epochs=1, batch_size=64, consistent=True, train_fraction=1.0), [teacher], small)

    teacher_batches = [x for x in seen["teacher"] if len(x) == 64]  # leave out its test-set pass
    assert len(augmented) == 4 and len(teacher_batches) == 4
    for aug, t_in in zip(augmented, teacher_batches):
        assert torch.equal(aug, t_in), "the teacher ran on something other than the augmented batch"
    # The KD student and its baseline (a deep copy) both trained on each augmented batch ...
    for aug in augmented:
        assert sum(torch.equal(aug, s) for s in seen["students"]) == 2
        # ... which is not the raw digits.
        assert not any(torch.equal(aug[0], raw) for raw in small.train_x)


@pytest.mark.slow
def test_shipped_drawing_models_read_other_writers(mnist_dir):
    """The shipped drawing models on the whole redrawn UCI set and 2,000 redrawn MNIST test digits
    (full MNIST's test split: they trained on full MNIST) meet the issue's targets: UCI teacher
    >= 95%, KD student >= 92% and within 3 points of it, MNIST >= 98% for both."""
    models = robustness.shipped_models()
    assert set(models) == {"teacher", "student", "baseline"}
    report = robustness.evaluate(models, data_dir=mnist_dir, mnist_limit=2000,
                                 trained_on=trained_on())
    assert report["mnist"]["source"] == "mnist" and report["uci"]["n"] == 1797
    assert robustness.check_targets(report) == [], report


@pytest.mark.slow
def test_kd_carries_robustness_to_a_student_that_lacks_it(mnist_dir):
    """The articles' pair (seed_teacher → seed_student), trained with the shipped recipe: the
    one-conv student alone reads UCI's writers badly, and consistent KD lifts it well past its
    baseline on the same augmented batches, short of the drawing's targets."""
    roles = checkpoints.ARTICLES_DRAWING
    report = robustness.evaluate(robustness.shipped_models(roles), data_dir=mnist_dir, mnist_limit=500,
                                 trained_on=trained_on(roles))
    uci = report["uci"]["accuracy"]
    assert uci["student"] - uci["baseline"] >= 0.03, uci
    assert any("UCI" in m for m in robustness.check_targets(report)), uci


def trained_on(roles=None):
    """The data sets the shipped drawing models (or the trio `roles`) were trained on, from their checkpoints."""
    paths = checkpoints.shipped_drawing_paths(roles=roles).values()
    return tuple(sorted({checkpoints.load(path)[1].get("data") for path in paths}))
