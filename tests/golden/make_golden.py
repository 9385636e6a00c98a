"""Records what every experiments/*.yaml gives, so a refactoring can be checked against it (tests/test_golden.py).

For each experiment: the `xrun summary FILE --format json` document, and the training loss of the first epoch of a
seeded tiny CPU run (`--set` values in OVERRIDES, SIZES; image folders made up by FOLDERS). Run it by hand, with the
code whose behaviour is the reference, from that checkout (it imports `runner` from the PYTHONPATH):

    cd CHECKOUT && PYTHONPATH=. XRUN_DATA_DIR=/work/shared/datasets \\
        /work/main/.venv/bin/python /work/main/tests/golden/make_golden.py [--repo CHECKOUT] [--runs N]

It writes tests/golden/experiments.json beside itself: {file name: {"summary": {...}, "first_epoch_loss": x}}
(with --runs 2 it trains each experiment twice and prints the largest relative difference seen). The whole run
takes a few minutes on two cores. Everything is done through `runner.cli.main`, the `xrun` command's own entry
point, in this one process, so it works whatever the library's layout behind the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "experiments.json"

# Every golden run: one seeded epoch in float32, nothing logged but the metrics (models and plots take time).
OVERRIDES = ("training.seed=0", "training.epochs=1", "training.precision=float32",
             "tracking.log_model=false", "tracking.log_images=false")
# (data.limit, training.batch_size) by the experiment's data.path; the built-in datasets (28x28) by default.
# 224x224 inputs with up to 138M parameters: a handful of images, so each trains in seconds on a CPU.
SIZES = {None: (128, 32), "../data/digits": (64, 16), "../data/imagenet": (4, 2),
         "../data/digit_pairs/labels.csv": (64, 16)}


def _image_folder(root: Path, classes: list[str], size: tuple[int, int], mode: str, per_class: int) -> None:
    """train/ with `per_class` made-up images of each class, val/ and test/ with one of each class (of the first two
    where there are many: the 1000-class runs are refused by their class check anyway)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    channels = {"L": 1, "RGB": 3}[mode]
    held = classes if len(classes) <= 10 else classes[:2]
    for split, names, count in (("train", classes, per_class), ("val", held, 1), ("test", held, 1)):
        for name in names:
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (*size, channels), dtype=np.uint8)
                Image.fromarray(pixels.squeeze(), mode).save(root / split / name / f"{i:03d}.png")


def _multi_label_csv(path: Path, labels: list[str], size: tuple[int, int], count: int) -> None:
    """A CSV of `count` made-up grey images (train) and a quarter as many (test), each with one or two labels, every
    label in the training rows."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = path.parent / f"{path.stem}_images"
    folder.mkdir(parents=True)
    rows = ["path,labels,split"]
    for i in range(count + count // 4):
        chosen = [labels[i % len(labels)]] + ([labels[int(rng.integers(len(labels)))]] if i % 3 else [])
        Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8), "L").save(folder / f"{i:03d}.png")
        rows.append(f"{folder.name}/{i:03d}.png,{';'.join(sorted(set(chosen)))},{'train' if i < count else 'test'}")
    path.write_text("\n".join(rows) + "\n")


# The folders the experiments name (and do not ship), made up: the same classes and image kind, made-up pixels.
# PNG (lossless) from a seeded generator: the same bytes on every machine. ImageNet-sized images are small here;
# the experiments' data.image_size resizes them.
FOLDERS = {
    "../data/digits": lambda root: _image_folder(root, [str(d) for d in range(10)], (28, 28), "L", 8),
    "../data/imagenet": lambda root: _image_folder(root, [f"n{c:08d}" for c in range(1000)], (16, 16), "RGB", 1),
    "../data/digit_pairs/labels.csv": lambda path: _multi_label_csv(path, [str(d) for d in range(10)], (28, 56), 64),
}


def experiment_files(repo: Path) -> list[Path]:
    return sorted((repo / "experiments").glob("*.yaml"))


def data_path(file: Path) -> str | None:
    """The experiment's data.path, following `extends`; None for the built-in datasets."""
    document = yaml.safe_load(file.read_text())
    path = (document.get("data") or {}).get("path")
    if path is None and document.get("extends"):
        return data_path(file.parent / document["extends"])
    return path


