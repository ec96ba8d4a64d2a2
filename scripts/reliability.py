"""Regenerate RELIABILITY.md from the tests and the soak, as they ran just now.

    python scripts/reliability.py                  # about 40 minutes on 2 busy cores
    python scripts/reliability.py --reuse-tests    # the last test run, a new soak
    python scripts/reliability.py --reuse-soak     # new tests, the last soak
    python scripts/reliability.py --durable        # only the restart, resume and queue fault tests
    python scripts/reliability.py --no-soak        # the tests alone; the file says the soak did not run

Runs the reliability, security, restart and browser tests with a JUnit report (the fault tests
write what they measured to artifacts/reliability-figures.json), then the 5-minute soak
(`python -m kdapp.tools.soak`), and writes one table row per thing tried (how many cases, how
many held) and the figures. Nothing in the file is typed by hand.
"""
import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# test name (prefix) -> what was tried, in a visitor's or an operator's words
TRIED = [
    ("test_odd_canvases_through_the_api", "Odd canvases through the raw API: blank, fully inked, a dot, 3×3, 3000×3000, RGB, greyscale, a truncated file, not an image, a decompression bomb"),
    ("test_unreadable_input_raises", "Unreadable inputs to preprocessing (bad bytes, 5000 px tall, 7 channels, objects, empty)"),
    ("test_odd_canvases_get_an_answer", "Odd canvases to preprocessing (fully inked, a dot, 3×3, 3000×3000)"),
    ("test_the_worker_survives", "Broken uploads, then a real digit: the worker still answers"),
    ("test_a_script_calling_start_directly", "Bad hyperparameters sent straight to the start event (T≤0, α∉[0,1], 10⁹ epochs, NaN, ∞, strings, unknown architectures)"),
    ("test_start_refuses_bad_settings", "Bad hyperparameters through the UI handler"),
    ("test_a_script_cannot_stop", "A script tries to stop another visitor's run"),
    ("test_server_paths_are_not_readable", "Server file paths smuggled in as the canvas (/etc/passwd, ../.., app.py)"),
    ("test_uploads_are_capped", "An upload over the 5 MB cap"),
    ("test_many_big_canvases", "Ten 3000×3000 canvases in a row: peak memory stays bounded"),
    ("test_a_pickle_that_runs_code", "A checkpoint whose pickle runs a shell command (weights_only=True refuses it)"),
    ("test_corrupt_file_gives", "Corrupt checkpoints (truncated, random bytes, empty): a clear error"),
    ("test_a_failed_save_leaves", "A save that fails half-way: the previous file is intact, no temp file left"),
    ("test_kill_during_save", "SIGKILL of a process while it writes a 9.6 MB checkpoint (5 kills): the file always loads"),
    ("test_fifo_order_positions_caps_and_cancel_rights", "A queue of runs from several visitors: FIFO order, per-visitor and total caps, only owners cancel"),
    ("test_a_failing_run_ends_failed", "An exception inside a run: state 'failed' with the message, the next queued run works"),
    ("test_a_worker_that_dies", "The run's worker process killed mid-run (as the OOM killer would): 'failed', the queue goes on"),
    ("test_time_limit_stops", "A run past its time limit stops itself"),
    ("test_a_killed_server_loses_nothing", "SIGKILL of the server with 1 run training and 2 waiting (two visitors): after a restart all 3 finish, the one training resumes"),
    ("test_a_restart_keeps_the_queue", "A restart keeps the queue: order, owners and caps; the run that was training goes first"),
    ("test_a_second_server_on_the_same_runs_folder", "A second server on the same runs folder: refuses to start with one sentence; the first serves on"),
    ("test_one_server_per_runs_folder", "Two queues on one runs folder in one process: the second is refused; freed on close"),
    ("test_a_killed_worker_that_resumes", "SIGKILL of a worker mid-epoch: the run resumes from its last epoch and finishes, each epoch once"),
    ("test_a_killed_worker_resumes_once", "SIGKILL of a worker, then of the resumed one: 'failed', never resumed in a loop"),
    ("test_a_full_disk_at_a_resume_point", "The disk full while a worker writes a resume point: 'failed' with a sentence, the store readable, the next run works"),
    ("test_a_full_disk_fails_the_run", "The disk full while writing a resume point (in-process): the last good point kept, no temp file left"),
    ("test_a_resumed_run_ends_exactly", "A run stopped after epoch 1 and resumed ends bit for bit where an uninterrupted one does (KD with shifts; hint adapter)"),
    ("test_a_point_saved_after_the_last_epoch", "A resume point from after the last epoch: the run finishes without training again"),
    ("test_a_damaged_point_fails", "Damaged resume points (empty, random bytes, a zip): 'failed' with a sentence, no path"),
    ("test_a_point_from_other_settings", "A resume point from other settings: refused"),
    ("test_a_point_made_from_another_teacher", "A resume point made from a teacher that has since been retrained: refused"),
    ("test_a_run_is_queued_again_at_most", "A run whose server keeps dying: queued again at most twice, then 'failed' saying why"),
    ("test_a_sweep_is_created_all_or_none", "A sweep whose third row cannot be written: no row kept (one transaction)"),
    ("test_a_sweep_that_cannot_be_queued", "A sweep over the queue's cap: refused, no row kept"),
    ("test_queue_kill_restart_and_everything_finishes", "Browser: three visitors (one run training, two waiting), SIGKILL, restart: every page's run finishes, the one training resumed, Run again on a permalink queues a new run"),
    ("test_a_server_that_stops_cleanly", "A server stopped cleanly (SIGTERM): its run stays 'running' with its resume point and the next server resumes it"),
    ("test_run_again_queues", "Run again: same settings, a new run of this visitor's; refused while the run is active"),
    ("test_a_stopped_run_resumes_after_its_last_task", "A continual run stopped twice (in LwF's second task, then in replay's) and resumed: the same accuracy matrices and weights as an uninterrupted run, to the bit"),
    ("test_a_continual_run_killed_mid_way", "A continual run whose server died mid-task, one row unstored and one sent after the point: resumed after its last task, each row once"),
    ("test_bad_uploads_name_the_problem", "Bad uploads to /predict (not an image, empty, truncated PNG/JPEG, a bomb, 5000 px wide, a zip): the problem and the fix, no path, stack or class name"),
    ("test_malformed_predict_payloads", "Malformed /predict payloads (a string, a number, a missing file, a URL): no path, stack or class name"),
    ("test_a_corrupt_database", "A corrupt run database: moved aside with a log line, the app serves and runs"),
    ("test_links_from_strangers", "Browser: a permalink carrying <img onerror> and <script>: escaped, no dialog, the page works"),
    ("test_reloading_keeps_the_right_to_stop", "Browser: reload and a new tab keep Stop for the owner; another browser never gets it"),
    ("test_two_visitors_queue_fairly", "Browser: two visitors start within a second; the second is queued, both finish and are listed"),
    ("test_draw_clear_draw_in_every_order", "Browser: draw, Clear, double-click Clear, Clear on an empty canvas: no ink left, next digit read alone"),
    ("test_a_phone_can_draw_with_a_finger", "Browser: a 390 px phone draws with touch events, no sideways scrolling"),
]
FILES = ["tests/test_security.py", "tests/test_jobs.py", "tests/test_checkpoints.py", "tests/test_browser.py",
         "tests/test_inference.py", "tests/test_app.py", "tests/test_restart.py", "tests/test_store.py",
         "tests/test_durable.py", "tests/test_resume.py", "tests/test_continual_lab.py",
         "tests/test_continual.py::test_a_stopped_run_resumes_after_its_last_task_and_ends_as_an_uninterrupted_one"]
