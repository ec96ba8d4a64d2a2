"""python -m kdapp continual: split MNIST learnt task after task, by four strategies.

One scenario and one seed print the issue's JSON: {"scenario", "tasks", "strategies": {name:
{"acc_matrix", "average_acc", "forgetting"}}}, acc_matrix[i][j] = accuracy on task j after task i.
With --seeds N or both scenarios (--scenario class,task) it runs every (scenario, seed) and
summarises them, mean ± sd, beside van de Ven & Tolias's published split-MNIST numbers; --out
writes that as Markdown and JSON (results/continual.md and .json).
"""
import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

from tqdm import tqdm

from kdapp import data as data_lib
from kdapp.training import continual

# van de Ven & Tolias 2019, "Three scenarios for continual learning" (arXiv:1904.07734), split MNIST,
# their table of average test accuracy (%) over all tasks after the last, mean of 20 runs. Their
# setting differs from ours: 2,000 iterations per task (ours: --epochs), and iCaRL's memory holds
# 2,000 digits (ours 200). Written from memory, without network access: "to verify" against the paper.
PUBLISHED = {
    "source": "van de Ven & Tolias 2019, arXiv:1904.07734, split MNIST (to verify against the paper)",
    "class": {"finetune": 19.90, "lwf": 23.85, "replay": 94.57, "joint": 97.94},
    "task": {"finetune": 87.19, "lwf": 99.57, "replay": None, "joint": 99.66},
    "notes": {"finetune": "'None', their lower bound", "lwf": "LwF", "replay": "iCaRL, budget 2,000 (class-IL only)",
              "joint": "'Offline', their upper bound"},
}


def add_parser(sub):
    d = continual.ContinualConfig()
    p = sub.add_parser("continual", help="continual learning on split MNIST: fine-tuning, LwF, the memory bank "
                       "(replay) and joint training; accuracy matrices and forgetting",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tasks", type=int, default=d.tasks, choices=sorted(continual.TASK_SPLITS),
                   help="5 tasks of two digits (0/1, 2/3, ...) or 2 of five (0-4, 5-9)")
    p.add_argument("--scenario", default=d.scenario,
                   help="class (one 10-way head, no task label at test time), task (logits masked to the task's "
                        "digits), or class,task for both")
    p.add_argument("--strategies", default=",".join(d.strategies), help="comma-separated, run in this order")
    p.add_argument("--memory", type=int, default=d.memory, help="the memory bank's budget in digits (replay)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="epochs per task")
    p.add_argument("--temperature", "-T", type=float, default=d.temperature, help="of LwF's and the bank's KD terms")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--arch", default=d.arch, help="the network every strategy trains")
    p.add_argument("--data", default=d.data, choices=data_lib.DATA_SOURCES)
    p.add_argument("--data-dir", default="data")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--seeds", type=int, default=1, help="run seeds SEED .. SEED+N-1 and summarise them")
    p.add_argument("--out", default=None, help="write the summary here as Markdown, and as JSON beside it")
    p.add_argument("--json", action="store_true", help="print one final JSON line")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_continual)


def configs_from_args(args):
    """One ContinualConfig per scenario asked for; each validates itself."""
    scenarios = [s for s in args.scenario.split(",") if s]
    strategies = tuple(s for s in args.strategies.split(",") if s)
    if args.seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {args.seeds}")
    return [continual.ContinualConfig(tasks=args.tasks, scenario=s, strategies=strategies, memory=args.memory,
                                      epochs=args.epochs, temperature=args.temperature, lr=args.lr,
                                      batch_size=args.batch_size, arch=args.arch, data=args.data, seed=args.seed)
            for s in scenarios or [""]]


