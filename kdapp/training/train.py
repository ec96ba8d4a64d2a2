"""A whole run, from its config to its saved students. The loops themselves are distill()
(kdapp.training.distillation) and train_teacher() (kdapp.training.teachers). Small functions with
explicit arguments; progress goes out through an
`emit(event)` callback (see kdapp.events) and cancellation comes in through `should_stop()`,
both checked every step, so the same code serves the CLI, the app's worker and the tests.

A run: get the teacher (checkpoint, or train it first), compute its soft targets over the
training set once, then train the KD student and a baseline student side by side: the same
architecture, the same initial weights, the same batches, hard labels only for the baseline.
"""
import time
from pathlib import Path

import torch

from kdapp import checkpoints, data as data_lib, events
from kdapp.training import distributed, resume as resume_lib, targets
from kdapp.evaluation import fidelity
from kdapp.config import MUTUAL, NO_PRETRAINED, SELF
from kdapp.losses import teacher_log_probs
from kdapp.models import build
from kdapp.training.distillation import RunResult, distill
from kdapp.training.teachers import (TEACHER_AUGMENTATIONS, Cancelled, cached_logits, channels_last, copy_seed,
                                     get_teacher, never, predict_logits, teacher_key, train_teacher,
                                     with_deadline)

# distill() lives in kdapp.training.distillation and train_teacher() in kdapp.training.teachers; both are
# named here too, as what a run is made of.
__all__ = ["TEACHER_AUGMENTATIONS", "Cancelled", "RunResult", "available_devices", "distill", "pick_device", "run",
           "train_teacher"]


def pick_device(name="auto"):
    """cuda, then mps, then cpu for "auto"; a named device that is missing is an error, not a fallback."""
    if name == "auto":
        return torch.device(available_devices()[0])
    if name != "cpu" and name not in available_devices():
        raise ValueError(f"device {name!r} was asked for, but no {name.upper()} device is available; "
                         "use 'auto' or 'cpu'")
    return torch.device(name)


def available_devices():
    """Best first."""
    names = ["cpu"]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        names.insert(0, "mps")
    if torch.cuda.is_available():
        names.insert(0, "cuda")
    return names


def _ignore(event):
    pass


def run_fidelity(result, teacher_key, dataset, cache_dir=None, readings=None):
    """kdapp.evaluation.fidelity over the test split for a finished distill(). The teacher is the soft
    targets' ensemble when they came from several readings (`readings`, from ensemble_readings), else
    the teacher's test logits from the cache that evaluated it (none without a teacher: deep
    supervision)."""
    test_x = dataset.test_x
    teacher = readings or (cached_logits(None if teacher_key is None else (*teacher_key, "test"), result.teacher,
                                         test_x, cache_dir=cache_dir) if result.teacher is not None else None)
    logits = {"teacher": teacher,
              "student": predict_logits(result.student, test_x),
              "baseline": predict_logits(result.baseline, test_x) if result.baseline is not None else None}
    return fidelity.fidelity(logits, dataset.test_y, result.config.temperature, test_x)


def ensemble_readings(config, teachers, teacher_keys, dataset, cache_dir=None, emit=_ignore, should_stop=never):
    """The readings the soft targets averaged (several teachers, or a shift ensemble's), taken on the test
    digits (kdapp.training.targets.ensemble_test_readings, cached), or None when they came from one."""
    count = len(teachers) * len(data_lib.shift_offsets(config.teacher_shifts))
    if count < 2 or None in teachers or targets.teacher_learns(config):
        return None
    emit(events.phase("fidelity", f"reading the test digits as the {count}-reading ensemble does"))
    return targets.ensemble_test_readings(config, teachers, teacher_keys, dataset.test_x, cache_dir, should_stop)


def ensemble_metrics(result, teachers, teacher_keys, dataset, cache_dir=None, emit=_ignore, should_stop=never,
                     readings=None):
    """When the soft targets came from an ensemble (several teachers, or a shift ensemble's readings;
    pass `readings` from ensemble_readings, or they are read here): its test accuracy at the run's T,
    as the targets average it (kdapp.losses.teacher_log_probs), and how often each student's top-1
    answer is the one those targets rank first. teacher_acc stays the first teacher's single reading;
    the fidelity panel measures the students against the ensemble at T=1. Empty for every other run."""
    config = result.config
    if readings is None:
        readings = ensemble_readings(config, teachers, teacher_keys, dataset, cache_dir, emit, should_stop)
    if readings is None:
        return {}
    answer = teacher_log_probs(readings, config.temperature, config.loss).argmax(1)
    out = {"targets_readings": len(readings), "targets_temperature": config.temperature,
           "targets_acc": (answer == dataset.test_y).float().mean().item()}
    for role in ("student", "baseline"):
        model = getattr(result, role)
        if model is not None:
            agree = predict_logits(model, dataset.test_x).argmax(1) == answer
            out[f"{role}_targets_agreement"] = agree.float().mean().item()
    return out


