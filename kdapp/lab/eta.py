"""When the queue's runs will start and end: estimates from the measured speed of recent finished runs.

`estimator(store)` gives config -> expected seconds; `schedule(running, queued, workers, estimate)`
gives each run its `position`, `eta_s` and (queued ones) `starts_in_s`, the worker that frees first
taking the next run, as kdapp.lab.jobs's dispatchers do.
"""
import statistics

from kdapp.lab.live_run import FINISHED

FALLBACK_S_PER_EPOCH = 1.3  # the default run (15 epochs of 8,000 digits) takes ~20 s on 2 vCPUs
SPLITS = {"mnist": (60000, 10000), "sample": (8000, 2000)}  # (train, test) digits
# One teacher reading one digit, as a share of one digit's distillation epoch (KD student + baseline),
# by teacher: measured here on the sample, both in one process (teacher_pass over the 8,000 training
# digits against train_students' train_seconds per digit-epoch, which holds the loop and its
# per-epoch evaluations but not loading or saving): seed_teacher → seed_student 0.97, lenet5_wide →
# lenet5 0.44, mlp_1200 → mlp_800 0.10. Other teachers count as a full epoch. Teachers read online
# (consistent teaching, feature losses) read each batch instead; the epochs' rate already holds that.
READING_SHARE = {"seed_teacher": 0.97, "lenet5_wide": 0.44, "mlp_1200": 0.10}
# One epoch of training a missing teacher, per digit, as a share of one digit's distillation epoch of the
# default pair (seed_teacher → seed_student, KD student + baseline): measured here on the sample in one
# process (train_teacher for 1 epoch of the 8,000 digits, its test evaluation included, against
# distill's train_seconds per digit-epoch; 2 vCPUs, 2026-12-02). A teacher outside this table counts
# as a full distillation epoch.
TRAIN_SHARE = {"seed_teacher": 6.9, "seed_student": 0.60, "mlp_1200": 1.45, "mlp_800": 0.53, "lenet5": 0.54,
               "lenet5_wide": 2.3, "mlp_30": 0.12, "mlp_400": 0.32}


def estimator(store, work_ahead=None):
    """config -> expected seconds, from the measured seconds per epoch of recent finished runs.

    `work_ahead(config)` -> (teachers to train, readings to compute), as kdapp.training.targets.work_ahead
    finds them on disk: then a missing teacher's training counts, and a reading already cached does
    not. Without it (or when it fails), every reading beyond the first teacher's plain one counts
    (extra_readings), and every teacher is taken as trained."""
    rates = {}
    for r in store.list(limit=50, states=(FINISHED,), curves=False):
        m = r["metrics"] or {}
        if m.get("seconds") and m.get("train_samples"):
            c = r["config"]
            train, test = SPLITS.get(c["data"], SPLITS["sample"])  # a run's readings are in its seconds too
            rates.setdefault(c["data"], []).append(
                m["seconds"] / (c["epochs"] * m["train_samples"] + extra_readings(c) * (train + test)))
    default = FALLBACK_S_PER_EPOCH / 8000

    def estimate(config):
        per_sample_epoch = statistics.median(rates.get(config["data"], [default]))
        train, test = SPLITS.get(config["data"], SPLITS["sample"])
        if config.get("kind") == "continual":  # several strategies, each over every task
            from kdapp.training import continual  # lazy: the server imports torch only when it must
            return per_sample_epoch * continual.equivalent_epochs(config) * train
        return per_sample_epoch * (config["epochs"] * max(1, config["train_fraction"] * train)
                                   + _before_learning(config, train, test, work_ahead))
    return estimate


def _before_learning(config, train, test, work_ahead):
    """Digit-epochs of distillation that a run's teacher training and readings are worth."""
    if work_ahead is not None:
        try:
            to_train, readings = work_ahead(config)
        except Exception:  # an estimate is never worth a failed page: count every reading instead
            to_train, readings = None, None
        if readings is not None:
            return (sum(READING_SHARE.get(arch, 1.0) * (train if split == "train" else test) for arch, split in readings)
                    + sum(TRAIN_SHARE.get(arch, 1.0) * config.get("teacher_epochs", 20) * train for arch, _ in to_train))
    return extra_readings(config) * (train + test)


def extra_readings(config):
    """The teacher passes a run makes beyond its first teacher's one plain reading, in digit-epochs
    of distillation per digit read: each teacher reads the whole training split (and, for the
    ensemble's test accuracy, the test split) at each of a shift ensemble's (2k+1)² offsets
    (kdapp.training.targets). The nominal count: it is what a finished run's rate is measured
    against, and a pending run's estimate without work_ahead, which knows what is cached."""
    offsets = (2 * config.get("teacher_shifts", 0) + 1) ** 2
    teachers = [config.get("teacher"), *config.get("extra_teachers", [])]
    return sum(offsets * READING_SHARE.get(t, 1.0) for t in teachers) - READING_SHARE.get(teachers[0], 1.0)


def remaining(run, estimate):
    """Seconds until a running run ends: its own ETA once it is distilling, else the estimate less its time so far."""
    if run["progress"]["phase"] == "distilling" and run["progress"]["eta_s"] is not None:
        return run["progress"]["eta_s"]
    return max(0.0, estimate(run["config"]) - run["elapsed_s"])


def schedule(running, queued, workers, estimate):
    """The running runs (position 0) then the queued ones (1 = next), each with its ETA."""
    free_at = sorted([remaining(r, estimate) for r in running] + [0.0] * (workers - len(running)))
    out = [dict(r, position=0, eta_s=remaining(r, estimate)) for r in running]
    for position, r in enumerate(queued, 1):
        start = free_at.pop(0)  # the worker that frees first takes the next run
        done = start + estimate(r["config"])
        free_at = sorted(free_at + [done])
        out.append(dict(r, position=position, starts_in_s=start, eta_s=done))
    return out
