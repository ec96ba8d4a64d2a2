"""MNIST in memory: the full 60k/10k set through torchvision, or the bundled 10k sample.

Every split lives in memory as one normalised float tensor, so a batch is an index
slice, not a per-sample DataLoader over PIL images. Training with cached teacher
logits depends on that: batch i of the student is rows `perm[i*B:(i+1)*B]` of the
same tensor the teacher saw.
"""
import contextlib
import gzip
import io
import logging
import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

# One source of truth for normalisation: training data and canvas preprocessing import these.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
BACKGROUND = (0.0 - MNIST_MEAN) / MNIST_STD  # a blank pixel, normalised: what a shift brings in

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
            raise RuntimeError(f"full MNIST is not in {data_dir!r} and downloading is off; with the IDX "
                               f"files at hand, run: python -m kdapp data import DIR --data-dir {data_dir}")
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
        raise RuntimeError(f"could not download MNIST into {data_dir!r} ({reason}); with the IDX files at "
                           f"hand, run: python -m kdapp data import DIR --data-dir {data_dir}") from e
    finally:
        socket.setdefaulttimeout(previous)


def mnist_present(data_dir="data"):
    raw = Path(data_dir) / "MNIST" / "raw"
    return all((raw / name).is_file() for name in IDX_FILES)


# ---- importing MNIST's IDX files, for machines without network ----

# The four files as MNIST publishes them, and what each must hold.
IDX_FILES = {
    "train-images-idx3-ubyte": (2051, (60000, 28, 28)),
    "train-labels-idx1-ubyte": (2049, (60000,)),
    "t10k-images-idx3-ubyte": (2051, (10000, 28, 28)),
    "t10k-labels-idx1-ubyte": (2049, (10000,)),
}
# Digits per class, as published with MNIST: a different or damaged set fails this.
MNIST_CLASS_COUNTS = {
    "train-labels-idx1-ubyte": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    "t10k-labels-idx1-ubyte": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
}


def read_idx(path, magic, shape):
    """An IDX file (gzipped or not) -> uint8 array of `shape`; ValueError saying what is wrong."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise ValueError(f"{path.name}: cannot be read ({e})") from None
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if found != magic:
        raise ValueError(f"{path.name}: not an MNIST {'image' if magic == 2051 else 'label'} file "
                         f"(IDX magic {found}, expected {magic})")
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(len(shape))]
    if tuple(dims) != shape:
        raise ValueError(f"{path.name}: holds shape {tuple(dims)}, expected {shape}")
    body = raw[4 + 4 * len(shape):]
    if len(body) != int(np.prod(shape)):
        raise ValueError(f"{path.name}: {len(body):,} bytes of data, expected {int(np.prod(shape)):,} "
                         "(truncated or padded)")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape), raw


def import_idx(source_dir, data_dir="data"):
    """Check MNIST's four IDX files in `source_dir` (gzipped or not, standard names) and write
    them, unzipped, where torchvision.datasets.MNIST reads them: data_dir/MNIST/raw/.
    Nothing is written unless all four pass. Returns the raw folder."""
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise ValueError(f"{source_dir} is not a folder")
    checked = {}
    for name, (magic, shape) in IDX_FILES.items():
        candidates = [source_dir / (name + ".gz"), source_dir / name]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise ValueError(f"{source_dir} has no {name}.gz (or {name}); it needs MNIST's four files: "
                             f"{', '.join(n + '.gz' for n in IDX_FILES)}")
        values, raw = read_idx(path, magic, shape)
        if name in MNIST_CLASS_COUNTS:
            counts = np.bincount(values, minlength=10).tolist()
            if len(counts) != 10:
                raise ValueError(f"{path.name}: labels must be 0..9, found {int(values.max())}")
            if counts != MNIST_CLASS_COUNTS[name]:
                raise ValueError(f"{path.name}: digits per class {counts} differ from MNIST's published "
                                 f"{MNIST_CLASS_COUNTS[name]}: this is not MNIST, or it is damaged")
        checked[name] = raw
    raw_dir = Path(data_dir) / "MNIST" / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    for name, raw in checked.items():
        tmp = raw_dir / f".{name}.tmp"
        tmp.write_bytes(raw)
        os.replace(tmp, raw_dir / name)
    for key in [k for k in _CACHE if k[0] in ("mnist", "auto")]:
        _CACHE.pop(key)
    return raw_dir


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


def shift(x, dy, dx):
    """Every image of normalised (N,1,28,28) moved dy px down and dx px right (negative: up, left),
    the background filling what comes in."""
    m = max(abs(dy), abs(dx))
    if m == 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, [m] * 4, value=BACKGROUND)
    return padded[..., m - dy:m - dy + h, m - dx:m - dx + w]


def shifter(dy, dx):
    """shift(·, dy, dx) as a function of a batch; None for no move."""
    return None if (dy, dx) == (0, 0) else (lambda x: shift(x, dy, dx))


def shift_offsets(k):
    """The (dy, dx) offsets of a shift ensemble of radius k: every one in -k..k px, (2k+1)² in all."""
    return [(dy, dx) for dy in range(-k, k + 1) for dx in range(-k, k + 1)]


def random_shift(x, max_shift=2, generator=None):
    """Shift each image by its own random offset in [-max_shift, max_shift] px, filling with background."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, [max_shift] * 4, value=BACKGROUND)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n, 1), generator=generator).to(x.device)
    rows = (dy + torch.arange(h, device=x.device)).unsqueeze(2)  # (n,h,1)
    cols = (dx + torch.arange(w, device=x.device)).unsqueeze(1)  # (n,1,w)
    return padded[torch.arange(n, device=x.device).view(n, 1, 1), 0, rows, cols].unsqueeze(1)


