"""The queue's time estimates (kdapp.lab.eta): from the measured speed of finished runs, with the
teacher readings a shift ensemble or several teachers add, and the order in which workers free."""
import pytest

from kdapp.config import RunConfig
from kdapp.lab import eta


class Store:
    """The one query eta makes of kdapp.lab.store.RunStore: recent finished runs, without curves."""

    def __init__(self, runs):
        self.runs = runs

    def list(self, limit, states, curves):
        return self.runs[:limit]


def finished(data, epochs, train_samples, seconds):
    return {"config": {"data": data, "epochs": epochs}, "metrics": {"seconds": seconds, "train_samples": train_samples}}


def config(**settings):
    return RunConfig(**settings).to_dict()


def test_the_estimate_is_the_median_measured_rate_times_the_digits_seen():
    # 1e-3, 2e-3 and 4e-3 s per digit-epoch on the sample: the median is 2e-3
    estimate = eta.estimator(Store([finished("sample", 10, 800, 8.0), finished("sample", 10, 800, 16.0),
                                    finished("sample", 5, 800, 16.0), finished("mnist", 1, 60000, 60.0)]))
    assert estimate(config(epochs=40, train_fraction=0.1)) == pytest.approx(2e-3 * 40 * 800)
    assert estimate(config(data="mnist", epochs=2, train_fraction=1.0)) == pytest.approx(1e-3 * 2 * 60000)
    # with no finished run yet: the fallback rate
    assert eta.estimator(Store([]))(config(epochs=15, train_fraction=1.0)) == pytest.approx(
        eta.FALLBACK_S_PER_EPOCH * 15)


def test_a_shift_ensemble_or_a_second_teacher_adds_its_readings():
    estimate = eta.estimator(Store([finished("sample", 10, 800, 8.0)]))  # 1e-3 s per digit-epoch
    plain = config(teacher="lenet5_wide", student="lenet5", epochs=10, train_fraction=0.1)
    assert eta.extra_readings(plain) == 0
    shifted = dict(plain, teacher_shifts=2)  # 25 readings where there was 1, of 8,000 + 2,000 digits
    assert eta.extra_readings(shifted) == pytest.approx(24 * eta.READING_SHARE["lenet5_wide"])
    assert estimate(shifted) - estimate(plain) == pytest.approx(1e-3 * 24 * 0.44 * 10000)
    two = dict(plain, extra_teachers=["seed_teacher"], teacher_shifts=1)  # 9 readings by each
    assert eta.extra_readings(two) == pytest.approx(8 * 0.44 + 9 * 0.97)
    assert eta.extra_readings(dict(plain, teacher="mutual")) == 0  # no pretrained teacher to read


def test_a_finished_run_s_readings_are_not_counted_as_its_epochs():
    # 8 s for 10 epochs of 800 digits and 24 readings of 10,000 at 0.44: the rate is per digit-epoch
    shifted = dict(config(teacher="lenet5_wide", student="lenet5", teacher_shifts=2, data="sample"), epochs=10)
    run = {"config": shifted, "metrics": {"seconds": 8.0, "train_samples": 800}}
    rate = 8.0 / (10 * 800 + 24 * 0.44 * 10000)
    estimate = eta.estimator(Store([run]))
    assert estimate(config(teacher="lenet5_wide", epochs=10, train_fraction=0.1)) == pytest.approx(rate * 10 * 800)


def test_workers_take_the_queue_in_order_as_they_free():
    def run(seconds, elapsed=0.0, phase="teacher logits"):
        return {"config": {"seconds": seconds}, "elapsed_s": elapsed, "progress": {"phase": phase, "eta_s": None}}

    estimate = lambda c: c["seconds"]  # noqa: E731
    running = [run(100, elapsed=30), dict(run(0), progress={"phase": "distilling", "eta_s": 10.0})]
    queued = [run(50), run(20), run(5)]
    out = eta.schedule(running, queued, workers=2, estimate=estimate)
    assert [r["eta_s"] for r in out[:2]] == [70, 10.0]  # the estimate less its time; its own ETA once distilling
    # the worker free at 10 takes the first (ends 60), the one free at 60 the second (80), at 70 the third
    assert [(r["position"], r["starts_in_s"], r["eta_s"]) for r in out[2:]] == [(1, 10, 60), (2, 60, 80), (3, 70, 75)]


def test_a_missing_teacher_counts_its_training_and_a_cached_reading_counts_nothing():
    estimate_plain = eta.estimator(Store([finished("sample", 10, 800, 8.0)]))  # 1e-3 s per digit-epoch
    plain = config(teacher="mlp_30", extra_teachers=("mlp_30",), epochs=10, train_fraction=0.1, teacher_epochs=5)
    ahead = {"to_train": [("mlp_30", 2)], "readings": [("mlp_30", "train"), ("seed_teacher", "test")]}
    estimate = eta.estimator(Store([finished("sample", 10, 800, 8.0)]),
                             lambda c: (ahead["to_train"], ahead["readings"]))
    # 5 epochs of 8,000 digits at mlp_30's share, one uncounted-share reading of 8,000, one seed_teacher test reading
    want = 1e-3 * (10 * 800 + 0.12 * 5 * 8000 + 1.0 * 8000 + 0.97 * 2000)
    assert estimate(plain) == pytest.approx(want)
    ahead.update(to_train=[], readings=[])  # everything on disk: the epochs alone
    assert estimate(plain) == pytest.approx(1e-3 * 10 * 800)

    def broken(c):
        raise OSError("the cache folder went away")
    assert eta.estimator(Store([finished("sample", 10, 800, 8.0)]), broken)(plain) == pytest.approx(estimate_plain(plain))


def test_work_ahead_finds_on_disk_what_a_real_run_leaves_there(tmp_path):
    """Before a run: copy 2 of mlp_30 to train and all 2 × 9 readings of the training and test digits to
    compute; after it, nothing: the run saved the teacher and cached every reading under the keys
    work_ahead computes. The queue asks the same of a stored config."""
    from kdapp.lab.jobs import RunQueue
    from kdapp.lab.store import RunStore
    from kdapp.training import targets, train
    run = RunConfig(teacher="mlp_30", extra_teachers=("mlp_30",), teacher_shifts=1, epochs=1, train_fraction=0.05,
                    teacher_epochs=1, baseline=False)
    to_train, readings = targets.work_ahead(run, tmp_path)
    assert to_train == [("mlp_30", 2)]  # copy 1 ships for the sample; copy 2 does not
    assert sorted(readings) == sorted([("mlp_30", "train")] * 18 + [("mlp_30", "test")] * 18)
    train.run(run, runs_dir=tmp_path)
    assert targets.work_ahead(run, tmp_path) == ([], [])
    one = run.replace(extra_teachers=(), teacher_shifts=2)  # 16 more offsets of copy 1, both splits
    assert targets.work_ahead(one, tmp_path) == ([], [("mlp_30", split) for _ in range(16) for split in ("train", "test")])
    assert targets.work_ahead(run.replace(teacher="mutual", extra_teachers=(), teacher_shifts=0), tmp_path) == ([], [])
    queue = RunQueue(RunStore(tmp_path), data_dir=tmp_path / "data")
    try:
        assert queue.work_ahead(run.to_dict()) == ([], [])
        assert queue.work_ahead(run.replace(teacher="mlp_400", extra_teachers=(), teacher_shifts=0).to_dict())[0] == [("mlp_400", 1)]
    finally:
        queue.close()
