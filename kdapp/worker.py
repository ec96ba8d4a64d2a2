"""python -m kdapp.worker: one run in a process of its own, driven by kdapp.jobs.

Protocol, one JSON document per line. stdin: the first line is {"config", "runs_dir",
"data_dir"}, and any later line (or EOF, which is what the worker sees if the server dies)
means stop. stdout: the engine's events, then one {"type": "end", "state", ...} record.
Logs and tracebacks go to stderr. A process of its own means request handling in the server
cannot starve training through the GIL, and a crash in training cannot take the server down.
"""
import json
import logging
import sys
import threading
import traceback

from kdapp import engine
from kdapp.config import RunConfig


def main():
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="worker %(message)s")
    job = json.loads(sys.stdin.readline())
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
        config = RunConfig.from_dict(job["config"])
        result = engine.run(config, emit=emit, should_stop=stop.is_set, runs_dir=job["runs_dir"],
                            data_dir=job["data_dir"])
    except engine.Cancelled as e:
        emit({"type": "end", "state": "cancelled", "message": f"cancelled: {e}"})
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        emit({"type": "end", "state": "failed", "message": f"failed: {type(e).__name__}: {e}",
              "error": f"{type(e).__name__}: {e}"})
    else:
        emit({"type": "end", "state": "finished", "message": "finished",
              "metrics": {k: v for k, v in result.metrics.items() if k != "history"},
              "config": result.config, "paths": result.paths, "warnings": result.warnings})


if __name__ == "__main__":
    main()
