import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# The app under test keeps its runs in a fresh store, never the developer's runs/.
os.environ["KDAPP_RUNS_DIR"] = tempfile.mkdtemp(prefix="kdapp-test-runs-")
sys.path.insert(0, str(ROOT))
torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: minutes of real training or real restarts; the fast tier skips "
                                       "them (-m 'not slow')")


@pytest.fixture(scope="session")
def sample():
    from kdapp import data
    return data.load("sample")


# MNIST's four IDX .gz files: KDAPP_MNIST_IDX, else the team's shared copy beside the checkout.
SHARED_MNIST = Path(os.environ.get("KDAPP_MNIST_IDX", ROOT.parent / "shared" / "data" / "mnist"))
NO_MNIST = ("full MNIST is not here: put its four IDX files (train-images-idx3-ubyte.gz and the other three) "
            "in a folder DIR, run `python -m kdapp data import DIR` to use it in the app, and set "
            "KDAPP_MNIST_IDX=DIR for these tests")


def need_mnist():
    """Skip (under CI=true: fail) the calling test when the IDX files are absent, saying how to get them."""
    if not (SHARED_MNIST / "train-images-idx3-ubyte.gz").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(NO_MNIST + "; CI needs it")
        pytest.skip(NO_MNIST)


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory):
    """A data folder holding full MNIST, imported from the IDX files with the product's own
    `data import`. Absent, the tests that need it skip and say how to get it; under CI=true
    they fail instead."""
    need_mnist()
    from kdapp import data
    data_dir = tmp_path_factory.mktemp("mnist-data")
    data.import_idx(SHARED_MNIST, data_dir)
    return data_dir


@pytest.fixture(scope="session")
def shipped_teacher():
    from kdapp import checkpoints
    model, _ = checkpoints.load(checkpoints.teacher_path(checkpoints.SHIPPED_DIR, "seed_teacher", "sample"))
    return model


@pytest.fixture(scope="session")
def app_url():
    """The real app (app.py's Blocks) served in this process on a free port."""
    import app
    from kdapp.tools.serving import free_port
    port = free_port()
    app.demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **app.LAUNCH)
    yield f"http://127.0.0.1:{port}/"
    app.demo.close()


@pytest.fixture
def figures():
    """figures(name=value, ...): record what a fault test measured, for scripts/reliability.py,
    which sets KDAPP_RELIABILITY_FIGURES to a JSON file; without it nothing is written."""
    path = os.environ.get("KDAPP_RELIABILITY_FIGURES")

    def record(**values):
        if not path:
            return
        import json
        known = json.loads(Path(path).read_text()) if Path(path).is_file() else {}
        Path(path).write_text(json.dumps({**known, **values}, indent=1))
    return record