class Bars:
    """continual_step events -> one tqdm bar per (strategy, task); continual_task -> one line."""

    def __init__(self, quiet):
        self.quiet, self.bar = quiet, None

    def __call__(self, event):
        if self.quiet:
            return
        if event["type"] == "continual_step":
            if self.bar is None:
                self.bar = tqdm(total=event["steps"], desc=f"{event['strategy']} task {event['task'] + 1}/"
                                f"{event['tasks']}", unit="step", file=sys.stderr)
            self.bar.update(event["step"] - self.bar.n)
            self.bar.set_postfix(loss=f"{event['loss']:.3f}", refresh=False)
        elif event["type"] == "continual_task":
            self.close()
            row = " ".join(f"{a:.1%}" for a in event["accuracies"])
            print(f"{event['strategy']} after task {event['task'] + 1}: {row}", file=sys.stderr)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_continual(args):
    configs = configs_from_args(args)
    dataset = data_lib.load(args.data, args.data_dir)
    bars = Bars(args.quiet)
    print(f"data: {dataset.describe()}", file=sys.stderr)
    runs = []
    for config in configs:
        for seed in range(args.seed, args.seed + args.seeds):
            started = time.monotonic()
            report, _ = continual.run(dataclasses.replace(config, seed=seed), dataset, emit=bars)
            bars.close()
            report["settings"] = {**config.to_dict(), "seed": seed, "data": dataset.source,
                                  "seconds": round(time.monotonic() - started, 1)}
            runs.append(report)
            for name, result in report["strategies"].items():
                print(f"{config.scenario}-incremental, seed {seed}, {name}: average {result['average_acc']:.1%}, "
                      f"forgetting {result['forgetting']:.1%}", file=sys.stderr)
    if len(runs) == 1 and not args.out:
        if args.json:
            print(json.dumps(runs[0]))
        return
    summary = summarise(runs, command="python -m kdapp " + " ".join(sys.argv[1:]) if args.out else None)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(markdown(summary))
        out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
        print(f"wrote {out} and {out.with_suffix('.json')}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary))


def _mean_sd(values):
    return [statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0]


def summarise(runs, command=None):
    """Mean ± sd over seeds of each (scenario, strategy): average accuracy, forgetting, the first
    task's accuracy after the last, and the mean accuracy matrix."""
    table = {}
    for run in runs:
        for name, result in run["strategies"].items():
            table.setdefault(run["scenario"], {}).setdefault(name, []).append(result)
    summary = {}
    for scenario, strategies in table.items():
        summary[scenario] = {}
        for name, results in strategies.items():
            matrices = [r["acc_matrix"] for r in results]
            mean_matrix = [[statistics.fmean(m[i][j] for m in matrices) for j in range(len(matrices[0][0]))]
                           for i in range(len(matrices[0]))]
            summary[scenario][name] = {
                "average_acc": _mean_sd([r["average_acc"] for r in results]),
                "forgetting": _mean_sd([r["forgetting"] for r in results]),
                "first_task_after_last": _mean_sd([m[-1][0] for m in matrices]),
                "mean_acc_matrix": mean_matrix, "seeds": len(results)}
    return {"command": command, "runs": runs, "summary": summary, "published": PUBLISHED}


def markdown(summary):
    first = summary["runs"][0]["settings"]
    lines = [f"# Continual learning on split MNIST: {first['tasks']} tasks, {first['data']}", "",
             f"Generated by `{summary['command']}`.", "",
             f"Network {first['arch']}, {first['epochs']} epochs per task, Adam lr {first['lr']}, batch "
             f"{first['batch_size']}, T = {first['temperature']}, memory bank {first['memory']} digits. "
             "Mean ± sd over the seeds; accuracies in %. Published: " + PUBLISHED["source"] + ".", ""]
    for scenario, strategies in summary["summary"].items():
        lines += [f"## {scenario}-incremental", "",
                  "| strategy | average accuracy | forgetting | task 1 after the last | seeds | published |",
                  "|---|---|---|---|---|---|"]
        for name, s in strategies.items():
            published = PUBLISHED[scenario].get(name)
            shown = "—" if published is None else f"{published:.2f} ({PUBLISHED['notes'][name]})"
            lines.append(f"| {name} | {_pct(s['average_acc'])} | {_pct(s['forgetting'])} | "
                         f"{_pct(s['first_task_after_last'])} | {s['seeds']} | {shown} |")
        lines.append("")
        for name, s in strategies.items():
            lines += [f"{name}, mean accuracy matrix (row i: after task i; column j: task j):", "", "```"]
            lines += ["  ".join(f"{100 * a:5.1f}" for a in row) for row in s["mean_acc_matrix"]]
            lines += ["```", ""]
    return "\n".join(lines)


def _pct(mean_sd):
    return f"{100 * mean_sd[0]:.2f} ± {100 * mean_sd[1]:.2f}"
