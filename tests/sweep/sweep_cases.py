"""Shared by the sweep tests: the tiny sweeps they run, and read-backs of the study and the MLflow runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Unseeded on purpose: a sweep must give all its trials one seed. kernel_size 29 does not fit a 28x28 image, so
# those trials fail when the model is built.
CONV = """\
name: conv
description: A tiny conv net for the sweep tests.
data: {dataset: mnist, limit: 128, validation: test}
model:
  layers:
    - {type: Conv2D, filters: 2, kernel_size: 3, activation: relu}
    - {type: Flatten}
    - {type: Dense, units: 10, activation: softmax}
optimizer: {type: SGD, learning_rate: 0.01}
loss: SparseCategoricalCrossentropy
training: {epochs: 1, batch_size: 64}
tracking: {experiment: sweep-test, log_model: false, log_images: false}
sweep:
  grid:
    model.layers[0].kernel_size: [3, 29]
"""
GRID = ["--grid", "training.batch_size=32,64"]
KEYS = ["model.layers[0].kernel_size=3 training.batch_size=32", "model.layers[0].kernel_size=3 training.batch_size=64",
        "model.layers[0].kernel_size=29 training.batch_size=32", "model.layers[0].kernel_size=29 training.batch_size=64"]
RANDOM = """\
sweep:
  method: tpe
  trials: 6
  seed: 7
  random:
    optimizer.learning_rate: {loguniform: [1.0e-4, 1.0e-1]}
    optimizer.momentum: {uniform: [0.5, 0.9]}
    training.batch_size: {choice: [16, 32, 64]}
    model.layers[0].filters: {randint: [1, 4]}
"""
# CONV without its sweep section, for tests that write their own.
PLAIN = CONV.split("sweep:")[0]
# Four points that all train: what the workers of one study split between them.
FOUR = CONV.replace("[3, 29]", "[3, 5]")
WORKER_ENV = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "XRUN_STUDY_STORAGE")}


def write(folder, name: str, text: str):
    path = folder / name
    path.write_text(text)
    return path


def space_of(folder: Path, text: str, cli_grid=()):
    """The sweep's Space of the experiment `text`, written to FOLDER/x.yaml."""
    from runner.language.spec import load_spec
    from runner.sweep.space import space

    return space(load_spec(write(folder, "x.yaml", text)), list(cli_grid))


def sweep_runs(uri: str) -> tuple[list, list]:
    """(parents, children) of the sweep experiment, newest first."""
    from runner.records import query
    from runner.records import tables as cmp

    runs = query.find_runs(uri, experiments=["sweep-test"])
    return [r for r in runs if cmp.is_sweep_parent(r)], [r for r in runs if not cmp.is_sweep_parent(r)]


def study_of(folder: Path, name: str | None = None):
    import optuna

    storage = f"sqlite:///{folder / 'optuna.db'}"
    name = name or optuna.get_all_study_names(storage)[0]
    return optuna.load_study(study_name=name, storage=storage)


def worker(folder: Path, *args) -> subprocess.Popen:
    """One `xrun sweep` process, as another machine would start it."""
    return subprocess.Popen([sys.executable, "-m", "runner.cli", "sweep", *map(str, args)], cwd=folder,
                            env=WORKER_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
