"""Continual learning on split MNIST: distillation against catastrophic forgetting.

MNIST is cut into a sequence of tasks (five of two digits, or two of five) and one network learns
them in order, never seeing an earlier task's data again, except what a strategy keeps:

    finetune  plain training on each task in turn: the lower bound, it forgets
    lwf       Learning without Forgetting (Li & Hoiem 2016): the model as it was before the task
              teaches the new one, at temperature T, on the new task's data
    replay    the memory bank (seed article 000 §4.3; iCaRL, Rebuffi et al. 2017): a fixed budget
              of stored digits with the logits they had when stored, replayed with CE and KD
    joint     training on all the tasks seen so far: the upper bound

Two scenarios (van de Ven & Tolias 2019, "Three scenarios for continual learning"): `class`, one
10-way head and no task label at test time; `task`, the logits masked to the task's digits, in
training and at test time (a multi-headed net in all but name).

Every strategy starts from the same initial weights and sees the new task's digits in the same
batch order. The loss terms are pure functions in continual_terms.py, with their formulas; the loop is
`train_strategy`. Progress goes out as events (kdapp.events.continual_step / continual_task).

With a resume point (kdapp.training.resume.ResumePoint), `run` saves after every task of every
strategy what the rest reads: each strategy's weights and accuracy rows so far, the memory bank
with its generator, and the random states. A run killed with its server carries on after its last
finished task, and ends as it would have, to the last bit on the same machine (each task has a
fresh optimiser and a batch order seeded by (seed, task), so nothing else carries over).
"""
import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from kdapp import checkpoints, data as data_lib, events
from kdapp.models import ARCHITECTURES, build
from kdapp.training import resume as resume_lib
from kdapp.training.continual_terms import (
    MemoryBank, average_accuracy, finetune_loss, forgetting, local_targets, lwf_loss, replay_loss, select)
from kdapp.training.teachers import Cancelled, predict_logits, with_deadline

TASK_SPLITS = {5: ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9)), 2: ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9))}
SCENARIOS = ("class", "task")
STRATEGIES = ("finetune", "lwf", "replay", "joint")
KIND = "continual"  # a stored run's config["kind"]: the lab's worker runs it with run_job below


