"""Canvas -> 28x28 tensor -> probabilities, done the way MNIST itself was made.

MNIST digits were size-normalised to fit a 20x20 box (keeping the aspect ratio and the
anti-aliased grey levels) and then placed in 28x28 so that their centre of mass sits at the
centre (LeCun et al.). Doing the same to a drawing is what makes a 99% model read it well.
"""
import io
import math
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from kdapp.data import MNIST_MEAN, MNIST_STD

MAX_SIDE = 4096          # larger canvases are refused: 4096^2 RGBA is already 64 MB
INK_THRESHOLD = 0.05     # ink below 5% darkness is anti-aliasing dust, not part of the digit
SMALL = 0.12             # a drawing less than 12% of the canvas across (a tap of the app's 18 px brush is 6%
                         # of its 280 px) is noted as very small: scaled up, a dot reads as a confident 0
BOX = 20                 # MNIST's size-normalisation box
SIZE = 28
# Where MNIST puts the centre of mass, in pixel indices: measured on the bundled digits as
# 14.00 +- 0.29 in both axes, not the geometric centre 13.5. Using 13.5 shifts every drawing
# by a pixel, which costs accuracy.
MNIST_COM = 14.0


class CanvasError(ValueError):
    """The image cannot be read as a drawing; the message says what to do."""


class BlankCanvas(CanvasError):
    """Nothing is drawn yet."""


def unreadable(error):
    """The visitor's sentence for an image that could not be opened: what is wrong and what to send
    instead. Never the error's own text, which names the server's temporary copy of the upload."""
    text = str(error).lower()
    if isinstance(error, Image.DecompressionBombError) or "decompression bomb" in text:
        problem = "that image has far too many pixels"
    elif isinstance(error, UnidentifiedImageError) or "cannot identify" in text:
        problem = "that file is not an image"
    elif "truncated" in text or "broken" in text or "end of file" in text:
        problem = "that image file is cut short or damaged"
    else:
        problem = "that image could not be read"
    return f"{problem}; send a PNG or JPEG of at most {MAX_SIDE}x{MAX_SIDE} pixels"


@dataclass
class Prepared:
    tensor: torch.Tensor     # (1,1,28,28), normalised like the training data
    image: np.ndarray        # (28,28) uint8, white ink on black: what the models see
    notes: list              # sentences about an unusual drawing (tiny, covering the canvas, ...)


