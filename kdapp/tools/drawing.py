"""Canvases a visitor could have drawn, made from real MNIST digits: for tests and benchmarks.

A held-out digit is cropped, scaled to a random size, thickened or thinned to a random stroke
width, and pasted at a random place on a transparent RGBA canvas with black ink, which is
exactly what Gradio's Sketchpad sends.
"""
import numpy as np
from PIL import Image, ImageFilter


def redraw(digit28, rng, canvas=280, min_frac=0.25, max_frac=0.9):
    """uint8 (28,28) white-on-black digit -> uint8 (canvas,canvas,4) RGBA, ink in alpha."""
    ys, xs = np.nonzero(digit28 > 0)
    crop = Image.fromarray(digit28[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
    longest = rng.uniform(min_frac, max_frac) * canvas
    scale = longest / max(crop.size)
    size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    ink = crop.resize(size, Image.Resampling.BILINEAR)
    stroke = int(rng.choice([1, 3, 5, 7])) if longest > 100 else int(rng.choice([1, 3]))
    if stroke > 1:
        ink = ink.filter(ImageFilter.MaxFilter(stroke))
    x0 = int(rng.integers(0, canvas - ink.width + 1))
    y0 = int(rng.integers(0, canvas - ink.height + 1))
    rgba = np.zeros((canvas, canvas, 4), dtype=np.uint8)
    rgba[y0:y0 + ink.height, x0:x0 + ink.width, 3] = np.asarray(ink)
    return rgba
