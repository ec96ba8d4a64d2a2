"""Do the models read digits that MNIST's writers did not write, drawn on the app's canvas?

Two sets of held-out digits are redrawn on the 280×280 canvas, at random size, position,
stroke width and slant (kdapp.evaluation.redraw.redraw), then read through the app's own
preprocessing (kdapp.evaluation.inference.preprocess), exactly as a visitor's drawing is:

- MNIST test digits (the 10,000 of full MNIST when present, else the sample's 2,000 held-out);
- the 1,797 UCI digits that scikit-learn bundles (Alpaydin & Kaynak: 8×8, from 43 writers who
  are not MNIST's), upsampled smoothly to 32×32 first. These are only ever evaluated on, never
  trained on.

Each model's accuracy and each student's top-1 agreement with its teacher are reported.
"""
import numpy as np
import torch
from PIL import Image

from kdapp import checkpoints, data as data_lib
from kdapp.evaluation import inference
from kdapp.evaluation.redraw import redraw

MAX_SLANT = 0.3
STROKES = (-3, 1, 3, 5, 7, 9)  # thinner, as drawn, and thicker pens
UCI_SIDE = 32                  # 8×8 upsampled 4× before redrawing


def uci_digits():
    """scikit-learn's 1,797 UCI digits, upsampled bicubically from 8×8 (0..16) to 32×32 uint8."""
    from sklearn.datasets import load_digits  # lazy: only this evaluation needs scikit-learn
    digits = load_digits()
    images = []
    for img in digits.images:
        small = Image.fromarray((img * (255.0 / 16.0)).astype(np.float32))
        big = np.asarray(small.resize((UCI_SIDE, UCI_SIDE), Image.Resampling.BICUBIC))
        images.append(np.clip(big, 0, 255).astype(np.uint8))
    return np.stack(images), digits.target.astype(np.int64)


def mnist_test_digits(data_dir="data"):
    """(uint8 images, labels, description): full MNIST's test split when present, else the
    sample's held-out 2,000 (which are MNIST *training* digits: fine for sample-trained models,
    not for models trained on full MNIST)."""
    if data_lib.mnist_present(data_dir):
        from torchvision.datasets import MNIST
        test = MNIST(data_dir, train=False, download=False)
        return test.data.numpy(), test.targets.numpy(), "mnist"
    _, _, images, labels = data_lib.sample_split()
    return images, labels.astype(np.int64), "sample"


def redrawn(images, seed=0, limit=None):
    """Held-out digits -> (N,1,28,28) model inputs, each redrawn on a canvas and preprocessed as
    a drawing; the same for a seed. Canvases are made one at a time (each is 300 KB)."""
    rng = np.random.default_rng(seed)
    pick = np.arange(len(images)) if limit is None or limit >= len(images) else \
        np.sort(rng.choice(len(images), limit, replace=False))
    tensors = [inference.preprocess(redraw(images[i], rng, max_slant=MAX_SLANT, strokes=STROKES)).tensor
               for i in pick]
    return torch.cat(tensors), pick


@torch.inference_mode()
def read(models, x):
    """{name: predicted labels (N,)} for a dict of models."""
    return {name: model.eval()(x).argmax(1) for name, model in models.items()}


def scores(models, x, y, teacher="teacher"):
    """Accuracy of each model and top-1 agreement of every other model with the teacher."""
    y = torch.as_tensor(y)
    predictions = read(models, x)
    out = {"n": len(y), "accuracy": {name: (p == y).float().mean().item() for name, p in predictions.items()}}
    if teacher in predictions:
        out["agreement"] = {name: (p == predictions[teacher]).float().mean().item()
                            for name, p in predictions.items() if name != teacher}
    return out


def shipped_models(roles=None):
    """The drawing's shipped models by role: teacher, student (KD) and baseline (`roles`: another
    trio of checkpoints.shipped_drawing_paths' form)."""
    return {role: checkpoints.load(path)[0] for role, path in checkpoints.shipped_drawing_paths(roles=roles).items()}


def evaluate(models, data_dir="data", seed=0, mnist_limit=2000, uci_limit=None, trained_on=("sample",)):
    """Both redrawn sets through `models`. `trained_on` lists the data the models were trained
    on: the sample's held-out digits are MNIST training digits, so models trained on full MNIST
    are scored on full MNIST's test split, never on those."""
    images, labels, source = mnist_test_digits(data_dir)
    if source == "sample" and "mnist" in trained_on:
        raise RuntimeError("these models were trained on full MNIST, whose training set holds the sample's "
                           "test digits; import full MNIST (python -m kdapp data import DIR) to score them")
    x, pick = redrawn(images, seed, mnist_limit)
    report = {"seed": seed, "mnist": {"source": source, **scores(models, x, labels[pick])}}
    images, labels = uci_digits()
    x, pick = redrawn(images, seed + 1, uci_limit)
    report["uci"] = {"source": "scikit-learn load_digits (UCI, 43 writers)", **scores(models, x, labels[pick])}
    return report


# What a visitor's drawing needs from the shipped models (accuracy on the redrawn sets).
TARGETS = {"uci_teacher": 0.95, "uci_student": 0.92, "uci_gap": 0.03, "mnist": 0.98}


def check_targets(report):
    """Sentences for each target the report misses ([] when all are met)."""
    uci, mnist = report["uci"]["accuracy"], report["mnist"]["accuracy"]
    failures = []
    if uci["teacher"] < TARGETS["uci_teacher"]:
        failures.append(f"teacher reads {uci['teacher']:.2%} of the redrawn UCI digits (target {TARGETS['uci_teacher']:.0%})")
    if uci["student"] < TARGETS["uci_student"]:
        failures.append(f"KD student reads {uci['student']:.2%} of the redrawn UCI digits "
                        f"(target {TARGETS['uci_student']:.0%})")
    if uci["teacher"] - uci["student"] > TARGETS["uci_gap"]:
        failures.append(f"KD student trails the teacher by {100 * (uci['teacher'] - uci['student']):.1f} points "
                        f"on UCI (at most {100 * TARGETS['uci_gap']:.0f})")
    for role in ("teacher", "student"):
        if mnist[role] < TARGETS["mnist"]:
            failures.append(f"{role} reads {mnist[role]:.2%} of the redrawn MNIST digits (target {TARGETS['mnist']:.0%})")
    return failures


# The table's words; a caller that writes another language passes its own (kdapp.tools.reproduce).
TABLE_WORDS = {"set": "redrawn set", "digits": "digits", "teacher": "teacher", "student": "student",
               "baseline": "baseline", "agrees": "{role} agrees with teacher", "mnist": "MNIST test ({source})",
               "uci": "UCI, 43 other writers"}


def table(report, words=TABLE_WORDS):
    """The report as a markdown table: accuracy per model, and agreement with the teacher."""
    roles = list(report["mnist"]["accuracy"])
    lines = [f"| {words['set']} | {words['digits']} | " + " | ".join(words.get(r, r) for r in roles) + " | " +
             " | ".join(words["agrees"].format(role=words.get(r, r)) for r in roles if r != "teacher") + " |",
             "|---|---:|" + "---:|" * (2 * len(roles) - 1)]
    for key, name in (("mnist", words["mnist"].format(source=report["mnist"]["source"])), ("uci", words["uci"])):
        r = report[key]
        lines.append(f"| {name} | {r['n']:,} | " + " | ".join(f"{r['accuracy'][m]:.2%}" for m in roles) + " | " +
                     " | ".join(f"{r['agreement'][m]:.2%}" for m in roles if m != "teacher") + " |")
    return "\n".join(lines)
