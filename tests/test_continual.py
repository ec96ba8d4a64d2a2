"""Continual learning (kdapp.training.continual): each strategy's loss against a hand computation
in plain Python, the memory bank's budget, the metrics on a matrix worked by hand, and short real
runs on the bundled sample (full MNIST's forgetting is the slow test at the end)."""
import json
import math

import pytest
import torch

from kdapp.training import continual as cl, continual_terms as terms


def log_softmax(row, T=1.0):
    scaled = [v / T for v in row]
    top = max(scaled)
    log_z = top + math.log(sum(math.exp(v - top) for v in scaled))
    return [v - log_z for v in scaled]


def hand_ce(rows, labels):
    return sum(-log_softmax(r)[y] for r, y in zip(rows, labels)) / len(rows)


def hand_kd(student_rows, teacher_rows, T):
    """T^2 * mean over rows of sum_c p_c (log p_c - log q_c), p teacher, q student, both at T."""
    total = 0.0
    for s, t in zip(student_rows, teacher_rows):
        log_p, log_q = log_softmax(t, T), log_softmax(s, T)
        total += sum(math.exp(lp) * (lp - lq) for lp, lq in zip(log_p, log_q))
    return T * T * total / len(student_rows)


def cols(rows, classes):
    return [[r[c] for c in classes] for r in rows]


S = [[1.0, -0.5, 2.0, 0.3, 0.0, 0.7], [0.2, 1.5, -1.0, 0.9, 2.2, -0.3], [-0.4, 0.1, 0.6, 3.0, -2.0, 1.1]]
O = [[2.0, 0.5, -1.0, 0.0, 1.0, 0.2], [-0.6, 2.5, 0.4, 0.1, -0.2, 0.3], [1.2, 1.3, -0.7, 0.5, 0.0, -1.5]]


def test_soft_term_matches_hand_kd():
    got = terms.soft_term(torch.tensor(S), torch.tensor(O), 3.0).item()
    assert got == pytest.approx(hand_kd(S, O, 3.0), rel=1e-5)


def test_finetune_loss_is_ce_over_the_chosen_outputs():
    y = torch.tensor([2, 4, 3])
    everything = terms.finetune_loss(torch.tensor(S), y, torch.arange(6)).item()
    assert everything == pytest.approx(hand_ce(S, [2, 4, 3]), rel=1e-5)
    # Task-incremental, one set of outputs per row: digit 2 among (2,3), 4 among (4,5), 3 among (2,3).
    per_row = torch.tensor([[2, 3], [4, 5], [2, 3]])
    masked = terms.finetune_loss(torch.tensor(S), y, per_row).item()
    expected = hand_ce([[S[0][2], S[0][3]], [S[1][4], S[1][5]], [S[2][2], S[2][3]]], [0, 0, 1])
    assert masked == pytest.approx(expected, rel=1e-5)


def test_lwf_loss_class_incremental_by_hand():
    # Task 3 (t = 3): new digits 4 and 5, old digits 0-3 in one group.
    y = [4, 5, 4]
    T = 2.0
    got = terms.lwf_loss(torch.tensor(S), torch.tensor(O), torch.tensor(y), torch.arange(6),
                      [torch.tensor([0, 1, 2, 3])], T, task=3).item()
    expected = hand_ce(S, y) / 3 + (2 / 3) * hand_kd(cols(S, [0, 1, 2, 3]), cols(O, [0, 1, 2, 3]), T)
    assert got == pytest.approx(expected, rel=1e-5)


def test_lwf_loss_task_incremental_averages_the_old_heads():
    y = [4, 5, 5]
    T = 2.0
    got = terms.lwf_loss(torch.tensor(S), torch.tensor(O), torch.tensor(y), torch.tensor([4, 5]),
                      [torch.tensor([0, 1]), torch.tensor([2, 3])], T, task=3).item()
    soft = (hand_kd(cols(S, [0, 1]), cols(O, [0, 1]), T) + hand_kd(cols(S, [2, 3]), cols(O, [2, 3]), T)) / 2
    expected = hand_ce(cols(S, [4, 5]), [0, 1, 1]) / 3 + (2 / 3) * soft
    assert got == pytest.approx(expected, rel=1e-5)


def test_replay_loss_by_hand():
    new, memory, stored = S[:2], S[2:] + O[:1], O[1:]
    y, my = [4, 5], [3, 0]
    T = 4.0
    got = terms.replay_loss(torch.tensor(new), torch.tensor(y), torch.arange(6), torch.tensor(memory),
                         torch.tensor(my), torch.arange(6), torch.tensor(stored), T, task=2).item()
    expected = hand_ce(new, y) / 2 + 0.5 * 0.5 * (hand_ce(memory, my) + hand_kd(memory, stored, T))
    assert got == pytest.approx(expected, rel=1e-5)