class Refused(Exception):
    """xrun refused the command with its one-line error (exit 2): the line is the golden value."""


def cli(*args: str) -> str:
    """Runs `xrun ARGS` in this process through the command's entry point; its standard output."""
    from runner.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    if code == 2:
        raise Refused(err.getvalue().strip().splitlines()[-1])
    if code != 0:
        raise RuntimeError(f"xrun {' '.join(args)} exited {code}:\n{out.getvalue()}{err.getvalue()}")
    return out.getvalue()


# What `summary` measures on the machine at hand (its speed, its free memory) is not the model's, so not golden.
MACHINE_KEYS = ("available_memory", "step_seconds", "machine")


def summary(file: Path) -> dict:
    """`xrun summary FILE --format json`, parsed, without the figures that depend on the machine. Its layers'
    timings are not measured (each 0 s, not cached): they would be dropped, and an ImageNet network's take long."""
    from unittest import mock

    from runner.training import peak

    with mock.patch.object(peak, "timed", lambda measures: dict.fromkeys(measures, 0.0), create=True):
        document = json.loads(cli("summary", str(file), "--format", "json"))
    for key in MACHINE_KEYS:
        document["training_cost"].pop(key)
    return document


def run_overrides(file: Path, scratch: Path) -> list[str]:
    """The --set values of the golden run of `file`: OVERRIDES, its SIZES, and a made-up folder where it needs one."""
    where = data_path(file)
    limit, batch = SIZES[where]
    sets = [*OVERRIDES, f"data.limit={limit}", f"training.batch_size={batch}",
            f"tracking.experiment=golden-{file.stem}"]
    if where is not None:
        folder = scratch / "data" / Path(where).name
        if not folder.exists():
            FOLDERS[where](folder)
        sets.append(f"data.path={folder}")
    return sets


def first_epoch(file: Path, scratch: Path) -> float | str:
    """The first-epoch loss of `file`, or the one line with which xrun refuses to run it (its made-up path cut out,
    so the line is the same in any folder)."""
    try:
        return first_epoch_loss(file, scratch)
    except Refused as exc:
        return "refused: " + str(exc).replace(str(scratch), "SCRATCH").replace(str(file.parent.parent), "REPO")


def first_epoch_loss(file: Path, scratch: Path) -> float:
    """Trains `file` for one seeded epoch into a store in `scratch`; the run's `loss` metric at step 1."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{scratch / 'mlflow.db'}"
    sets = [arg for value in run_overrides(file, scratch) for arg in ("--set", value)]
    cli("run", str(file), *sets, "--tracking-uri", uri, "-q", "--checkpoint-every", "0")
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(f"golden-{file.stem}")
    (run,) = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)
    (point,) = [m for m in client.get_metric_history(run.info.run_id, "loss") if m.step == 1]
    return point.value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="checkout whose experiments/ to record")
    parser.add_argument("--runs", type=int, default=1, help="train each experiment this many times (repeatability)")
    parser.add_argument("--out", type=Path, default=GOLDEN)
    parser.add_argument("only", nargs="*", help="file names to record (default: all)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import runner

    print(f"runner from {runner.__file__}", file=sys.stderr)
    golden, worst = {}, 0.0
    with tempfile.TemporaryDirectory(prefix="xrun-golden-") as scratch:
        for file in experiment_files(args.repo):
            if args.only and file.name not in args.only:
                continue
            start = time.perf_counter()
            losses = [first_epoch(file, Path(scratch)) for _ in range(args.runs)]
            if not isinstance(losses[0], str):
                worst = max(worst, max(abs(x - losses[0]) / abs(losses[0]) for x in losses))
            golden[file.name] = {"summary": summary(file), "first_epoch_loss": losses[0]}
            print(f"{file.name}: {losses} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    args.out.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}; largest relative difference between runs: {worst:.3g}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
