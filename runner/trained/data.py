"""The labelled data a trained model is evaluated or checked on, through the same sources and splits as training:
the run's own test split (read back from its config/resolved.yaml, so the very images it was scored on), or the test
split of what `--data` names: an .npz (or a folder of .npy files), a CSV list, a folder of train/ test/ folders, or a
YAML file whose `data:` section says it."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from runner.language.data_facts import SPLIT_FOLDERS, settings
from runner.language.schema import with_defaults
from runner.language.sections import Data
from runner.language.spec import Spec, load_spec
from runner.records import names, query
from runner.training import pipeline, sources

YAML_SUFFIXES = (".yaml", ".yml")
# What a file or folder given as --data is, by its form: the data source that reads it.
SOURCE_OF_SUFFIX = {".npz": "arrays", ".csv": "csv"}
# Keys of a run's image data section that say how its images (and multi-label lists) were read; --data images are
# read alike.
IMAGE_READING = ("image_size", "color_mode", "crop_to_aspect_ratio", "interpolation", "multi_label", "label_separator")


def run_test_split(run_id: str, uri: str | None, data_dir: str | None) -> tuple:
    """(images, labels, name, fingerprint, notes): the test split of the run's own data, as its config resolved it
    (data.limit and data.split_seed included), whatever the source."""
    record = query.find_runs(uri, run_ids=[run_id])[0]
    text = query.artifact_text(run_id, names.RESOLVED_CONFIG, uri)
    where = Path(record.tags.get(names.EXPERIMENT_FILE) or "resolved.yaml")
    spec = load_spec(where, text=text)  # as if at the experiment's own path: relative data paths mean the same
    images, labels, name, fingerprint = _test_split(spec, spec.data, data_dir)
    recorded = record.tags.get("dataset.fingerprint")
    notes = [] if not recorded or recorded == fingerprint else [
        f"xrun: the data at {name} changed since run {run_id[:8]} was trained (fingerprint {fingerprint[:12]}, the "
        f"run's {recorded[:12]}): these are not the images it was scored on"]
    first = f", first {len(labels)}" if spec.data.limit else ""  # the run's own data.limit
    return images, labels, f"the run's {name} test split{first}", fingerprint, notes


def given_test_split(data: str, run_options: dict, data_dir: str | None) -> tuple | None:
    """(images, labels, name, fingerprint, []) for a --data that is a YAML file, an .npz, a CSV or a folder of
    split folders; None for anything else (a built-in name, a folder of class folders: the caller's)."""
    path = Path(data)
    if path.suffix.lower() in YAML_SUFFIXES and path.is_file():
        spec = load_spec(path)
        images, labels, name, fingerprint = _test_split(spec, spec.data, data_dir)
        return images, labels, f"{name} test split (data of {path.name})", fingerprint, []
    source = _source_of(path)
    if source is None:
        return None
    options = {k: v for k, v in run_options.items() if k in IMAGE_READING}
    section = _section({**options, "source": source, "path": str(path.resolve())})
    images, labels, name, fingerprint = _test_split(SimpleNamespace(data=section, locate=_nowhere), section,
                                                    data_dir)
    return images, labels, f"{path} test split", fingerprint, []


def run_image_options(params: dict) -> dict:
    """The image-reading keys of a run's data section, from its params (as xrun logs them: strings as they are,
    other values as JSON)."""
    return {k: _param_value(params[f"data.{k}"]) for k in IMAGE_READING if f"data.{k}" in params}


def _param_value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def _source_of(path: Path) -> str | None:
    if path.is_file():
        return SOURCE_OF_SUFFIX.get(path.suffix.lower())
    if path.is_dir() and any((path / f"{n}.npy").is_file() for n in ("x_train", "x_test")):
        return "arrays"
    if path.is_dir() and (path / "train").is_dir() and any((path / s).is_dir() for s in SPLIT_FOLDERS if s != "train"):
        return "image_folder"
    return None


def _section(data: dict) -> Data:
    full = settings(with_defaults(data, "#/properties/data"))
    return Data(full["source"], full.get("dataset"), None, "none", full["validation_split"], full["split_seed"],
                full)


def _test_split(spec: Spec | SimpleNamespace, data: Data, data_dir: str | None) -> tuple:
    dataset = sources.load(spec, data_dir, data.split_seed)
    parts = pipeline.split(dataset, data)
    x = parts.x_test
    images = x[np.arange(len(parts.y_test))] if isinstance(x, sources.ImageFiles) else np.asarray(x)
    return images, np.asarray(parts.y_test, np.int64), dataset.name, dataset.fingerprint


def _nowhere(path, key=False):
    return None
