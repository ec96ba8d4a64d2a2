"""MNIST in memory: the full 60k/10k set through torchvision, or the bundled 10k sample.

Every split lives in memory as one normalised float tensor, so a batch is an index
slice, not a per-sample DataLoader over PIL images. Training with cached teacher
logits depends on that: batch i of the student is rows `perm[i*B:(i+1)*B]` of the
same tensor the teacher saw.
"""
import contextlib
import io
import logging
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

# One source of truth for normalisation: training data and canvas preprocessing import these.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

SAMPLE_PATH = Path(__file__).parent / "assets" / "mnist_sample.npz"
SAMPLE_TEST_PER_CLASS = 200  # 10 x 200 = 2,000 held out, 8,000 to train on
SAMPLE_SPLIT_SEED = 20150309  # fixed forever: changing it changes every reported number
DOWNLOAD_TIMEOUT_S = 20.0
DATA_SOURCES = ("auto", "mnist", "sample")


@dataclass
class Dataset:
    """Normalised images (N,1,28,28) float32 and labels (N,) int64, both splits."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str  # "mnist" or "sample": recorded in every result and checkpoint

    def describe(self):
        name = "full MNIST" if self.source == "mnist" else "bundled MNIST sample"
        return f"{name} ({len(self.train_y):,} train / {len(self.test_y):,} test)"

    def to(self, device):
        return Dataset(self.train_x.to(device), self.train_y.to(device),
                       self.test_x.to(device), self.test_y.to(device), self.source)


def normalise(images_uint8):
    """uint8 (N,28,28) -> float32 (N,1,28,28) with MNIST_MEAN/MNIST_STD."""
    x = torch.as_tensor(images_uint8, dtype=torch.float32).div_(255.0)
    return x.sub_(MNIST_MEAN).div_(MNIST_STD).unsqueeze(1).contiguous()


def sample_split():
    """The bundled digits split 8,000 / 2,000, stratified and seeded: the same on every machine."""
    with np.load(SAMPLE_PATH) as f:
        images, labels = f["images"], f["labels"]
    rng = np.random.default_rng(SAMPLE_SPLIT_SEED)
    test_idx = np.concatenate([
        rng.choice(np.flatnonzero(labels == c), SAMPLE_TEST_PER_CLASS, replace=False)
        for c in range(10)])
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test_idx] = True
    train_idx = rng.permutation(np.flatnonzero(~is_test))
    test_idx = np.sort(test_idx)
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]


def load_sample():
    train_images, train_labels, test_images, test_labels = sample_split()
    return Dataset(normalise(train_images), torch.as_tensor(train_labels, dtype=torch.long),
                   normalise(test_images), torch.as_tensor(test_labels, dtype=torch.long), "sample")


def load_mnist(data_dir="data", download=True, timeout=DOWNLOAD_TIMEOUT_S):
    """Full MNIST through torchvision. Raises RuntimeError with a readable reason if unavailable."""
    from torchvision.datasets import MNIST  # lazy: importing torchvision costs ~1 s at app start

    def read(download_now):
        train = MNIST(data_dir, train=True, download=download_now)
        test = MNIST(data_dir, train=False, download=download_now)
        return Dataset(normalise(train.data), train.targets.clone(),
                       normalise(test.data), test.targets.clone(), "mnist")

    try:
        return read(False)
    except RuntimeError:
        if not download:
            raise RuntimeError(f"full MNIST is not in {data_dir!r} and downloading is off")
    # torchvision's urllib calls have no timeout of their own; the socket default bounds them.
    # It also prints each mirror it tries and each failure: keep that out of the terminal and
    # say one line instead.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            return read(True)
    except Exception as e:  # torchvision wraps network errors in several ways
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise RuntimeError(f"could not download MNIST into {data_dir!r} ({reason})") from e
    finally:
        socket.setdefaulttimeout(previous)


def mnist_present(data_dir="data"):
    raw = Path(data_dir) / "MNIST" / "raw"
    return all((raw / f).exists() for f in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"))


_CACHE = {}


def load(source="auto", data_dir="data"):
    """`auto` tries full MNIST (present or downloadable) and falls back to the bundled sample."""
    if source not in DATA_SOURCES:
        raise ValueError(f"unknown data {source!r}; choose one of {', '.join(DATA_SOURCES)}")
    key = (source, str(data_dir))
    if key not in _CACHE:
        if source == "sample":
            _CACHE[key] = load_sample()
        elif source == "mnist":
            _CACHE[key] = load_mnist(data_dir)
        else:
            try:
                _CACHE[key] = load_mnist(data_dir)
            except RuntimeError as e:
                log.warning("%s; using the bundled 10k MNIST sample instead", e)
                _CACHE[key] = load("sample")
    return _CACHE[key]


def random_shift(x, max_shift=2, generator=None):
    """Shift each image by its own random offset in [-max_shift, max_shift] px, filling with background."""
    n, _, h, w = x.shape
    background = (0.0 - MNIST_MEAN) / MNIST_STD
    padded = torch.nn.functional.pad(x, [max_shift] * 4, value=background)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n, 1), generator=generator).to(x.device)
    rows = (dy + torch.arange(h, device=x.device)).unsqueeze(2)  # (n,h,1)
    cols = (dx + torch.arange(w, device=x.device)).unsqueeze(1)  # (n,1,w)
    return padded[torch.arange(n, device=x.device).view(n, 1, 1), 0, rows, cols].unsqueeze(1)
