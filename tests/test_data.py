import numpy as np
import pytest
import torch

from kdapp import data
from kdapp.data import MNIST_MEAN, MNIST_STD


def test_sample_split_is_stratified_fixed_and_disjoint(sample):
    assert len(sample.train_y) == 8000 and len(sample.test_y) == 2000
    assert torch.bincount(sample.test_y, minlength=10).tolist() == [200] * 10
    assert sample.source == "sample"
    a, b = data.sample_split(), data.sample_split()
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    # Disjoint: no test image appears in the training split.
    train = {img.tobytes() for img in a[0]}
    assert sum(img.tobytes() in train for img in a[2]) == 0


def test_sample_holds_real_mnist_bytes():
    with np.load(data.SAMPLE_PATH) as f:
        images, labels = f["images"], f["labels"]
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
    # MNIST statistics: mean intensity 0.1307 of full scale (we get it within a few %), 0..255 range.
    assert images.max() == 255 and images.min() == 0
    assert abs(images.mean() / 255 - MNIST_MEAN) < 0.01


def test_normalisation_uses_the_shared_constants(sample):
    raw = data.sample_split()[0][:100]
    want = (raw / 255.0 - MNIST_MEAN) / MNIST_STD
    np.testing.assert_allclose(sample.train_x[:100, 0].numpy(), want, rtol=1e-5, atol=1e-5)


def test_random_shift_moves_each_image_by_at_most_two_pixels(sample):
    x = sample.train_x[:64]
    shifted = data.random_shift(x, generator=torch.Generator().manual_seed(0))
    background = (0 - MNIST_MEAN) / MNIST_STD
    for img, out in zip(x[:, 0], shifted[:, 0]):
        padded = torch.nn.functional.pad(img, [2] * 4, value=background)
        matches = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(padded[dy:dy + 28, dx:dx + 28], out)]
        assert matches, "each output must be the input shifted by -2..2 px"


def test_shift_moves_every_image_as_a_pixel_by_pixel_copy_does(sample):
    x = sample.train_x[:3]
    background = (0 - MNIST_MEAN) / MNIST_STD
    for dy, dx in [(0, 0), (2, -1), (-2, 2), (1, 0)]:
        want = np.full((3, 28, 28), background, dtype=np.float32)
        for i in range(28):
            for j in range(28):
                if 0 <= i - dy < 28 and 0 <= j - dx < 28:  # pixel (i, j) shows what was at (i - dy, j - dx)
                    want[:, i, j] = x[:, 0, i - dy, j - dx].numpy()
        np.testing.assert_array_equal(data.shift(x, dy, dx)[:, 0].numpy(), want)
    assert data.shift_offsets(0) == [(0, 0)]
    assert len(data.shift_offsets(2)) == 25 and (-2, 2) in data.shift_offsets(2)


def test_auto_falls_back_to_the_sample_when_mnist_is_unreachable(tmp_path, monkeypatch):
    def unreachable(*args, **kwargs):
        raise RuntimeError("could not download MNIST: network unreachable")
    monkeypatch.setattr(data, "load_mnist", unreachable)
    monkeypatch.setattr(data, "_CACHE", {})
    assert data.load("auto", tmp_path).source == "sample"
    with pytest.raises(RuntimeError, match="could not download"):
        data.load("mnist", tmp_path)
    with pytest.raises(ValueError, match="auto, mnist, sample"):
        data.load("imagenet")


def test_mnist_download_is_bounded_and_fails_clearly(tmp_path):
    # No network here or in CI: the attempt must end with a readable error, not hang.
    with pytest.raises(RuntimeError, match="MNIST"):
        data.load_mnist(tmp_path, timeout=5)


def test_import_checks_and_installs_full_mnist(mnist_dir):
    from tests.conftest import SHARED_MNIST
    mnist = data.load("mnist", mnist_dir)
    assert mnist.source == "mnist" and len(mnist.train_y) == 60000 and len(mnist.test_y) == 10000
    assert mnist.train_x.shape == (60000, 1, 28, 28) and mnist.train_x.dtype == torch.float32
    assert torch.bincount(mnist.test_y).tolist() == data.MNIST_CLASS_COUNTS["t10k-labels-idx1-ubyte"]
    # The bundled sample holds MNIST's first 10,000 training digits (grouped by class), byte for
    # byte and with the same labels: an independent check on the raw IDX bytes, not the loader.
    images, _ = data.read_idx(SHARED_MNIST / "train-images-idx3-ubyte.gz", 2051, (60000, 28, 28))
    labels, _ = data.read_idx(SHARED_MNIST / "train-labels-idx1-ubyte.gz", 2049, (60000,))
    with np.load(data.SAMPLE_PATH) as f:
        sample_pairs = sorted((img.tobytes(), int(y)) for img, y in zip(f["images"], f["labels"]))
    assert sample_pairs == sorted((img.tobytes(), int(y)) for img, y in zip(images[:10000], labels[:10000]))


@pytest.mark.slow
def test_import_refuses_what_is_not_mnist(tmp_path, mnist_dir):
    from tests.conftest import SHARED_MNIST
    import gzip
    import shutil
    with pytest.raises(ValueError, match="no train-images-idx3-ubyte.gz"):
        data.import_idx(tmp_path, tmp_path / "out")
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in SHARED_MNIST.iterdir():
        shutil.copy(f, bad / f.name)
    # Truncated images.
    raw = gzip.decompress((SHARED_MNIST / "t10k-images-idx3-ubyte.gz").read_bytes())
    (bad / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(ValueError, match="truncated"):
        data.import_idx(bad, tmp_path / "out")
    # Labels swapped for images: the magic number says so.
    shutil.copy(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz", bad / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(ValueError, match="not an MNIST image file"):
        data.import_idx(bad, tmp_path / "out")
    # Right shapes, wrong labels: the per-class counts differ from MNIST's.
    shutil.copy(SHARED_MNIST / "t10k-images-idx3-ubyte.gz", bad / "t10k-images-idx3-ubyte.gz")
    labels = bytearray(gzip.decompress((SHARED_MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    labels[8:20] = bytes(12)
    (bad / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(labels)))
    with pytest.raises(ValueError, match="differ from MNIST's published"):
        data.import_idx(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists(), "nothing is written unless all four files pass"


def test_random_pen_is_seeded_keeps_ink_and_changes_the_digit(sample):
    x = sample.train_x[:64]
    a = data.random_pen(x, torch.Generator().manual_seed(3))
    b = data.random_pen(x, torch.Generator().manual_seed(3))
    c = data.random_pen(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape
    ink = lambda t: (t * MNIST_STD + MNIST_MEAN).clamp(0, 1)
    # Still a digit on a blank background: background stays 0, ink stays in [0, 1] and is not lost.
    assert ink(a).min() >= 0 and ink(a).max() <= 1.0 + 1e-5
    ratio = ink(a).sum((1, 2, 3)) / ink(x).sum((1, 2, 3))
    assert ratio.min() > 0.3 and ratio.max() < 4.0  # a 3×3 dilation can triple a thin stroke
    assert (a - x).abs().mean() > 0.1, "the augmentation must change the images"