def test_first_task_losses_are_plain_ce():
    # At t = 1 the old terms weigh 1 - 1/1 = 0: every strategy starts as fine-tuning.
    y = torch.tensor([0, 1, 1])
    ce = terms.finetune_loss(torch.tensor(S), y, torch.arange(6))
    lwf = terms.lwf_loss(torch.tensor(S), torch.tensor(O), y, torch.arange(6), [torch.tensor([2])], 2.0, task=1)
    assert lwf.item() == pytest.approx(ce.item(), rel=1e-6)


def test_metrics_on_a_matrix_worked_by_hand():
    m = [[0.99, 0.10, 0.00],
         [0.60, 0.98, 0.00],
         [0.20, 0.50, 0.97]]
    assert terms.average_accuracy(m) == pytest.approx((0.20 + 0.50 + 0.97) / 3)
    # task 0: best 0.99 -> 0.20 (0.79); task 1: best 0.98 -> 0.50 (0.48)
    assert terms.forgetting(m) == pytest.approx((0.79 + 0.48) / 2)


def test_output_classes_per_scenario():
    labels = torch.tensor([7, 0, 5])
    tasks = cl.TASK_SPLITS[5]
    assert cl.output_classes(labels, tasks, "class").tolist() == list(range(10))
    assert cl.output_classes(labels, tasks, "task").tolist() == [[6, 7], [0, 1], [4, 5]]
    assert cl.output_classes(labels, cl.TASK_SPLITS[2], "task").tolist()[0] == [5, 6, 7, 8, 9]


class Identity(torch.nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :10] * 2


def test_memory_bank_keeps_its_budget_shared_by_class():
    x = torch.randn(3000, 1, 28, 28)
    y = torch.arange(3000) % 10
    bank = terms.MemoryBank(200, seed=0)
    bank.add(Identity(), x, y, (0, 1))
    assert len(bank) == 200 and torch.bincount(bank.y).tolist()[:2] == [100, 100]
    first_zeros = bank.x[bank.y == 0][:50].clone()
    bank.add(Identity(), x, y, (2, 3))
    assert torch.bincount(bank.y, minlength=10).tolist()[:4] == [50, 50, 50, 50]
    assert torch.equal(bank.x[bank.y == 0], first_zeros)  # shrinking keeps a prefix: no re-draw
    bank.add(Identity(), x, y, (4, 5, 6, 7, 8, 9))
    assert len(bank) == 200 and set(torch.bincount(bank.y).tolist()) == {20}
    # Each digit is stored with the logits the model gave it when it was stored.
    assert torch.equal(bank.logits, bank.x.flatten(1)[:, :10] * 2)
    assert bank.sample(7)[0].shape == (7, 1, 28, 28)
    with pytest.raises(ValueError, match="one per class"):
        terms.MemoryBank(5).add(Identity(), x, y, tuple(range(10)))


def test_config_says_what_is_wrong():
    with pytest.raises(ValueError, match="tasks must be one of 5, 2"):
        cl.ContinualConfig(tasks=3)
    with pytest.raises(ValueError, match="strategies must be distinct names among finetune, lwf, replay, joint"):
        cl.ContinualConfig(strategies=("finetune", "ewc"))
    with pytest.raises(ValueError, match="scenario"):
        cl.ContinualConfig(scenario="domain")
    # A stored run's config comes back as it went in; loose input with unknown keys is refused.
    config = cl.ContinualConfig(tasks=2, strategies=("lwf", "joint"), memory=500)
    assert config.to_dict()["kind"] == "continual" and cl.ContinualConfig.from_dict(config.to_dict()) == config
    assert cl.ContinualConfig.from_dict({"strategies": "finetune,replay"}).strategies == ("finetune", "replay")
    with pytest.raises(ValueError, match="unknown continual settings teacher"):
        cl.ContinualConfig.from_dict({"teacher": "mlp_30"})
    # The queue's ETA: 2 epochs of fine-tuning (1x) and joint over 2 tasks ((2 + 1) / 2 = 1.5x).
    assert cl.equivalent_epochs(cl.ContinualConfig(tasks=2, strategies=("finetune", "joint")).to_dict()) == 5.0


