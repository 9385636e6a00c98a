"""What xrun's values become in MLflow: dotted param keys, texts cut to its limits, metric numbers and
times, a dataset by reference; only the dataset needs MLflow, and imports it when asked."""

from __future__ import annotations

import json
import re

from runner.text import one_line

METRICS_PER_BATCH = 1000  # MLflow's limit on metrics in one request
MAX_PARAM_CHARS = 6000   # MLflow's limit on a param value
PARAMS_PER_BATCH = 100   # MLflow's limit on params in one request


def flatten(config, prefix: str = "") -> dict[str, str]:
    """Dotted keys for a nested config: {'optimizer.learning_rate': '0.001', 'model.layers.0.filters': '32'}."""
    if isinstance(config, dict) and not config and prefix:
        return {prefix: "{}"}  # keep the key: an empty section was still asked for
    if isinstance(config, dict):
        items = [(f"{prefix}.{_key(k)}" if prefix else _key(k), v) for k, v in config.items()]
    elif isinstance(config, list) and any(isinstance(v, (dict, list)) for v in config):
        items = [(f"{prefix}.{i}", v) for i, v in enumerate(config)]  # MLflow keys allow no brackets
    else:
        return {prefix: _param_text(config)}
    out: dict[str, str] = {}
    for key, value in items:
        out.update(flatten(value, key))
    return out


def _key(key) -> str:
    """A YAML key as an MLflow name: `a[0]` -> `a.0`; characters MLflow refuses -> `_`."""
    text = re.sub(r"\[(\d+)\]", r".\1", str(key))
    return re.sub(r"[^A-Za-z0-9_\-. :/]", "_", text)


def _param_text(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:MAX_PARAM_CHARS]


def _tag_texts(tags: dict) -> dict[str, str]:
    return {_key(k): str(v)[:5000] for k, v in tags.items() if v is not None}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) or hasattr(value, "__float__")


def _now_ms() -> int:
    import time
    return int(time.time() * 1000)


def _short(exc: Exception) -> str:
    """An error as the records quote it: one line, at most 200 characters."""
    return one_line(exc, 200)


def model_name(name: str) -> str:
    """An experiment's name as a logged model's name, which MLflow forbids `/ : . % " '` in."""
    return re.sub(r"[/:.%\"']", "-", name) or "model"


def _tf_version() -> str:
    """The installed TensorFlow's version, read from package metadata (records never import TensorFlow)."""
    from importlib import metadata

    for dist in ("tensorflow", "tensorflow-cpu", "tensorflow-macos"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def _meta_dataset(name: str, source: str, digest: str):
    """A dataset MLflow knows by name, source and digest only: nothing is read or copied."""
    import warnings

    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    try:
        with warnings.catch_warnings():  # a local path matches two equivalent source kinds; either will do
            warnings.simplefilter("ignore")
            where = resolve_dataset_source(source)
    except Exception:  # noqa: BLE001 - not a path or URL (a pip wheel, say): record it as text
        where = CodeDatasetSource(tags={"source": source})
    return MetaDataset(where, name=name, digest=digest)