def born_again(config, dataset, emit=_ignore, should_stop=never, world=distributed.SINGLE):
    """Born-again networks (Furlanello et al., "Born-Again Neural Networks", ICML 2018): no
    pretrained teacher. Generation 0 is the student trained on labels alone, which is also the
    run's baseline; generation k distils from generation k-1, for config.generations generations.
    Every generation starts from the same initial weights (config.seed), so each differs from the
    last only in who taught it. Returns distill()'s RunResult for the last generation, its
    teacher generation K-1, the baseline generation 0 and metrics["generations"] (accuracies)."""
    augment = "pen" if config.consistent else ("shift2" if config.augment else "none")
    emit(events.phase("generation 0", f"generation 0: {config.student} on the labels alone"))
    previous, acc = train_teacher(config.student, dataset, config.epochs, lr=config.lr, batch_size=config.batch_size,
                                  seed=config.seed, augment=augment, emit=emit, should_stop=should_stop)
    gen0, accs = previous, [acc]
    for k in range(1, config.generations + 1):
        emit(events.phase("distilling", f"generation {k} of {config.generations} distils from generation {k - 1}"))
        result = distill(config.replace(baseline=False), [previous], dataset, emit, should_stop, world=world)
        accs.append(result.metrics["student_acc"])
        if k < config.generations:
            previous = result.student
    result.baseline = gen0
    result.config = config
    result.metrics.update(baseline_acc=accs[0], generations=accs)
    return result


def train_students(config, teachers, dataset, emit=_ignore, should_stop=never, teacher_keys=None, cache_dir=None,
                   world=distributed.SINGLE, resume=None):
    """The KD student and its baseline, however the config says they learn: from `teachers`, from
    an earlier generation of the student (born-again), from its own deepest layer, or beside a
    peer that learns from it in turn (mutual). With `resume`, every kind but born-again saves a point
    after each epoch and carries on from it (a teacher that learns, and CTKD's T, are in the point);
    born-again runs start over."""
    if config.deep_supervision:
        return distill(config, [], dataset, emit, should_stop, world=world, resume=resume)
    if config.teacher == MUTUAL:
        return distill(config, [mutual_peer(config, dataset)], dataset, emit, should_stop, world=world,
                       resume=resume)
    if config.teacher == SELF:
        return born_again(config, dataset, emit, should_stop, world)
    return distill(config, teachers, dataset, emit, should_stop, teacher_keys=teacher_keys, cache_dir=cache_dir,
                   world=world, resume=resume)


def mutual_peer(config, dataset):
    """Deep mutual learning's second network (Zhang et al. 2018): the student's architecture from
    other initial weights (seed + 1), untrained; distill() trains it beside the student."""
    torch.manual_seed(config.seed + 1)
    return channels_last(build(config.student).to(dataset.train_x.device))


def omitted_class_reports(result, dataset, omit_class):
    """{role: Hinton's counts for the held-out class} for the students a run has ({} without one)."""
    if omit_class is None:
        return {}
    return {role: fidelity.omitted_class(predict_logits(model, dataset.test_x), dataset.test_y, omit_class)
            for role in ("student", "baseline") if (model := getattr(result, role)) is not None}


def _run_metrics(result, dataset, device, world, started):
    """What a whole run adds to distill()'s metrics: where it ran, how long it took, Hinton's counts
    for a held-out class and, under torchrun, the learning rate and threads each rank used."""
    config, metrics = result.config, {}
    for role, report in omitted_class_reports(result, dataset, config.omit_class).items():
        metrics.update({f"{role}_{k}": v for k, v in report.items() if k not in ("omitted_class", "omitted_test_digits")})
        metrics.update(omitted_class=config.omit_class, omitted_test_digits=report["omitted_test_digits"])
    if world.distributed:
        metrics.update(lr=config.lr, threads_per_rank=world.threads)
    return dict(metrics, data=dataset.source, device=str(device), seconds=round(time.monotonic() - started, 2))


def _teacher(arch, copy, dataset, config, runs_dir, emit, should_stop):
    """A trained teacher: its checkpoint if there is one, else trained now (and saved for next time); copy 2,
    3, ... of an architecture with teachers.copy_seed."""
    found = get_teacher(arch, dataset, runs_dir, emit, copy)
    if found is not None:
        return found
    seed = copy_seed(config.seed, copy)
    model, acc = train_teacher(arch, dataset, config.teacher_epochs, seed=seed, emit=emit, should_stop=should_stop)
    if not runs_dir:
        return model, None, None
    path = checkpoints.save(checkpoints.teacher_path(Path(runs_dir) / "teachers", arch, dataset.source, copy), model,
                            arch, config={"epochs": config.teacher_epochs, "seed": seed, "augment": "shift2"},
                            data=dataset.source, metrics={"test_acc": acc})
    emit(events.phase("teacher", f"saved teacher to {path}"))
    # keyed as a saved teacher is, so its readings are cached for the next run too
    return model, teacher_key(path, dataset.source, dataset.train_x.device), str(path)