# --durable: only the tests of issue 29's faults, when two busy cores cannot run everything.
DURABLE = ["tests/test_durable.py", "tests/test_resume.py", "tests/test_restart.py", "tests/test_store.py",
           "tests/test_security.py::test_bad_uploads_name_the_problem_and_no_server_path",
           "tests/test_security.py::test_malformed_predict_payloads_leak_nothing",
           "tests/test_browser.py::test_queue_kill_restart_and_everything_finishes",
           "tests/test_continual_lab.py::test_a_continual_run_killed_mid_way_resumes_after_its_last_saved_task",
           "tests/test_continual.py::test_a_stopped_run_resumes_after_its_last_task_and_ends_as_an_uninterrupted_one"]
ARTIFACTS = ROOT / "artifacts"


def run_tests(report, figures, files=FILES):
    figures.unlink(missing_ok=True)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "pytest", "-q", f"--junitxml={report}", *files], cwd=ROOT,
                   env=dict(os.environ, KDAPP_RELIABILITY_FIGURES=str(figures)))
    return read_report(report), time.monotonic() - started


def read_report(report):
    counts = defaultdict(lambda: [0, 0])
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.get("name")
        held = not any(child.tag in ("failure", "error", "skipped") for child in case)
        for prefix, _ in TRIED:
            if name.startswith(prefix):
                counts[prefix][0] += 1
                counts[prefix][1] += held
    return counts


def run_soak(path):
    soak = subprocess.run([sys.executable, "-m", "kdapp.tools.soak"], cwd=ROOT, capture_output=True, text=True)
    path.write_text(soak.stdout.strip().splitlines()[-1])


