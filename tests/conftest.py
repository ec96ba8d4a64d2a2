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
