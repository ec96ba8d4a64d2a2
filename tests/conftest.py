import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))


@pytest.fixture(scope="session")
def sample():
    from kdapp import data
    return data.load("sample")


@pytest.fixture(scope="session")
def shipped_teacher():
    from kdapp import checkpoints
    model, _ = checkpoints.load(checkpoints.teacher_path(checkpoints.SHIPPED_DIR, "seed_teacher", "sample"))
    return model


@pytest.fixture(scope="session")
def app_url():
    """The real app (app.py's Blocks) served in this process on a free port."""
    import app
    from kdapp.bench import free_port
    port = free_port()
    app.demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **app.LAUNCH)
    yield f"http://127.0.0.1:{port}/"
    app.demo.close()