# The ranges of random_pen: what visitors' digits vary by that MNIST's do not (much).
PEN_ROTATE_DEG = 12.0
PEN_SCALE = (0.8, 1.1)
PEN_SLANT = 0.3          # horizontal shear, x += slant * y
PEN_SHIFT_PX = 2.5


def random_pen(x, generator=None):
    """Digits as other writers and other pens make them: each image gets its own rotation
    (±12°), scale (0.8-1.1), slant (shear ±0.3) and shift (±2.5 px), in one bilinear warp, and
    a stroke made thicker (3×3 dilation), thinner (the faint edge of the stroke dropped) or left.
    (A fourth, "soft" stroke, blurred through a 12 px image, was tried and dropped: the teacher
    it trained read 91.3% of the redrawn UCI digits, against 94.1% without it.)

    Takes and returns normalised (N,1,28,28); random draws come from `generator` on the CPU, so
    a seed gives the same batch on every device."""
    n, device = len(x), x.device

    def uniform(low, high):
        return (low + (high - low) * torch.rand(n, generator=generator)).to(device)
    ink = x * MNIST_STD + MNIST_MEAN  # back to [0, 1], 0 = background, so warps pad with background
    stroke = torch.randint(0, 3, (n,), generator=generator).to(device).view(n, 1, 1, 1)
    thick = F.max_pool2d(ink, 3, stride=1, padding=1)
    thin = ((ink - 0.35) / 0.65).clamp(0, 1)
    ink = torch.where(stroke == 1, thick, torch.where(stroke == 2, thin, ink))

    angle = uniform(-PEN_ROTATE_DEG, PEN_ROTATE_DEG) * (math.pi / 180)
    scale = uniform(*PEN_SCALE)
    slant = uniform(-PEN_SLANT, PEN_SLANT)
    shift = torch.stack([uniform(-PEN_SHIFT_PX, PEN_SHIFT_PX), uniform(-PEN_SHIFT_PX, PEN_SHIFT_PX)], 1) / 14.0
    cos, sin = torch.cos(angle), torch.sin(angle)
    # affine_grid maps output coordinates to input ones, so this is the inverse of
    # "rotate, slant, then scale": A = (R @ S)^-1 / scale, with S = [[1, slant], [0, 1]].
    inverse = torch.stack([torch.stack([cos, sin], 1), torch.stack([-sin, cos], 1)], 1)  # R^-1
    unslant = torch.zeros(n, 2, 2, device=device)
    unslant[:, 0, 0] = unslant[:, 1, 1] = 1.0
    unslant[:, 0, 1] = -slant
    theta = torch.cat([(unslant @ inverse) / scale.view(n, 1, 1), -shift.unsqueeze(2)], 2)
    grid = F.affine_grid(theta, list(ink.shape), align_corners=False)
    ink = F.grid_sample(ink, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (ink - MNIST_MEAN) / MNIST_STD