@dataclass(frozen=True)
class ContinualConfig:
    tasks: int = 5                  # van de Ven & Tolias's split MNIST: five tasks of two digits
    scenario: str = "class"         # class: one 10-way head, no task label at test time; task: masked logits
    strategies: tuple = STRATEGIES  # run one after the other, each from the same initial weights
    memory: int = 200               # replay budget in digits, shared equally by the classes seen so far
    epochs: int = 2                 # per task; 2 already fits a two-digit task (>99% on it) on full MNIST
    temperature: float = 2.0        # Li & Hoiem's T for LwF; the bank's KD term uses it too
    lr: float = 1e-3                # Adam, as van de Ven & Tolias
    batch_size: int = 128           # as van de Ven & Tolias
    arch: str = "mlp_400"           # van de Ven & Tolias's 784-400-400-10 MLP
    data: str = "auto"              # auto = full MNIST if present, else the bundled sample
    seed: int = 0                   # initial weights, batch order and the bank's choice of digits
    time_limit_s: float = 3600.0    # a run in the app stops itself after this, as a RunConfig does

    def __post_init__(self):
        problems = []
        if self.tasks not in TASK_SPLITS:
            problems.append(f"tasks must be one of {', '.join(map(str, TASK_SPLITS))}, got {self.tasks!r}")
        if self.scenario not in SCENARIOS:
            problems.append(f"scenario must be one of {', '.join(SCENARIOS)}, got {self.scenario!r}")
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown or not self.strategies or len(set(self.strategies)) != len(self.strategies):
            problems.append(f"strategies must be distinct names among {', '.join(STRATEGIES)}, "
                            f"got {','.join(self.strategies) or 'none'}")
        if not (isinstance(self.memory, int) and 10 <= self.memory <= 20000):
            problems.append(f"memory must be 10 to 20000 digits (at least one per class), got {self.memory!r}")
        if not (isinstance(self.epochs, int) and 1 <= self.epochs <= 50):
            problems.append(f"epochs must be 1 to 50, got {self.epochs!r}")
        if not (isinstance(self.temperature, (int, float)) and 0.5 <= self.temperature <= 20):
            problems.append(f"temperature must be 0.5 to 20, got {self.temperature!r}")
        if not (0 < self.lr <= 1) or not (1 <= self.batch_size <= 4096):
            problems.append(f"lr must be in (0, 1] and batch_size 1 to 4096, got {self.lr!r}, {self.batch_size!r}")
        if not (isinstance(self.time_limit_s, (int, float)) and self.time_limit_s > 0):
            problems.append(f"time_limit_s must be above 0, got {self.time_limit_s!r}")
        if self.arch not in ARCHITECTURES:
            problems.append(f"unknown architecture {self.arch!r}; valid names: {', '.join(ARCHITECTURES)}")
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self):
        """As stored in the run store; `kind` tells the lab's worker which engine runs it."""
        return {"kind": KIND, **asdict(self), "strategies": list(self.strategies)}

    @classmethod
    def from_dict(cls, settings):
        """From loose input (a stored run, a form): unknown keys are an error, not ignored."""
        settings = {k: v for k, v in settings.items() if k != "kind"}
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(settings) - names)
        if unknown:
            raise ValueError(f"unknown continual settings {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        if isinstance(settings.get("strategies"), str):
            settings["strategies"] = settings["strategies"].split(",")
        return cls(**{**settings, **({"strategies": tuple(settings["strategies"])} if "strategies" in settings else {})})


# ---- the loop ----

def output_classes(labels, tasks, scenario):
    """The outputs each digit is judged on: all ten class-incrementally (a (10,) index), its own
    task's digits task-incrementally (an (N,k) index, one row per digit)."""
    if scenario == "class":
        return torch.arange(10, device=labels.device)
    table = torch.tensor(tasks, device=labels.device)
    task_of = torch.tensor([next(t for t, c in enumerate(tasks) if d in c) for d in range(10)], device=labels.device)
    return table[task_of[labels]]


def task_rows(y, classes):
    return torch.nonzero(torch.isin(y, torch.tensor(classes, device=y.device))).flatten()


def evaluate_tasks(model, dataset, tasks, scenario):
    """Test accuracy on every task's digits, judged on the scenario's outputs: a row of the matrix."""
    row = []
    for classes in tasks:
        rows = task_rows(dataset.test_y, classes)
        x, y = dataset.test_x[rows], dataset.test_y[rows]
        outputs = output_classes(y, tasks, scenario)
        predicted = select(predict_logits(model, x), outputs).argmax(1)
        row.append((predicted == local_targets(y, outputs)).float().mean().item())
    return row


def train_strategy(name, config, dataset, emit=lambda event: None, should_stop=lambda: False, saved=None,
                   after_task=None):
    """Train one strategy over the task sequence. Returns (the model after the last task, the
    accuracy matrix: row i = every task's accuracy after task i). `saved` (strategy_state's
    dict, from a resume point) carries on after its last task; `after_task(strategy_state(...))`
    is called after each task."""
    tasks = TASK_SPLITS[config.tasks]
    device = dataset.train_x.device
    torch.manual_seed(config.seed)  # the same initial weights for every strategy
    model = build(config.arch).to(device)
    bank = MemoryBank(config.memory, seed=config.seed) if name == "replay" else None
    previous, matrix = None, []
    if saved is not None:
        model.load_state_dict(saved["model"])
        matrix = [list(row) for row in saved["matrix"]]
        if bank is not None:
            bank.load_state(saved["bank"], device)
        if name == "lwf":
            previous = copy.deepcopy(model).eval().requires_grad_(False)
        torch.set_rng_state(saved["torch_rng"])  # dropout, for an architecture that has it
        resume_lib.set_device_rng(saved["device_rng"])
    for t, classes in enumerate(tasks):
        if t < len(matrix):  # learnt before the resume point
            continue
        seen = [d for c in tasks[:t + 1] for d in c]
        rows = task_rows(dataset.train_y, seen if name == "joint" else classes)
        x, y = dataset.train_x[rows], dataset.train_y[rows]
        old_groups = ([torch.tensor([d for c in tasks[:t] for d in c])] if config.scenario == "class"
                      else [torch.tensor(c) for c in tasks[:t]])
        step = _step_fn(name, config, tasks, t, previous, bank, old_groups)
        # The batch order of task t depends on (seed, t) alone: finetune, lwf and replay see the same batches.
        order = torch.Generator().manual_seed(config.seed * 1000 + t)
        _train_task(model, step, x, y, config, order, name, t, len(tasks), emit, should_stop)
        matrix.append(evaluate_tasks(model, dataset, tasks, config.scenario))
        emit(events.continual_task(name, t, len(tasks), matrix[-1]))
        if bank is not None:
            bank.add(model, x, y, classes)
        if name == "lwf":  # the teacher of the next task: this model, frozen
            previous = copy.deepcopy(model).eval().requires_grad_(False)
        if after_task is not None:
            after_task(strategy_state(model, matrix, bank))
    return model, matrix


def strategy_state(model, matrix, bank):
    """What a resume point keeps of one strategy after a task (everything on the CPU)."""
    return {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "matrix": [list(row) for row in matrix], "bank": bank.state() if bank is not None else None,
            "torch_rng": torch.get_rng_state(), "device_rng": resume_lib.device_rng()}


def _step_fn(name, config, tasks, t, previous, bank, old_groups):
    """The loss of one batch (x, y) for strategy `name` at task t (0-based)."""
    T, task = config.temperature, t + 1

    def step(model, x, y):
        classes = output_classes(y, tasks, config.scenario)
        if name == "lwf" and previous is not None:
            with torch.no_grad():
                old_logits = previous(x)
            return lwf_loss(model(x), old_logits, y, classes, old_groups, T, task)
        if name == "replay" and len(bank):
            mx, my, stored = bank.sample(len(y))
            logits = model(torch.cat([x, mx]))
            return replay_loss(logits[:len(y)], y, classes, logits[len(y):], my,
                               output_classes(my, tasks, config.scenario), stored, T, task)
        return finetune_loss(model(x), y, classes)  # finetune, joint, and every strategy's first task
    return step


def _train_task(model, step, x, y, config, order, name, t, tasks, emit, should_stop):
    # A fresh Adam per task: its moments belong to the previous task's loss.
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    batches = (len(y) + config.batch_size - 1) // config.batch_size
    steps, done, running = config.epochs * batches, 0, []
    model.train()
    for _ in range(config.epochs):
        perm = torch.randperm(len(y), generator=order).to(y.device)
        for i in range(batches):
            if should_stop():
                raise Cancelled("stopped")
            rows = perm[i * config.batch_size:(i + 1) * config.batch_size]
            loss = step(model, x[rows], y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += 1
            running.append(loss.item())
            if done % 25 == 0 or done == steps:
                emit(events.continual_step(name, t, tasks, done, steps, sum(running) / len(running)))
                running = []


POINT_VERSION = 1  # in a resume point's settings: bump when its contents change, and an older point is refused


def point_settings(config):
    """The settings a continual resume point must have been saved with."""
    return dict(config.to_dict(), continual_point=POINT_VERSION)


def run(config, dataset, emit=lambda event: None, should_stop=lambda: False, resume=None):
    """Every strategy of `config` on `dataset`. Returns (the report: {"scenario", "tasks",
    "strategies": {name: {"acc_matrix", "average_acc", "forgetting"}}}, {name: final model}).
    With `resume` (a ResumePoint): carry on from the point it holds, and save one after each task."""
    report = {"scenario": config.scenario, "tasks": [list(c) for c in TASK_SPLITS[config.tasks]], "strategies": {}}
    models = {}
    started = time.monotonic()
    state = resume.load(point_settings(config)) if resume is not None else None
    strategies = dict(state["strategies"]) if state is not None else {}  # name -> strategy_state after its last task
    earlier = state["train_seconds"] if state is not None else 0.0  # counted by the processes before this one
    if state is not None:
        rows = [{"strategy": name, "task": t, "accuracies": row}
                for name, s in strategies.items() for t, row in enumerate(s["matrix"])]
        emit(events.resumed(len(rows), 0, continual_rows=rows))

    def save(name, learnt):
        strategies[name] = learnt
        tasks_done = sum(len(s["matrix"]) for s in strategies.values())
        resume.save({"format": resume_lib.FORMAT, "config": point_settings(config), "epoch": tasks_done,
                     "after": f"task {len(learnt['matrix'])} of {name}", "strategies": strategies,
                     "train_seconds": earlier + time.monotonic() - started})

    for name in config.strategies:
        after_task = (lambda learnt, name=name: save(name, learnt)) if resume is not None else None
        models[name], matrix = train_strategy(name, config, dataset, emit, should_stop, strategies.get(name),
                                              after_task)
        report["strategies"][name] = {"acc_matrix": matrix, "average_acc": average_accuracy(matrix),
                                      "forgetting": forgetting(matrix)}
    return report, models


def run_job(config, emit, should_stop, data_dir="data", out_dir=None, resume_path=None):
    """One continual run for the lab's worker: load the data, run every strategy, save each
    strategy's model after the last task into out_dir (for the drawing panel). With resume_path,
    a resume point there after each task (and, when one is there at start, carry on from it).
    Returns (metrics: the report plus data, seconds; paths: {strategy: checkpoint})."""
    started = time.monotonic()
    stop = with_deadline(should_stop, config.time_limit_s, "the continual run")
    emit(events.phase("loading data", "loading data"))
    dataset = data_lib.load(config.data, data_dir)
    emit(events.data(dataset.source, dataset.describe(), "cpu"))
    emit(events.phase("continual", f"{len(config.strategies)} strategies, {config.tasks} tasks, "
                                   f"{config.scenario}-incremental"))
    point = resume_lib.ResumePoint(resume_path) if resume_path else None
    report, models = run(config, dataset, emit, stop, point)
    earlier = point.loaded["train_seconds"] if point is not None and point.loaded else 0.0  # before a restart
    paths = {}
    if out_dir is not None:
        for name, model in models.items():
            path = Path(out_dir) / f"{name}.pt"
            checkpoints.save(path, model, config.arch, config=config.to_dict(), data=dataset.source,
                             metrics=report["strategies"][name])
            paths[name] = str(path)
    return dict(report, data=dataset.source, seconds=round(earlier + time.monotonic() - started, 1)), paths


def equivalent_epochs(config):
    """Passes over the whole training set a run makes, all strategies together (for the queue's
    ETA): fine-tuning makes `epochs`, LwF ~1.5x (the old model's forward), replay ~2x (a stored
    batch beside each new one), joint (tasks + 1) / 2 x (all the tasks so far, each task)."""
    cost = {"finetune": 1.0, "lwf": 1.5, "replay": 2.0, "joint": (config["tasks"] + 1) / 2}
    return config["epochs"] * sum(cost[s] for s in config["strategies"])
