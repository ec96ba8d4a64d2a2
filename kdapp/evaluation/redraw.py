"""Canvases a visitor could have drawn, made from real digits: for the robustness evaluation,
tests and benchmarks.

A digit is cropped, slanted, scaled to a random size, given a thicker or thinner stroke, and
pasted at a random place on a transparent RGBA canvas with black ink, which is exactly what
Gradio's Sketchpad sends.
"""
import numpy as np
from PIL import Image, ImageFilter

STROKES = (1, 3, 5, 7)  # MaxFilter sizes at canvas scale: 1 = the digit's own stroke


def redraw(digit, rng, canvas=280, min_frac=0.25, max_frac=0.9, max_slant=0.0, strokes=STROKES):
    """uint8 (H,W) white-on-black digit -> uint8 (canvas,canvas,4) RGBA, ink in alpha.

    `max_slant` shears the digit by up to that much (x += slant * y, before scaling); a negative
    stroke thins the ink with a MinFilter of that size. The draws come from `rng` in a fixed
    order, so a seed gives the same canvases."""
    ys, xs = np.nonzero(digit > 0)
    crop = Image.fromarray(digit[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
    if max_slant:
        slant = rng.uniform(-max_slant, max_slant)
        w, h = crop.size
        extra = int(np.ceil(abs(slant) * h))
        # PIL's AFFINE maps each output (x, y) to the input (x + slant*y + c, y).
        c = -slant * h if slant > 0 else 0.0
        crop = crop.transform((w + extra, h), Image.Transform.AFFINE, (1, slant, c, 0, 1, 0),
                              resample=Image.Resampling.BILINEAR)
    longest = rng.uniform(min_frac, max_frac) * canvas
    scale = longest / max(crop.size)
    size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    ink = crop.resize(size, Image.Resampling.BILINEAR)
    stroke = int(rng.choice(strokes)) if longest > 100 else int(rng.choice([s for s in strokes if abs(s) <= 3]))
    if stroke > 1:
        ink = ink.filter(ImageFilter.MaxFilter(stroke))
    elif stroke < -1:
        ink = ink.filter(ImageFilter.MinFilter(-stroke))
    x0 = int(rng.integers(0, canvas - ink.width + 1))
    y0 = int(rng.integers(0, canvas - ink.height + 1))
    rgba = np.zeros((canvas, canvas, 4), dtype=np.uint8)
    rgba[y0:y0 + ink.height, x0:x0 + ink.width, 3] = np.asarray(ink)
    return rgba
