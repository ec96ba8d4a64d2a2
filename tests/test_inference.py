"""Canvas preprocessing: the MNIST recipe, and every odd input a visitor can send."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from kdapp.evaluation import inference
from kdapp.data import MNIST_MEAN, MNIST_STD, sample_split
from kdapp.evaluation.redraw import redraw
from kdapp.evaluation.inference import BlankCanvas, CanvasError, preprocess


def rgba_canvas(size=280):
    return np.zeros((size, size, 4), dtype=np.uint8)


def centre_of_mass(img):
    img = img.astype(np.float64)
    ys, xs = np.mgrid[:img.shape[0], :img.shape[1]]
    return (img * ys).sum() / img.sum(), (img * xs).sum() / img.sum()


def test_digit_is_scaled_to_20px_and_centred_by_mass():
    canvas = rgba_canvas()
    canvas[10:60, 200:230, 3] = 255  # a 50x30 block in the top-right corner
    out = preprocess(canvas).image
    rows, cols = np.nonzero(out.any(1))[0], np.nonzero(out.any(0))[0]
    assert rows[-1] - rows[0] + 1 == 20  # longest side -> 20 px
    assert cols[-1] - cols[0] + 1 == 12  # 30/50 * 20: aspect ratio kept
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14.0) <= 0.6 and abs(cx - 14.0) <= 0.6  # MNIST's own centre of mass


def test_a_thin_vertical_stroke_stays_thin():
    canvas = rgba_canvas()
    canvas[40:240, 100:112, 3] = 255  # a "1": 200 tall, 12 wide
    out = preprocess(canvas).image
    assert (out.any(1)).sum() == 20 and (out.any(0)).sum() <= 3


def test_blank_canvas_raises_blank():
    with pytest.raises(BlankCanvas):
        preprocess(rgba_canvas())
    with pytest.raises(BlankCanvas):
        preprocess({"background": None, "layers": [], "composite": None})
    with pytest.raises(BlankCanvas):
        preprocess(np.full((100, 100, 3), 255, np.uint8))  # white paper, no ink


def test_rgb_and_greyscale_images_read_dark_ink_on_light_paper():
    rgba = rgba_canvas()
    rgba[60:200, 120:150, 3] = 255
    want = preprocess(rgba).image
    rgb = np.full((280, 280, 3), 255, np.uint8)
    rgb[60:200, 120:150] = 0
    np.testing.assert_array_equal(preprocess(rgb).image, want)
    np.testing.assert_array_equal(preprocess(rgb[:, :, 0]).image, want)
    np.testing.assert_array_equal(preprocess(Image.fromarray(rgb)).image, want)
    mnist_style = 255 - rgb[:, :, 0]  # white on black, as MNIST stores digits
    np.testing.assert_array_equal(preprocess(mnist_style).image, want)


def test_a_real_digit_survives_the_round_trip(shipped_teacher):
    """Held-out digits drawn back onto a big canvas come back close to the original 28x28."""
    _, _, test_images, test_labels = sample_split()
    rng = np.random.default_rng(0)
    correct = 0
    for img, label in zip(test_images[:50], test_labels[:50]):
        big = np.kron(img, np.ones((10, 10), np.uint8))  # 280x280, same shape, 10x
        rgba = rgba_canvas()
        rgba[:, :, 3] = big
        prepared = preprocess(rgba)
        corr = np.corrcoef(prepared.image.ravel().astype(float), img.ravel().astype(float))[0, 1]
        assert corr > 0.85
        want = (torch.from_numpy(img).float() / 255 - MNIST_MEAN) / MNIST_STD
        assert prepared.tensor.shape == (1, 1, 28, 28)
        assert abs(prepared.tensor.mean().item() - want.mean().item()) < 0.15
        correct += int(shipped_teacher(prepared.tensor).argmax().item() == label)
        redraw(img, rng)  # the redraw helper accepts every held-out digit
    assert correct >= 48


@pytest.mark.parametrize("make,note", [
    (lambda: np.dstack([np.zeros((280, 280, 3), np.uint8), np.full((280, 280), 255, np.uint8)]), "most of the canvas"),
    (lambda: _dot(280, 140, 140, 1), "very small"),
    (lambda: _dot(280, 140, 140, 9), "very small"),  # one tap of the page's brush (radius 9): a dot, not a digit
    (lambda: _dot(3, 1, 1, 0), None),
    (lambda: _dot(3000, 1500, 1500, 40), None),
])
def test_odd_canvases_get_an_answer_and_a_note(make, note):
    prepared = preprocess(make())
    assert prepared.image.shape == (28, 28) and torch.isfinite(prepared.tensor).all()
    if note:
        assert any(note in n for n in prepared.notes)


def _dot(size, y, x, r):
    c = np.zeros((size, size, 4), np.uint8)
    c[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1, 3] = 255
    return c


@pytest.mark.parametrize("bad,message", [
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "PNG or JPEG"),
    (np.zeros((5000, 10, 4), np.uint8), "largest allowed"),
    (np.zeros((10, 10, 7), np.uint8), "channels"),
    (np.array(["a", "b"], dtype=object), "expected an image"),
    (np.zeros((0, 0)), "expected an image"),
])
def test_unreadable_input_raises_a_clear_error(bad, message):
    with pytest.raises(CanvasError, match=message):
        preprocess(bad)


def test_truncated_png_file_is_refused_clearly():
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((50, 50, 4), np.uint8)).save(buffer, format="PNG")
    with pytest.raises(CanvasError, match="cut short or damaged"):
        preprocess(buffer.getvalue()[:60])


def test_compare_gives_distributions_at_both_temperatures(shipped_teacher):
    x = torch.randn(1, 1, 28, 28)
    out = inference.compare(shipped_teacher, shipped_teacher, x, 4.0)
    assert out["kl_T"] == pytest.approx(0.0, abs=1e-6)
    p1, pT = np.array(out["teacher"]["p1"]), np.array(out["teacher"]["pT"])
    assert p1.sum() == pytest.approx(1) and pT.sum() == pytest.approx(1)
    assert pT.max() < p1.max()  # a higher temperature flattens the distribution


def test_a_mark_a_fifth_of_the_canvas_across_is_not_called_small():
    assert not any("very small" in n for n in preprocess(_dot(280, 140, 140, 30)).notes)  # 60 px of 280