def test_every_strategy_learns_the_first_task_identically(sample):
    # Same initial weights, same batches, and at t = 1 the same loss: the first rows must match exactly.
    config = cl.ContinualConfig(tasks=2, epochs=1, strategies=("finetune", "lwf", "replay"))
    seen = []
    report, models = cl.run(config, sample, emit=seen.append)
    rows = [report["strategies"][s]["acc_matrix"][0] for s in config.strategies]
    assert rows[0] == rows[1] == rows[2]
    assert rows[0][0] > 0.9 and rows[0][1] == 0.0  # task 0 learnt, task 1's digits never predicted yet
    finetune = report["strategies"]["finetune"]
    # Class-incrementally, fine-tuning on 5-9 wipes out 0-4; the bank keeps some of them.
    assert finetune["acc_matrix"][1][0] < 0.2 and finetune["acc_matrix"][1][1] > 0.8
    assert report["strategies"]["replay"]["acc_matrix"][1][0] > finetune["acc_matrix"][1][0] + 0.3
    ends = [e for e in seen if e["type"] == "continual_task"]
    assert [(e["strategy"], e["task"]) for e in ends] == [(s, t) for s in config.strategies for t in (0, 1)]
    assert set(models) == set(config.strategies)


def test_a_stopped_run_resumes_after_its_last_task_and_ends_as_an_uninterrupted_one(sample, tmp_path):
    from kdapp.training import resume as resume_lib
    from kdapp.training.teachers import Cancelled
    config = cl.ContinualConfig(tasks=2, epochs=1, data="sample")  # all four strategies
    whole, whole_models = cl.run(config, sample, resume=resume_lib.ResumePoint(tmp_path / "whole.pt"))
    point = resume_lib.ResumePoint(tmp_path / "point.pt")
    with pytest.raises(Cancelled):  # stopped in LwF's second task: its teacher is the model after its first
        cl.run(config, sample, should_stop=lambda: point.saves >= 3, resume=point)
    saved = torch.load(point.path, weights_only=True)
    assert {name: len(s["matrix"]) for name, s in saved["strategies"].items()} == {"finetune": 2, "lwf": 1}
    seen = []
    point = resume_lib.ResumePoint(tmp_path / "point.pt")
    with pytest.raises(Cancelled):  # stopped again after replay's first task: its bank holds task 0's digits
        cl.run(config, sample, emit=seen.append, should_stop=lambda: point.saves >= 2, resume=point)
    rows = seen[0].pop("continual_rows")
    assert seen[0] == {"type": "resumed", "epoch": 3, "step": 0}
    assert [(r["strategy"], r["task"]) for r in rows] == [("finetune", 0), ("finetune", 1), ("lwf", 0)]
    assert [r["accuracies"] for r in rows] == [*whole["strategies"]["finetune"]["acc_matrix"],
                                               whole["strategies"]["lwf"]["acc_matrix"][0]]
    assert len(torch.load(point.path, weights_only=True)["strategies"]["replay"]["bank"]["y"]) == config.memory
    seen = []
    resumed, models = cl.run(config, sample, emit=seen.append, resume=resume_lib.ResumePoint(point.path))
    assert seen[0]["epoch"] == 5 and len(seen[0]["continual_rows"]) == 5
    # Only the tasks not learnt before the point are learnt again, and the run ends bit for bit as the whole one.
    assert [(e["strategy"], e["task"]) for e in seen if e["type"] == "continual_task"] == \
        [("replay", 1), ("joint", 0), ("joint", 1)]
    assert resumed == whole
    for name in config.strategies:
        for key, value in whole_models[name].state_dict().items():
            assert torch.equal(models[name].state_dict()[key], value), (name, key)
    with pytest.raises(resume_lib.ResumeError, match="belongs to other settings"):  # another run's point
        cl.run(config.__class__(tasks=2, epochs=2, data="sample"), sample, resume=resume_lib.ResumePoint(point.path))


def test_a_resumed_job_counts_the_seconds_trained_before_the_restart(sample, tmp_path):
    """run_job's seconds are the point's (every process before this one) plus its own."""
    from kdapp.training import resume as resume_lib
    from kdapp.training.teachers import Cancelled
    config = cl.ContinualConfig(tasks=2, epochs=1, data="sample", strategies=("finetune",))
    point = resume_lib.ResumePoint(tmp_path / "point.pt")
    with pytest.raises(Cancelled):  # stopped after the first task
        cl.run(config, sample, should_stop=lambda: point.saves >= 1, resume=point)
    state = torch.load(point.path, weights_only=True)
    state["train_seconds"] = 1000.0  # as if the processes before this one had trained that long
    torch.save(state, point.path)
    metrics, _paths = cl.run_job(config, lambda event: None, lambda: False, resume_path=point.path)
    assert metrics["seconds"] > 1000.0  # the point's seconds, and this process's on top (no bound on those: no timing asserts)


