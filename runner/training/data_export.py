"""Write a built-in dataset out as files (PNG class folders or an .npz), to try xrun's own-data sources on real images."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from runner.errors import XrunError
from runner.training.data import load_dataset

SPLITS = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}


def export_dataset(name: str, dest: str | Path, fmt: str = "folder", limit: int | None = None,
                   data_dir: str | None = None) -> tuple[Path, dict[str, int]]:
    """(what was written, examples per split): DEST/train/<class>/NNNNN.png and DEST/test/..., or DEST/<name>.npz.

    A DEST ending in .npz is the .npz file itself. The first `limit` examples of each split, as `data.limit`
    takes them; nothing existing is overwritten.
    """
    dataset = load_dataset(name, data_dir)
    arrays = {k: getattr(dataset, k)[:limit] for pair in SPLITS.values() for k in pair}
    dest = Path(dest).expanduser()
    counts = {split: len(arrays[y]) for split, (_, y) in SPLITS.items()}
    if fmt == "npz":
        return _write_npz(npz_path(name, dest), arrays), counts
    return _write_folders(dest, arrays, folder_names(dataset.class_names)), counts


def npz_path(name: str, dest: Path) -> Path:
    """The .npz file an npz export writes: DEST when it names one, else DEST/<name>.npz."""
    return dest if dest.suffix.lower() == ".npz" else dest / f"{name}.npz"


def folder_names(class_names) -> list[str]:
    """Class names as folder names that sort in class order (image_folder numbers classes in sorted order)."""
    safe = [re.sub(r"[^\w.-]+", "_", n).strip("_") or "class" for n in class_names]
    if sorted(safe) == safe and len(set(safe)) == len(safe):
        return safe
    width = len(str(len(safe) - 1))
    return [f"{i:0{width}d}_{n}" for i, n in enumerate(safe)]


def _write_npz(path: Path, arrays: dict) -> Path:
    _refuse_existing(path, path.exists())
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    with open(part, "wb") as f:
        np.savez(f, **arrays)
    part.replace(path)
    return path


def _write_folders(dest: Path, arrays: dict, names: list[str]) -> Path:
    from PIL import Image

    _refuse_existing(dest, dest.exists() and any(dest.iterdir()))
    for split, (x, y) in SPLITS.items():
        for i, (image, label) in enumerate(zip(arrays[x], arrays[y])):
            folder = dest / split / names[int(label)]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i:05d}.png")
    return dest


def _refuse_existing(path: Path, exists: bool) -> None:
    if exists:
        raise XrunError(f"{path} already exists and is not empty", where=str(path),
                        hint="export into a new folder, or remove it first")
