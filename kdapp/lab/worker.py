"""python -m kdapp.lab.worker: one run in a process of its own, driven by kdapp.lab.jobs.

Protocol, one JSON document per line. stdin: the first line is {"config", "runs_dir", "data_dir",
"out_dir", "threads", "resume_path"} (the run saves a resume point there after each epoch and,
when one is there at start, resumes from it), and any later line (or EOF, which is what the worker sees if the server
dies) means stop. stdout: the run's events (kdapp.events), then one `end` event. Logs and
tracebacks go to stderr. A process of its own means request handling in the server cannot starve
training through the GIL, and a crash in training cannot take the server down.

The worker lowers its own CPU priority (nice +10, `NICENESS`): on a host whose cores it fills, the
server's answers and, where the browser shares the host, the page's drawing go first, and training
takes every cycle they leave (measured: docs/drawing.md).
"""
import json
import logging
import os
import sys
import threading
import traceback

NICENESS = 10  # how far below the server a run's process sits in the CPU scheduler's queue


def main():
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="worker %(message)s")
    if hasattr(os, "nice"):  # POSIX; Windows has no niceness, and a run there competes as an equal
        os.nice(NICENESS)
    job = json.loads(sys.stdin.readline())
    import torch  # after the job line: the parent is not kept waiting on the import

    from kdapp import events
    from kdapp.training import train
    from kdapp.config import RunConfig
    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    stop = threading.Event()

    def watch_stdin():
        sys.stdin.readline()  # a "stop" line, or EOF when the parent goes away
        stop.set()
    threading.Thread(target=watch_stdin, daemon=True).start()

    lock = threading.Lock()

    def emit(event):
        with lock:
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()

    try:
        if job["config"].get("kind") == "continual":  # split MNIST, task after task (kdapp.training.continual)
            from kdapp.training import continual
            metrics, paths = continual.run_job(continual.ContinualConfig.from_dict(job["config"]), emit, stop.is_set,
                                               job["data_dir"], job.get("out_dir"), job.get("resume_path"))
            emit(events.end("finished", "finished", metrics=metrics, paths=paths))
            return
        config = RunConfig.from_dict(job["config"])  # the worker's boundary: validated here, once
        result = train.run(config, emit=emit, should_stop=stop.is_set, runs_dir=job["runs_dir"],
                           data_dir=job["data_dir"], out_dir=job.get("out_dir"),
                           resume_path=job.get("resume_path"))
    except train.Cancelled as e:
        emit(events.end("cancelled", f"cancelled: {e}"))
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        # The message is for the visitor (no class names); the error and worker.log are for the operator.
        reason = e if str(e) or not isinstance(e, MemoryError) else "out of memory"  # Python's says nothing
        emit(events.end("failed", f"failed: {reason}", error=f"{type(e).__name__}: {e}"))
    else:
        emit(events.end("finished", "finished", metrics=result.metrics, paths=result.paths,
                        fidelity=result.fidelity))


if __name__ == "__main__":
    main()
