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