def test_cli_prints_the_accuracy_matrices(capsys):
    from kdapp import cli
    code = cli.main(["continual", "--data", "sample", "--tasks", "2", "--scenario", "task", "--epochs", "1",
                     "--strategies", "finetune,joint", "--json", "--quiet"])
    assert code == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["scenario"] == "task" and report["tasks"] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    for name in ("finetune", "joint"):
        result = report["strategies"][name]
        assert len(result["acc_matrix"]) == 2 and all(len(row) == 2 for row in result["acc_matrix"])
        assert result["average_acc"] == pytest.approx(sum(result["acc_matrix"][-1]) / 2)
    assert cli.main(["continual", "--strategies", "finetune,ewc"]) == 2


@pytest.mark.slow
def test_full_mnist_class_incremental_forgets_and_the_bank_remembers(mnist_dir):
    from kdapp import data
    dataset = data.load("mnist", mnist_dir)
    report, _ = cl.run(cl.ContinualConfig(strategies=("finetune", "replay"), epochs=1), dataset)
    finetune, replay = report["strategies"]["finetune"], report["strategies"]["replay"]
    assert finetune["acc_matrix"][-1][0] <= 0.20
    assert replay["average_acc"] >= finetune["average_acc"] + 0.30


@pytest.mark.slow
def test_the_lab_queues_a_continual_run_and_draws_with_its_models(tmp_path, sample):
    # A real worker process through the same queue and store as distillation runs.
    from kdapp.lab import continual as lab_continual
    from kdapp.lab.facade import Lab
    lab = Lab(runs_dir=tmp_path / "runs", data_dir=tmp_path / "data")
    try:
        settings = dict(tasks=2, epochs=1, strategies="finetune,replay", data="sample")
        record, message = lab_continual.start(lab, settings, owner="alice")
        assert record is not None, message
        assert lab.queue.wait(record["id"], timeout=300)
        run = lab.run(record["id"])
        assert run["state"] == "finished", run["message"]
        rows = run["accuracy"]["continual"]
        assert [(r["strategy"], r["task"]) for r in rows] == [("finetune", 0), ("finetune", 1), ("replay", 0), ("replay", 1)]
        matrix = run["metrics"]["strategies"]["replay"]["acc_matrix"]
        assert [r["accuracies"] for r in rows if r["strategy"] == "replay"] == matrix
        # Listed among continual runs, and kept out of the views that read a teacher and a student.
        assert [r["id"] for r in lab_continual.runs(lab)] == [record["id"]]
        assert all(r["id"] != record["id"] for r in lab.runs())
        # Draw a test 0 (upscaled, as a canvas would hold it): every strategy's last model answers.
        zero = sample.test_x[sample.test_y == 0][0, 0] * 0.3081 + 0.1307
        canvas = (zero.repeat_interleave(10, 0).repeat_interleave(10, 1).numpy() * 255).astype("uint8")
        read = lab_continual.predict(lab, record["id"], 255 - canvas)
        assert set(read["probs"]) == {"finetune", "replay"}
        assert all(abs(sum(p) - 1) < 1e-5 for p in read["probs"].values())
        _, refused = lab_continual.start(lab, dict(tasks=3), owner="alice")
        assert refused.startswith("Not started: tasks must be one of 5, 2")
    finally:
        lab.close()


def test_the_chart_has_one_panel_per_strategy_and_one_line_per_task():
    from kdapp.ui import continual as ui
    rows = [{"strategy": "finetune", "task": 0, "accuracies": [0.99, 0.0]},
            {"strategy": "finetune", "task": 1, "accuracies": [0.05, 0.98]},
            {"strategy": "replay", "task": 0, "accuracies": [0.99, 0.0]}]  # replay's second task still training
    run = {"id": "abc", "state": "running", "message": "replay: task 2 of 2",
           "config": dict(cl.ContinualConfig(tasks=2, strategies=("finetune", "replay")).to_dict()),
           "accuracy": {"continual": rows}}
    fig = ui.figure(run).to_plotly_json()
    traces = fig["data"]
    assert [t["name"] for t in traces] == ["task 1: 0/1/2/3/4", "task 2: 5/6/7/8/9"] * 2
    assert [t["xaxis"] for t in traces] == ["x", "x", "x2", "x2"]
    # Each task's line starts when it is learnt: task 1 falls from 99 to 5 under fine-tuning.
    assert list(traces[0]["y"]) == pytest.approx([99.0, 5.0]) and list(traces[1]["x"]) == [2]
    assert list(traces[2]["y"]) == pytest.approx([99.0]) and list(traces[3]["y"]) == []
    assert [a["text"] for a in fig["layout"]["annotations"]] == ["fine-tuning", "memory bank"]
    run.update(state="finished", metrics={"strategies": {"finetune": {
        "acc_matrix": [[0.99, 0.0], [0.05, 0.98]], "average_acc": 0.515, "forgetting": 0.94}}})
    assert "| fine-tuning (lower bound) | 51.5% | 94.0% | 5.0% |" in ui.summary(run)