def main():
    report, figures, soak_path = (ARTIFACTS / "reliability-junit.xml", ARTIFACTS / "reliability-figures.json",
                                  ARTIFACTS / "reliability-soak.json")
    ARTIFACTS.mkdir(exist_ok=True)
    if "--reuse-tests" in sys.argv and report.exists():
        counts = read_report(report)
    else:
        counts, _ = run_tests(report, figures, DURABLE if "--durable" in sys.argv else FILES)
    if "--no-soak" in sys.argv:
        soak = None
    else:
        if "--reuse-soak" not in sys.argv or not soak_path.exists():
            run_soak(soak_path)
        soak = json.loads(soak_path.read_text())
    measured = json.loads(figures.read_text()) if figures.exists() else {}
    kill_attempts = int(re.search(r"for attempt in range\((\d+)\)",
                                  (ROOT / "tests/test_checkpoints.py").read_text()).group(1))
    lines = ["# Reliability record", "",
             f"Generated by `python scripts/reliability.py` on {time.strftime('%Y-%m-%d')} from a test run "
             "and the soak (`python -m kdapp.tools.soak`). Each row is a test; 'cases' counts its "
             "parametrised inputs.", "",
             "| what was tried | cases | held |", "|---|---:|---:|"]
    not_run = []
    for prefix, words in TRIED:
        tried, held = counts.get(prefix, (0, 0))
        if prefix == "test_kill_during_save":
            tried, held = tried * kill_attempts, held * kill_attempts
        if tried:
            lines.append(f"| {words} | {tried} | {held} |")
        else:
            not_run.append(prefix)
    if not_run:  # say so rather than print 0 of 0
        lines += ["", f"Not run in this pass (`--durable`): {', '.join(f'`{p}`' for p in not_run)}."]
    restart = measured.get("restart")
    if restart:
        lines += ["", "## The server killed mid-run", "",
                  f"SIGKILL of the server with one run training ({restart['epochs']} epochs) and two waiting: "
                  f"when it was killed the run had finished {restart['epochs_before_kill']} epochs; after the "
                  f"restart it resumed from epoch {restart['resumed_from_epoch']} and trained "
                  f"{restart['epochs_trained_after_restart']} more, not {restart['epochs']}. "
                  f"{restart['runs_finished']} of {restart['runs_accepted']} accepted runs finished "
                  "(`test_a_killed_server_loses_nothing_and_the_run_it_was_training_resumes`)."]
    ms = lambda v: "n/a" if v is None else f"{v:.0f}"
    if soak is None:
        lines += ["", "## Soak", "", "Not run in this pass (`--no-soak`): `python scripts/reliability.py "
                  "--reuse-tests` adds it (5 minutes, then the queue drains).", ""]
        (ROOT / "RELIABILITY.md").write_text("\n".join(lines), encoding="utf-8")
        print("\n".join(lines))
        return
    lines += ["", "## Soak", "",
              f"{soak['visitors']} visitors, each drawing (`/predict`) and polling the run list (`/runs`) once a "
              f"second, for {soak['seconds']:.0f} s, while submitters kept {soak['workers']} runs "
              f"training and up to {soak['queue_cap']} waiting (short runs: 2 epochs of 800 digits), then "
              "the queue drained:", "",
              "| measure | value |", "|---|---:|",
              f"| runs accepted / finished | {soak['runs_accepted']} / {soak['runs_finished']} |",
              f"| runs lost / run twice / rows never accepted | {soak['runs_lost']} / {soak['runs_duplicated']} / "
              f"{soak['rows_not_accepted']} |",
              f"| runs waiting, median / most seen | {soak['queued_median']} / {soak['queued_max']} |",
              f"| drawings answered, failed | {soak['predict_requests']}, {soak['predict_errors']} |",
              f"| drawing latency p50 / p95 | {ms(soak['predict_p50_ms'])} / {ms(soak['predict_p95_ms'])} ms |",
              f"| polls answered, failed | {soak['poll_requests']}, {soak['poll_errors']} |",
              f"| poll latency p50 / p95 | {ms(soak['poll_p50_ms'])} / {ms(soak['poll_p95_ms'])} ms |", "",
              "The clients, the server and both workers share the machine's cores; latency includes that. "
              "How many drawing visitors one server carries is measured separately by "
              "`python -m kdapp loadtest`.", ""]
    for kind, what in (("predict", "drawings"), ("poll", "polls")):
        if soak.get(f"{kind}_error_reasons"):  # every failure is said, with why
            lines += [f"Why {what} failed: " + "; ".join(f"{n}× {why}" for why, n in
                                                        soak[f"{kind}_error_reasons"].items()) + ".", ""]
    (ROOT / "RELIABILITY.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