def ink_from_image(image):
    """Any image -> float ink in [0,1] (H,W), 1 = full ink.

    A Gradio Sketchpad gives RGBA with a transparent background and black ink, so the ink is
    the alpha channel (times darkness, in case someone draws in a light colour). Images with
    no transparency are read as dark-on-light (a photo of paper) or, if mostly dark,
    light-on-dark (MNIST's own convention)."""
    if isinstance(image, dict):  # a Sketchpad/ImageEditor value
        image = image.get("composite") if image.get("composite") is not None else image.get("background")
        if image is None:
            raise BlankCanvas("draw a digit on the canvas")
    if isinstance(image, (bytes, bytearray)):
        try:
            image = Image.open(io.BytesIO(image))
            image.load()
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
            raise CanvasError(unreadable(e)) from None
    if isinstance(image, Image.Image):
        if image.width > MAX_SIDE or image.height > MAX_SIDE:
            raise CanvasError(f"the image is {image.width}x{image.height}; the largest allowed is {MAX_SIDE}x{MAX_SIDE}")
        if image.mode not in ("L", "RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
        image = np.asarray(image)
    arr = np.asarray(image)
    if arr.dtype == object or arr.ndim not in (2, 3) or arr.size == 0:
        raise CanvasError("expected an image (H,W), (H,W,3) or (H,W,4)")
    if arr.shape[0] > MAX_SIDE or arr.shape[1] > MAX_SIDE:
        raise CanvasError(f"the image is {arr.shape[1]}x{arr.shape[0]}; the largest allowed is {MAX_SIDE}x{MAX_SIDE}")
    if arr.ndim == 3 and arr.shape[2] not in (1, 3, 4):
        raise CanvasError(f"expected 1, 3 or 4 colour channels, got {arr.shape[2]}")
    arr = arr.astype(np.float32)
    if arr.max() > 1.0:
        arr /= 255.0
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3:
        lum = arr[:, :, :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        if arr.shape[2] == 4 and arr[:, :, 3].min() < 1.0:
            return arr[:, :, 3] * (1.0 - lum)
        arr = lum
    # A uniform image has no background to tell apart: dark means fully inked, light means blank.
    if arr.mean() > 0.5 or arr.max() - arr.min() < INK_THRESHOLD:
        return 1.0 - arr
    return arr


def preprocess(image):
    """Any drawing -> Prepared. Raises BlankCanvas when there is no ink, CanvasError when the
    input is not an image."""
    ink = ink_from_image(image)
    mask = ink > INK_THRESHOLD
    if not mask.any():
        raise BlankCanvas("the canvas is blank: draw a digit")
    notes = []
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    crop = ink[top:bottom, left:right]
    h, w = crop.shape
    if mask.mean() > 0.5:
        notes.append("most of the canvas is inked, so no digit can be read from it")
    if max(h, w) < SMALL * max(ink.shape):
        notes.append("the drawing is very small; it was scaled up to MNIST's size")

    # Longest side -> 20 px, aspect kept; PIL's resampling keeps the anti-aliased grey levels.
    scale = BOX / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    digit = Image.fromarray((np.clip(crop, 0, 1) * 255).astype(np.uint8))
    digit = np.asarray(digit.resize((new_w, new_h), Image.Resampling.LANCZOS if scale < 1
                                    else Image.Resampling.BILINEAR), dtype=np.float32)

    # Place in 28x28 with the centre of mass at the centre, keeping the whole digit inside.
    total = digit.sum()
    cy = (digit.sum(1) @ np.arange(new_h)) / total if total > 0 else (new_h - 1) / 2
    cx = (digit.sum(0) @ np.arange(new_w)) / total if total > 0 else (new_w - 1) / 2
    y0 = int(np.clip(round(MNIST_COM - cy), 0, SIZE - new_h))
    x0 = int(np.clip(round(MNIST_COM - cx), 0, SIZE - new_w))
    canvas = np.zeros((SIZE, SIZE), dtype=np.float32)
    canvas[y0:y0 + new_h, x0:x0 + new_w] = digit
    image28 = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    return Prepared(normalise(image28), image28, notes)


def normalise(image28):
    """A 28x28 uint8 digit (white ink on black, as preprocess makes it) -> the (1,1,28,28)
    tensor the models read, normalised like the training data."""
    x = torch.from_numpy(image28.astype(np.float32) / 255.0)
    return ((x - MNIST_MEAN) / MNIST_STD).view(1, 1, SIZE, SIZE)


def prepared_digit(pixels):
    """A digit a browser already prepared (drawing.js's port of `preprocess`): SIZE*SIZE
    integers 0..255, row by row -> Prepared. Raises CanvasError for anything else, BlankCanvas
    for no ink."""
    if not isinstance(pixels, (list, tuple)) or len(pixels) != SIZE * SIZE \
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in pixels):
        raise CanvasError(f"send the prepared digit as {SIZE * SIZE} integers from 0 to 255")
    image28 = np.asarray(pixels, dtype=np.uint8).reshape(SIZE, SIZE)
    if not (image28 > INK_THRESHOLD * 255).any():
        raise BlankCanvas("the canvas is blank: draw a digit")
    return Prepared(normalise(image28), image28, [])


@torch.inference_mode()
def compare(teacher, student, x, temperature, baseline=None):
    """Each model's softmax at T=1 and at T, and KL(teacher || model) at T, as plain lists.
    Keys: "teacher" (unless it is None: a run with no teacher), "student" and, given one,
    "baseline"; each {"p1", "pT", "kl_T"}, with kl_T None when there is no teacher."""
    models = {"teacher": teacher, "student": student, "baseline": baseline}
    logits = {name: model(x).float() for name, model in models.items() if model is not None}
    log_p = F.log_softmax(logits["teacher"] / temperature, 1) if teacher is not None else None
    out = {"temperature": float(temperature)}
    for name, z in logits.items():
        log_q = F.log_softmax(z / temperature, 1)
        out[name] = {"p1": F.softmax(z, 1)[0].tolist(), "pT": log_q.exp()[0].tolist(),
                     "kl_T": None if log_p is None else
                     F.kl_div(log_q, log_p, reduction="batchmean", log_target=True).item()}
    out["kl_T"] = out["student"]["kl_T"]
    return out


@torch.inference_mode()
def latency_ms(model, repeats=200, warmup=20):
    """Batch-1 forward latency on CPU, median and p95 in milliseconds."""
    x = torch.zeros(1, 1, SIZE, SIZE)
    model = model.eval()
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x)
        times.append((time.perf_counter() - start) * 1000)
    return percentiles(times)


def percentiles(times):
    """(median, p95) of a list of durations; p95 by the nearest-rank method."""
    times = sorted(times)
    return statistics.median(times), times[max(0, math.ceil(0.95 * len(times)) - 1)]
