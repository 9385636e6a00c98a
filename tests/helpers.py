"""Shared by the training tests: a tiny experiment written to a folder, a quiet run of it, and MLflow read-backs."""

from __future__ import annotations

import copy
import functools
import io
import os
import shutil
import tempfile
from pathlib import Path

import yaml

from runner.training.data import keras_cache_dir

REPO = Path(__file__).resolve().parent.parent
# The --data-dir the training tests pass: $XRUN_DATA_DIR (conftest points it at an offline copy where there is
# one), else the Keras cache, which the loader fills from its verified sources on first use and then reads.
DATA_DIR = os.environ.get("XRUN_DATA_DIR") or str(keras_cache_dir())
if not os.environ.get("XRUN_DATA_DIR"):
    os.makedirs(DATA_DIR, exist_ok=True)  # a --data-dir must exist; the loader looks past an empty one
MNIST_FINGERPRINT = "c473ce9de4170e6f"

# Conv2D(4, 3) + MaxPool + Flatten + Dense(10): (3*3*1*4 + 4) + (13*13*4*10 + 10) = 40 + 6770 parameters.
TINY_PARAMS = 6810

TINY = {
    "name": "tiny",
    "description": "A tiny conv net for the training tests.",
    "data": {"dataset": "mnist", "limit": 512, "validation": "split", "validation_split": 0.2},
    "model": {"layers": [
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Flatten"},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ]},
    "optimizer": {"type": "Adam", "learning_rate": 0.01},
    "loss": "CategoricalCrossentropy",
    "training": {"epochs": 2, "batch_size": 64, "seed": 7},
    "tracking": {"experiment": "tests", "log_model": False, "log_images": False},
}


def experiment(**sections) -> dict:
    """TINY with whole sections replaced (`None` removes one), e.g. experiment(loss="SparseCategoricalCrossentropy")."""
    document = copy.deepcopy(TINY)
    for key, value in sections.items():
        if value is None:
            document.pop(key, None)
        else:
            document[key] = value
    return document


def write_experiment(folder: Path, document: dict | None = None, name: str = "tiny.yaml",
                     header: str = "# written by the tests\n") -> Path:
    path = Path(folder) / name
    path.write_text(header + yaml.safe_dump(document or TINY, sort_keys=False))
    return path


def store_uri(folder: Path) -> str:
    """A fresh SQLite store in `folder`: a copy of one made (and migrated, which takes seconds) once per session."""
    db = Path(folder) / "mlflow.db"
    if not db.exists():
        shutil.copyfile(_template_store(), db)
    return f"sqlite:///{db}"


@functools.cache
def _template_store() -> Path:
    from mlflow import MlflowClient

    db = Path(tempfile.mkdtemp(prefix="xrun-tests-store-")) / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments(max_results=1)  # creates and migrates the tables
    return db


def train(path: Path, overrides=(), *, uri: str | None = None, console=None, quiet: bool = True, **kwargs):
    """Load and run an experiment (quietly, unless asked) into the store beside it; returns the Result."""
    from rich.console import Console

    from runner.language.spec import load_spec
    from runner.running import resume
    from runner.running.request import RunRequest
    from runner.running.run import run_experiment

    uri = uri or store_uri(path.parent)
    plan, allow = kwargs.pop("resume", None), kwargs.pop("allow_changes", False)
    plan = plan and resume.plan(path, list(overrides), plan, uri, allow)
    spec = plan.spec if plan else load_spec(path, list(overrides))
    return run_experiment(RunRequest(spec, tracking_uri=uri, resume=plan, data_dir=DATA_DIR, quiet=quiet,
                                     console=console or Console(file=io.StringIO()), **kwargs))


def client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(uri)


def only_run(uri: str, experiment: str = "tests"):
    """The one run of the experiment in a fresh store (tests give each run its own store)."""
    c = client(uri)
    runs = c.search_runs([c.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


def history(uri: str, run_id: str, key: str) -> list[float]:
    """One value per step, in step order; asserts steps are 1..N with no repeats."""
    metrics = sorted(client(uri).get_metric_history(run_id, key), key=lambda m: m.step)
    assert [m.step for m in metrics] == list(range(1, len(metrics) + 1)), (key, [m.step for m in metrics])
    return [m.value for m in metrics]


def artifact_paths(uri: str, run_id: str, folder: str | None = None) -> set[str]:
    c, out = client(uri), set()
    for item in c.list_artifacts(run_id, folder):
        out |= artifact_paths(uri, run_id, item.path) if item.is_dir else {item.path}
    return out


def artifact_text(uri: str, run_id: str, path: str) -> str:
    from mlflow.artifacts import download_artifacts

    return Path(download_artifacts(run_id=run_id, artifact_path=path, tracking_uri=uri)).read_text()


def artifact_file(uri: str, run_id: str, path: str, dest: Path) -> Path:
    from mlflow.artifacts import download_artifacts

    return Path(download_artifacts(run_id=run_id, artifact_path=path, tracking_uri=uri, dst_path=str(dest)))


def tiny_yaml(name: str = "tiny", *, experiment: str, limit: int = 256, epochs: int = 2, batch_size: int = 32,
              seed: int = 1, tracking: str = "", extra: str = "") -> str:
    """A self-contained tiny experiment as YAML text, for tests that run xrun in other processes or servers."""
    return f"""name: {name}
description: a tiny test experiment
data: {{dataset: mnist, limit: {limit}, validation: test}}
model:
  layers:
    - {{type: Conv2D, filters: 4, kernel_size: 3, activation: relu}}
    - {{type: MaxPooling2D, pool_size: 2}}
    - {{type: Flatten}}
    - {{type: Dense, units: 10, activation: softmax}}
optimizer: {{type: Adam, learning_rate: 0.01}}
loss: CategoricalCrossentropy
training: {{epochs: {epochs}, batch_size: {batch_size}, seed: {seed}}}
tracking: {{experiment: {experiment}{tracking}}}
{extra}"""


def xrun(*args) -> tuple[int, str, str]:
    """Run the CLI in this process (TensorFlow is imported once per session): (exit code, stdout, stderr)."""
    import contextlib
    import io

    from runner.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


# A model section with a residual block (Add of the block's input and its last conv), used twice.
RESIDUAL = """\
  blocks:
    residual:
      params: {filters: null}
      layers:
        - {type: Conv2D, name: a, filters: "${filters}", kernel_size: 3, padding: same, activation: relu}
        - {type: Conv2D, name: b, filters: "${filters}", kernel_size: 3, padding: same}
        - {type: Add, name: sum, inputs: [b, input]}
  layers:
    - {type: Conv2D, name: stem, filters: 8, kernel_size: 3, padding: same}
    - {block: residual, name: res, filters: 8, repeat: 2}
    - {type: Flatten}
    - {type: Dense, units: 10}
"""


def dense_yaml(name: str, description: str, *, experiment: str, seed: int) -> str:
    """A tiny dense net on 128 images that trains in seconds (for the compare and list tests)."""
    return f"""name: {name}
description: {description}
data: {{dataset: mnist, limit: 128, validation: test}}
model:
  layers:
    - {{type: Flatten}}
    - {{type: Dense, units: 8, activation: relu}}
    - {{type: Dense, units: 10, activation: softmax}}
optimizer: {{type: Adam, learning_rate: 0.001}}
loss: SparseCategoricalCrossentropy
training: {{epochs: 1, batch_size: 64, seed: {seed}}}
tracking: {{experiment: {experiment}, log_model: false, log_images: false}}
"""


HEAVY = ("tensorflow", "keras", "mlflow", "optuna")
_LOADED = ("import sys; from runner.cli import main; code = main(sys.argv[1:]); "
           f"print('loaded', [m for m in {HEAVY!r} if m in sys.modules], code)")


def heavy_modules_after(*args, cwd=None, env: dict | None = None) -> tuple[str, str, str]:
    """Run `xrun ARGS` in a fresh Python: (its last stdout line, "loaded [heavy modules it imported] EXIT", stderr)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _LOADED, *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env={**os.environ, **(env or {})})
    lines = done.stdout.splitlines()
    return "\n".join(lines[:-1]), lines[-1] if lines else "", done.stderr


# A model section written under seed 004's base file: the model's keys start on line 4 of t.yaml.
SEED004_BASE = REPO / "experiments" / "base" / "seed004.yaml"
MODEL_HEAD = f"extends: {SEED004_BASE}\nname: t\nmodel:\n"


def spec_of(tmp_path: Path, model: str):
    """The loaded spec of `model` (YAML text of the model section's keys) under seed 004's base."""
    from runner.language.spec import load_spec

    path = tmp_path / "t.yaml"
    path.write_text(MODEL_HEAD + model)
    return load_spec(path)


def error_of(tmp_path: Path, model: str) -> str:
    """The one error line `model` gives, without the file name (so it starts at LINE:COL)."""
    import pytest

    from runner.errors import XrunError

    with pytest.raises(XrunError) as info:
        spec_of(tmp_path, model)
    return info.value.format().replace(f"{tmp_path / 't.yaml'}:", "")


def auto_cpu_precision() -> str:
    """What `precision: auto` picks on this machine's CPU (test_settings checks that choice on its own)."""
    from runner.training.settings import cpu_has_bfloat16

    return "mixed_bfloat16" if cpu_has_bfloat16() else "float32"


def bench_module(name: str):
    """bench/NAME.py loaded as a module (bench/ is scripts, not a package; they import each other, e.g. harness,
    as a script run from bench/ does)."""
    import importlib.util
    import sys

    if str(REPO / "bench") not in sys.path:
        sys.path.insert(0, str(REPO / "bench"))

    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def start_mlflow_server(root: Path, port: int, timeout_s: float = 120):
    """A real `mlflow server` on 127.0.0.1:PORT with its store in ROOT, answering /health (its own process group)."""
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    import pytest

    mlflow_cli = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen([str(mlflow_cli), "server", "--backend-store-uri", f"sqlite:///{root / 'db.sqlite'}",
                             "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"],
                            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
            return proc
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"mlflow server did not start within {timeout_s:.0f} s")


def interrupt_at(epoch: int):
    """A Keras callback raising KeyboardInterrupt as epoch `epoch` (1-based) begins, as Ctrl-C would between
    epochs (for the resume tests)."""
    import keras

    class InterruptAt(keras.callbacks.Callback):
        def on_epoch_begin(self, number, logs=None):
            if number + 1 == epoch:
                raise KeyboardInterrupt

    return InterruptAt()
