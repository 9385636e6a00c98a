"""A run's data: loaded, split and checked against the model before any MLflow run exists (so a bad split leaves no
FAILED run behind), with each split's class counts as the table a run logs and shows."""

from __future__ import annotations

from dataclasses import dataclass

from runner.errors import XrunError, did_you_mean
from runner.language.config import Config
from runner.training import multilabel, pipeline, sources, splits


@dataclass
class Inputs:
    dataset: sources.Data
    splits: pipeline.Splits
    class_weight: dict[int, float] | None = None  # what fit() weighs each class's examples by
    warnings: tuple[str, ...] = ()                  # for the start of the run: legal, but worth knowing

    def counts(self) -> dict[str, list[int]]:
        """Examples of each class in each split (a split that does not exist: none)."""
        classes = len(self.splits.class_names)
        s = self.splits
        return {"train": splits.class_counts(s.y_train, classes), "val": splits.class_counts(s.y_val, classes),
                "test": splits.class_counts(s.y_test, classes)}

    def counts_csv(self) -> str:
        """The class counts as CSV: a row per class, a column per split, and a total row."""
        counts = self.counts()
        rows = ["class,train,val,test"]
        for i, name in enumerate(self.splits.class_names):
            rows.append(",".join([_csv_cell(name), *(str(counts[k][i]) for k in ("train", "val", "test"))]))
        rows.append(",".join(["total", *(str(sum(counts[k])) for k in ("train", "val", "test"))]))
        return "\n".join(rows) + "\n"

    def summary_line(self) -> str:
        """One line for the start of a run: each split's size and its rarest class."""
        parts = []
        sizes = {"train": self.splits.y_train, "val": self.splits.y_val, "test": self.splits.y_test}
        for split, counts in self.counts().items():
            if sum(counts):  # multi-label counts are of images with each label: the split's size is its rows
                rarest = min(range(len(counts)), key=counts.__getitem__)
                parts.append(f"{split} {len(sizes[split])} (fewest: {counts[rarest]} of '{self.splits.class_names[rarest]}')")
        return f"data: {len(self.splits.class_names)} classes; " + ", ".join(parts)


def load(config: Config, data_dir: str | None, model) -> Inputs:
    """The data section's examples and splits, checked: the model takes them, every class is in every split
    xrun uses, and training has at least one batch."""
    dataset = sources.load(config, data_dir, config.data.split_seed)
    sources.check_model(model, dataset, config)
    parts = pipeline.split(dataset, config.data)
    _check(parts, config)
    return Inputs(dataset, parts, class_weight(config, parts),
                  (*_validation_warnings(parts, config), *_multi_label_note(dataset, parts)))


def class_weight(config: Config, parts: pipeline.Splits) -> dict[int, float] | None:
    """`training.class_weight` as fit() takes it: `auto` is n / (classes x n_class) over the training split (the
    average example weighs 1); named weights are checked against the data's classes, the rest weigh 1."""
    asked, names = config.training.class_weight, parts.class_names
    if asked is None:
        return None
    if asked == "auto":
        counts = splits.class_counts(parts.y_train, len(names))
        return {i: len(parts.y_train) / (len(names) * n) for i, n in enumerate(counts)}
    for name in asked:
        if name not in names:
            raise XrunError(f"the data has no class '{name}'", where=config.locate(("training", "class_weight", name),
                                                                                    key=True),
                            path=f"training.class_weight.{name}",
                            hint=did_you_mean(name, names) or f"the classes are {', '.join(names[:10])}")
    return {i: float(asked.get(name, 1.0)) for i, name in enumerate(names)}


def _check(parts: pipeline.Splits, config: Config) -> None:
    limit = "limit" if config.data.limit else "validation_split"
    names = parts.class_names
    splits.check_classes("training", parts.y_train, names, f"data.{limit}",
                         "the examples may be sorted by class: raise data.limit, or give them in any order",
                         _where(config, "data", limit))



def _validation_warnings(parts: pipeline.Splits, config: Config) -> tuple[str, ...]:
    """A validation split without some class (a class with a single training example keeps it for training): its
    val_ metrics leave that class out. Said, not refused: tiny trial runs (`data.limit: 32`) must still run."""
    if parts.y_val is None or parts.validation not in ("split", "fold"):
        return ()
    try:
        splits.check_classes("validation", parts.y_val, parts.class_names, "data.validation_split",
                             "its val_ metrics leave those classes out; raise data.limit or add examples",
                             _where(config, "data", "validation_split"))
    except XrunError as exc:
        return (f"xrun: warning: {exc.format()}",)
    return ()


def _multi_label_note(dataset: sources.Data, parts: pipeline.Splits) -> tuple[str, ...]:
    """Multi-label splits xrun draws are seeded but not stratified (runner.training.multilabel.held_out_rows)."""
    drawn = parts.validation == "split" and dataset.x_val is None
    return (multilabel.SPLIT_NOTE,) if drawn and multilabel.is_multi_label(parts.y_train) else ()


def _where(config: Config, section: str, key: str):
    """Where the key is written, else its section (a default, or a --set value, has no line of its own)."""
    return config.locate((section, key)) or config.locate((section,), key=True) or str(config.path)


def _csv_cell(text: str) -> str:
    return f'"{text}"' if any(c in text for c in ',"\n') else text
