"""A tiny multi-label dataset from MNIST: 28x56 grey PNGs of one or two digits side by side, labelled with the set of
digits they show, listed in a CSV (`path,labels,split`) for `data.source: csv` with `multi_label: true`.

    python tests/digit_pairs.py data/digit_pairs [--train 2000 --test 400]

MNIST comes through xrun's own loader (the Keras cache, the download or the pinned wheel; `$XRUN_DATA_DIR` first).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def write_digit_pairs(folder: Path, data_dir: str | None, train: int = 240, test: int = 60, seed: int = 0) -> Path:
    """`train` + `test` images and FOLDER/labels.csv (returned): train images from MNIST's train split, test images
    from its test split; a quarter of the images show one digit (the other half is blank)."""
    from runner.training.data import load_dataset

    mnist = load_dataset("mnist", data_dir)
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = ["path,labels,split"]
    for split, x, y, count in (("train", mnist.x_train, mnist.y_train, train), ("test", mnist.x_test, mnist.y_test,
                                                                                test)):
        for i in range(count):
            rows.append(_pair(folder, f"{split}_{i:04d}.png", x, y, rng) + f",{split}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder / "labels.csv"


def _pair(folder: Path, name: str, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> str:
    from PIL import Image

    a, b = rng.integers(0, len(x), 2)
    single = rng.random() < 0.25
    right = np.zeros_like(x[b]) if single else x[b]
    Image.fromarray(np.concatenate([x[a], right], axis=1), "L").save(folder / "images" / name)
    digits = sorted({int(y[a])} | (set() if single else {int(y[b])}))
    return f"images/{name}," + ";".join(str(d) for d in digits)


if __name__ == "__main__":
    import os

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=400)
    args = parser.parse_args()
    print(write_digit_pairs(args.folder, os.environ.get("XRUN_DATA_DIR"), args.train, args.test))
