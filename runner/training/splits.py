"""Splits xrun draws (a test set where the data has none, the validation set): stratified by class and seeded with
`data.split_seed`, so each part holds every class and the same labels in the same order split the same way,
whatever the source; and the checks that every part can do its job."""

from __future__ import annotations

import numpy as np

from runner.errors import XrunError
from runner.training import multilabel


def held_out(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A mask of the examples held out: `fraction` of each class, rounded, but at least one of a class with two
    or more examples and never a class's last one; drawn with `seed`, class by class in label order."""
    if multilabel.is_multi_label(y):  # a set of labels per example has no one class to stratify by
        return multilabel.held_out_rows(y, fraction, seed)
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
    if multilabel.is_multi_label(y):  # a 0/1 row per example: the examples that have each label
        return np.asarray(y, np.int64).sum(axis=0)[:classes].tolist()
    return np.bincount(np.asarray(y, np.int64), minlength=classes)[:classes].tolist()


def check_classes(name: str, y: np.ndarray, class_names: tuple[str, ...], path: str, hint: str, where=None) -> None:
    """Every class must have an example in this split: a split without one trains or measures nothing of it."""
    counts = class_counts(y, len(class_names))
    missing = [class_names[i] for i, n in enumerate(counts) if n == 0]
    if missing:
        shown = ", ".join(f"'{m}'" for m in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise XrunError(f"the {name} split has no example of class {shown} ({len(missing)} of {len(class_names)} "
                        f"classes missing, {len(y)} examples)", where=where, path=path, hint=hint)


def fold_of(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each example's fold, 0..folds-1, for k-fold cross-validation: stratified (each class dealt round the folds in
    turn, so a class's count in any two folds differs by at most one) and seeded with `seed` (data.split_seed), each
    class shuffled in label order as `held_out` draws. The deal goes on from class to class, so the folds' sizes
    differ by at most one too."""
    rng = np.random.default_rng(seed)
    out = np.zeros(len(y), np.int64)
    dealt = 0
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        out[members] = (dealt + np.arange(len(members))) % folds
        dealt += len(members)
    return out
