"""Imbalanced data: an imbalanced Fashion-MNIST subset (classes 0-4 kept at 10 % of their training images, the
test set whole), trained with `training.class_weight: auto`, with `training.sampling: balanced` and with neither,
side by side for several seeds; macro F1 over the test set and the rare classes' recall, with their spread.

    python bench/imbalance.py                    # seeds 0 1 2, 4 epochs -> bench/results.imbalance.json
    python bench/imbalance.py --smoke            # 2,000 images, 1 epoch, one seed: exercises the code only
    python bench/imbalance.py --seeds 0 1 --epochs 6 --out /tmp/imb.json

Each run is xrun's own (`runner.running.run.run_experiment` on a YAML experiment written beside the .npz), into a
throw-away SQLite store; the trained model it returns predicts the whole test set for the scores. The arms of one
seed run one after another, so they share the machine alike.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from harness import machine_info, median, spread  # noqa: E402  (bench/harness.py)

RARE = (0, 1, 2, 3, 4)  # T-shirt/top, trouser, pullover, dress, coat
KEPT = 0.10
ARMS = {"none": {}, "class_weight_auto": {"class_weight": "auto"}, "balanced_sampling": {"sampling": "balanced"}}

EXPERIMENT = """\
name: imbalanced_fashion
description: Fashion-MNIST with classes 0-4 kept at 10 % of their training images (bench/imbalance.py).
data: {{source: arrays, path: imbalanced.npz, class_names: {names}, limit: {limit}}}
model:
  layers:
    - {{type: Conv2D, filters: 32, kernel_size: 3, activation: relu}}
    - {{type: MaxPooling2D, pool_size: 2}}
    - {{type: Conv2D, filters: 64, kernel_size: 3, activation: relu}}
    - {{type: MaxPooling2D, pool_size: 2}}
    - {{type: Flatten}}
    - {{type: Dropout, rate: 0.3}}
    - {{type: Dense, units: 10, activation: softmax}}
optimizer: {{type: Adam, learning_rate: 0.001}}
loss: SparseCategoricalCrossentropy
training: {{epochs: {epochs}, batch_size: 128}}
tracking: {{experiment: bench-imbalance, log_model: false, log_images: false}}
"""


def imbalanced(folder: Path, seed: int = 0) -> tuple[Path, tuple[str, ...], np.ndarray, np.ndarray]:
    """The subset as an .npz (the test set whole), and the test arrays for scoring."""
    from runner.training.data import load_dataset

    data = load_dataset("fashion_mnist")
    rng = np.random.default_rng(seed)
    keep = np.ones(len(data.y_train), bool)
    for c in RARE:
        members = np.flatnonzero(data.y_train == c)
        keep[members] = False
        keep[rng.choice(members, int(len(members) * KEPT), replace=False)] = True
    path = folder / "imbalanced.npz"
    np.savez(path, x_train=data.x_train[keep], y_train=data.y_train[keep], x_test=data.x_test, y_test=data.y_test)
    return path, tuple(data.class_names), data.x_test, data.y_test


def scores(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> dict:
    """Macro F1 and each class's recall, from the confusion of true and predicted classes."""
    recall, f1 = [], []
    for c in range(classes):
        tp = int(np.sum((y_true == c) & (y_pred == c)))
        actual, predicted = int(np.sum(y_true == c)), int(np.sum(y_pred == c))
        r = tp / actual if actual else 0.0
        p = tp / predicted if predicted else 0.0
        recall.append(r)
        f1.append(2 * p * r / (p + r) if p + r else 0.0)
    return {"macro_f1": float(np.mean(f1)), "rare_recall": float(np.mean([recall[c] for c in RARE])),
            "recall": recall, "accuracy": float(np.mean(y_true == y_pred))}


def run_arm(experiment: Path, arm: dict, seed: int, store: str, x_test, y_test) -> dict:
    from rich.console import Console

    from runner.language.spec import load_spec
    from runner.running.request import RunRequest
    from runner.running.run import run_experiment

    sets = [f"training.seed={seed}", *(f"training.{k}={v}" for k, v in arm.items())]
    result = run_experiment(RunRequest(load_spec(experiment, sets), tracking_uri=store, quiet=True,
                                       console=Console(file=io.StringIO())))
    predicted = result.model.predict(x_test.astype("float32") / 255.0, verbose=0, batch_size=512).argmax(axis=1)
    return {"seed": seed, "wall_seconds": result.wall_seconds, **scores(y_test, predicted, 10)}


def summarise(rows: list[dict]) -> dict:
    out = {}
    for key in ("macro_f1", "rare_recall", "accuracy"):
        values = [r[key] for r in rows]
        out[key] = {"median": median(values), "spread": spread(values), "values": values}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--smoke", action="store_true", help="2,000 images, 1 epoch, one seed")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.imbalance.json")
    args = parser.parse_args(argv)
    seeds, epochs, limit = (args.seeds[:1], 1, 2000) if args.smoke else (args.seeds, args.epochs, 100000)
    with tempfile.TemporaryDirectory(prefix="xrun-bench-imbalance-") as tmp:
        folder = Path(tmp)
        _, names, x_test, y_test = imbalanced(folder)
        experiment = folder / "imbalanced.yaml"
        experiment.write_text(EXPERIMENT.format(names=json.dumps(list(names)), limit=limit, epochs=epochs))
        store = f"sqlite:///{folder}/mlflow.db"
        rows = {arm: [] for arm in ARMS}
        for seed in seeds:
            for arm, sets in ARMS.items():
                rows[arm].append(run_arm(experiment, sets, seed, store, x_test, y_test))
                print(f"seed {seed} {arm}: macro F1 {rows[arm][-1]['macro_f1']:.4f}, rare recall "
                      f"{rows[arm][-1]['rare_recall']:.4f}", file=sys.stderr, flush=True)
    result = {"machine": machine_info(), "epochs": epochs, "seeds": seeds, "smoke": args.smoke,
              "rare_classes": list(RARE), "kept": KEPT,
              "arms": {arm: {"summary": summarise(r), "runs": r} for arm, r in rows.items()}}
    result["ratios"] = {arm: result["arms"][arm]["summary"]["rare_recall"]["median"]
                        / max(result["arms"]["none"]["summary"]["rare_recall"]["median"], 1e-9) for arm in ARMS}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({arm: v["summary"] for arm, v in result["arms"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
