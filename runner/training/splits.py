"""Splits xrun draws (a test set where the data has none, the validation set): stratified by class and seeded with
`data.split_seed`, so each part holds every class and the same labels in the same order split the same way,
whatever the source; and the checks that every part can do its job."""

from __future__ import annotations

import numpy as np

from runner.errors import XrunError


def held_out(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A mask of the examples held out: `fraction` of each class, rounded, but at least one of a class with two
    or more examples and never a class's last one; drawn with `seed`, class by class in label order."""
    rng = np.random.default_rng(seed)
    out = np.zeros(len(y), bool)
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        n = min(len(members) - 1, max(1, int(len(members) * fraction + 0.5)))  # rounded half up
        out[rng.permutation(members)[:n]] = True
    return out


def class_counts(y: np.ndarray | None, classes: int) -> list[int]:
    """Examples of each class, for labels 0..classes-1 (all zero for a split that does not exist)."""
    if y is None:
        return [0] * classes
    return np.bincount(np.asarray(y, np.int64), minlength=classes)[:classes].tolist()


def check_classes(name: str, y: np.ndarray, class_names: tuple[str, ...], path: str, hint: str, where=None) -> None:
    """Every class must have an example in this split: a split without one trains or measures nothing of it."""
    counts = class_counts(y, len(class_names))
    missing = [class_names[i] for i, n in enumerate(counts) if n == 0]
    if missing:
        shown = ", ".join(f"'{m}'" for m in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise XrunError(f"the {name} split has no example of class {shown} ({len(missing)} of {len(class_names)} "
                        f"classes missing, {len(y)} examples)", where=where, path=path, hint=hint)