def run(config, emit=_ignore, should_stop=never, runs_dir=None, data_dir="data", out_dir=None,
        world=distributed.SINGLE, device=None, resume_path=None, resume_advice=None):
    """One whole run: data, teacher(s), KD + baseline, evaluation, and the students saved into
    `out_dir` (default runs_dir/latest). Trained teachers and the logit cache go under runs_dir.
    With `resume_path` the students' training saves a resume point there after each epoch, and
    resumes from the one it finds (kdapp.training.resume; single-process runs only); `resume_advice`,
    ResumePoint's (afresh, again), tells a user what to do when a point cannot be read or saved.

    Under torchrun, pass the World and device from kdapp.training.distributed.init: every rank trains, and
    only rank 0 computes the fidelity panel and saves (the others return without them)."""
    started = time.monotonic()
    stop_check = with_deadline(should_stop, config.time_limit_s)

    # One rank stopping on its own clock would leave the others waiting in an all-reduce:
    # a distributed run has no time limit (the app's runs are single-process).
    check = should_stop if world.distributed else stop_check
    if config.quantize != "none" and not (out_dir or runs_dir):
        raise ValueError("quantize needs a folder for the int8 files: give runs_dir or out_dir")
    emit(events.phase("loading data", "loading data"))
    device = device or pick_device(config.device)
    with distributed.main_first(world):  # one download, not one per rank
        dataset = data_lib.load(config.data, data_dir).to(device)
    emit(events.data(dataset.source, dataset.describe(), str(device)))
    if config.teacher in NO_PRETRAINED:  # no pretrained teacher to find
        found = [(None, None, None)]
    else:
        with distributed.main_first(world):  # rank 0 trains and saves a missing teacher; the others load it
            found = [_teacher(arch, copy, dataset, config, runs_dir, emit, check)
                     for arch, copy in config.teacher_copies]
    teachers, teacher_keys = [f[0] for f in found], [f[1] for f in found]
    cache_dir = Path(runs_dir) / "cache" if runs_dir else None  # the teachers' logits, shared by every run
    result = train_students(config, teachers, dataset, emit, check, teacher_keys=teacher_keys, world=world,
                            cache_dir=cache_dir,
                            resume=resume_lib.ResumePoint(resume_path, *(resume_advice or ())) if resume_path and not world.distributed
                            else None)
    if not world.main:
        return result
    emit(events.phase("fidelity", "comparing the students with the teacher on the test digits"))
    teacher_key = None if targets.teacher_learns(config) else found[0][1]  # a teacher that learned is not the cached one
    readings = ensemble_readings(config, teachers, teacher_keys, dataset, cache_dir, emit, check)
    result.fidelity = run_fidelity(result, teacher_key, dataset, cache_dir, readings)
    result.metrics.update(_run_metrics(result, dataset, device, world, started))
    result.metrics.update(ensemble_metrics(result, teachers, teacher_keys, dataset, readings=readings))
    result.paths["teacher"] = found[0][2]
    out_dir = out_dir or (Path(runs_dir) / "latest" if runs_dir else None)
    if out_dir:
        emit(events.phase("saving", "saving the students"))
        if config.teacher in NO_PRETRAINED and result.teacher is not None:  # born-again's last teacher, the peer
            result.paths["teacher"] = str(checkpoints.save(
                checkpoints.teacher_path(out_dir, config.teacher, dataset.source), result.teacher, config.student,
                config.to_dict(), dataset.source, {"test_acc": result.metrics["teacher_acc"]}))
        for kind, role in (("kd", "student"), ("baseline", "baseline")):
            model = getattr(result, role)
            if model is not None:
                path = checkpoints.student_path(out_dir, config.student, kind, dataset.source)
                result.paths[role] = str(checkpoints.save(path, model, config.student, config.to_dict(),
                                                          dataset.source, result.metrics))
    result.student = result.student.cpu().eval()
    if result.teacher is not None:
        result.teacher = result.teacher.cpu().eval()
    if result.baseline is not None:
        result.baseline = result.baseline.cpu().eval()
    if config.quantize != "none":  # int8 students beside the fp32 ones (kdapp.training.qat)
        from kdapp.training import qat  # lazy: it needs onnxruntime, which fp32 runs do not
        reference = teacher_log_probs(readings, 1.0) if readings else None  # the ensemble's answers, as in the panel
        result.metrics["quantized"], int8_paths = qat.deploy(result, dataset, config.quantize, out_dir,
                                                             [f[0] for f in found], emit, check,
                                                             teacher_test_logits=reference)
        result.paths.update(int8_paths)
    return result
