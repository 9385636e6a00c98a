"""Load an experiment: read the YAML, follow `extends`, apply `--set` overrides, check it, expand its model graph.

Nothing here imports TensorFlow, so `xrun validate` stays fast.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from runner.errors import Location, XrunError
from runner.language import advice, data_facts, labels, phases, schema
from runner.language.extends import load_with_bases
from runner.language.graph import Graph, build_graph, check_param_names
from runner.language.overrides import apply_override
from runner.language.params import NO_ORIGINS, Origins
from runner.language.sections import HasSections, Sections, sections_of
from runner.language.source import Locations, Path_, dotted, read_text


@dataclass
class Spec(HasSections):
    """A checked experiment, ready for the compiler and the trainer."""

    path: Path                 # the experiment file
    text: str                  # that file as written
    document: dict             # resolved: extends merged, overrides applied, schema defaults filled
    locs: Locations
    files: list[Path]          # the file, then each base it extends
    overrides: list[str]
    graph: Graph
    sections: Sections         # the plain sections of `document`, typed and frozen
    warnings: tuple = ()       # XrunErrors for legal but likely wrong choices (runner.language.advice), not raised
    _facts: dict = field(default_factory=dict, repr=False, compare=False)  # data facts read, by strictness

    @property
    def name(self) -> str:
        return self.document["name"]

    @property
    def description(self) -> str:
        return self.document.get("description", "")

    @property
    def input_shape(self) -> tuple | None:
        """`model.input_shape` as written (None: the data's)."""
        given = self.document["model"].get("input_shape")
        return tuple(given) if given else None

    def data_facts(self, strict: bool = False) -> data_facts.DataFacts:
        """The data's example shape and class names, read without loading it (headers, folder listings), once."""
        if strict not in self._facts:
            self._facts[strict] = data_facts.data_facts(self.document, self.locate, strict=strict)
        return self._facts[strict]

    def without_sweep(self) -> Spec:
        """The experiment without its `sweep` section: one trial of the sweep (the family stays with the parent)."""
        document = {k: v for k, v in self.document.items() if k != "sweep"}
        return replace(self, document=document, sections=replace(self.sections, sweep=None))

    def pinned(self, before: int, **training) -> Spec:
        """The experiment with training values a run decided put in, as `--set training.KEY=VALUE` would, the
        `--set` texts placed after the first `before` overrides (a resumed run's drawn seed, after its own --set
        values and before new ones)."""
        texts = [f"training.{key}={value}" for key, value in training.items()]
        return replace(self, document=self.resolved_document(**training),
                       overrides=[*self.overrides[:before], *texts, *self.overrides[before:]],
                       sections=replace(self.sections, training=replace(self.training, **training)))

    def resolved_document(self, **training) -> dict:
        """The document as it runs (config/resolved.yaml), with `training` values decided for the run put in."""
        document = copy.deepcopy(self.document)
        document["training"].update(training)
        return document

    def locate(self, path: Path_, key: bool = False) -> Location | None:
        return self.locs.of(path, key=key)


def load_spec(path: str | Path, overrides: list[str] | tuple = (), text: str | None = None,
              data_must_exist: bool = True) -> Spec:
    """Everything `xrun validate` checks, in order; raises XrunError with the file position of the first problem.

    `text`, where given, is read as the content of `path` (a run's recorded config/resolved.yaml). Without
    `data_must_exist`, a `data.path` that names nothing leaves the data's facts unknown instead of being an error
    (the catalogue, `summary`, a recorded config whose data has gone since)."""
    path = Path(path)
    document, locs, files = load_with_bases(path, text)
    for override in overrides:
        apply_override(document, locs, override)
    locate = locs.of
    check_param_names(document.get("model"), locate)
    schema.check(document, locate)
    document = schema.default_sections(document)
    graph = build_graph(document["model"], locate, merge_types(), _item_checker(locate))
    _check_consistency(document, locate)
    phases.check(document, locate, graph)
    if data_must_exist:
        data_facts.check_data_exists(document, locate)
    facts = _check_input(document, locate, graph)
    labels.check(document, graph, facts.multi_label, locate)
    return Spec(path, read_text(path) if text is None else text, document, locs, files, list(overrides), graph,
                sections_of(document, data_facts.settings(document["data"])),
                (*advice.model_warnings(document, graph, locate), *labels.warnings(document, graph, facts, locate),
                 *phases.warnings(document, locate)),
                {False: facts})


def merge_types() -> set[str]:
    """Layers that take several inputs: the schema marks them with `x-merge`."""
    layers = schema.definition("#/$defs/layers")
    return {name for name, sub in layers.items() if sub.get("x-merge")}


# --- checks of layers and of the whole ------------------------------------------------------------------------------

def _item_checker(locate):
    """Checks one layer or block use, params filled in, against the schema, as the graph expands it; returns it
    with the schema's defaults filled in (a block's layers are only concrete here, so only here can they be)."""
    passed: dict[str, dict] = {}  # a block repeated many times yields the same items: check each once

    def check(item: dict, origin: Path_, via: str, origins: Origins = NO_ORIGINS) -> dict:
        key = json.dumps(item, sort_keys=True, default=str)
        if key in passed:
            return passed[key]

        def shown(p) -> str:  # a value a block param put here is shown where the param was given
            return origins.shown(origin, tuple(p), via)

        if via:  # an item of model.layers was checked with the whole document already
            schema.check(item, lambda p, key=False: locate(origins.path(origin, tuple(p)), key), "#/$defs/model_item",
                         shown)
        refused = item.get("class_name") if item.get("type") == "KerasLayer" else None
        if refused in schema.REFUSED_LAYERS:
            raise XrunError(f"the layer '{refused}' is not allowed", where=locate(origin + ("class_name",)),
                            path=shown(("class_name",)), hint=schema.REFUSED_LAYERS[refused])
        passed[key] = schema.with_defaults(item, "#/$defs/model_item") if via else item
        return passed[key]
    return check


def _check_consistency(document: dict, locate) -> None:
    """Rules that span sections, which a schema cannot say."""
    lr = document["optimizer"].get("learning_rate") if isinstance(document["optimizer"], dict) else None
    callbacks = document.get("callbacks") or []
    for i, cb in enumerate(callbacks):
        path = ("callbacks", i, "type")
        if cb["type"] == "ReduceLROnPlateau" and isinstance(lr, dict):
            raise XrunError("ReduceLROnPlateau cannot change a learning-rate schedule", where=locate(path),
                            path=dotted(path), hint="use a fixed optimizer.learning_rate, or drop this callback")
        monitor = cb.get("monitor") or ""  # the schema's default where the callback has one
        if monitor.startswith("val_") and document["data"]["validation"] == "none":
            raise XrunError(f"{cb['type']} monitors '{monitor}' but data.validation is 'none'",
                            where=locate(path), path=dotted(path),
                            hint="monitor 'loss', or validate on a split or the test set")
    _check_augmentation(document, locate)
    training = document["training"]
    if training.get("class_weight") is not None and training["sampling"] == "balanced":
        path = ("training", "class_weight")
        raise XrunError("class_weight and sampling: balanced both correct for imbalanced classes; together they "
                        "correct twice", where=locate(path, key=True), path=dotted(path),
                        hint="keep one: class_weight (weigh the loss) or sampling: balanced (draw classes equally)")
    _check_stop_at(document, locate)
    _check_folds_and_tta(document, locate)


def _check_stop_at(document: dict, locate) -> None:
    """`training.stop_at` must watch a metric the run logs every epoch."""
    stop_at = document["training"].get("stop_at")
    if not stop_at:
        return
    metric, validated = stop_at["metric"], document["data"]["validation"] != "none"
    known = ["loss", *(m for m in document["metrics"] if m != "class_recall")]
    known += list(labels.EPOCH_METRICS) if document["data"].get("multi_label") else []
    base = metric.removeprefix("val_")
    if (base in known or base.startswith("recall_")) and (validated or not metric.startswith("val_")):
        return
    path = ("training", "stop_at", "metric")
    shown = [*known, *(f"val_{k}" for k in known if validated)]
    raise XrunError(f"the run logs no epoch metric '{metric}'", where=locate(path), path=dotted(path),
                    hint="one of " + ", ".join(shown) + ("" if validated else " (data.validation is 'none')"))


def _check_folds_and_tta(document: dict, locate) -> None:
    """`validation: fold` needs data.folds and a data.fold below it; `training.tta` needs a flip or shift in
    `augmentation` to vary; neither takes multi-label data (folds are dealt by class; TTA scores one class)."""
    data, tta = document["data"], document["training"]["tta"]
    for path, on in ((("data", "validation"), data["validation"] == "fold"), (("training", "tta"), tta)):
        if on and data.get("multi_label"):
            raise XrunError(f"{dotted(path)} takes one class per image, not multi-label data", where=locate(path),
                            path=dotted(path), hint="drop it for multi-label data")
    if data["validation"] == "fold":
        _check_fold(data, locate)
    varied = ("horizontal_flip", "vertical_flip", "width_shift_range", "height_shift_range")
    if tta and not any((document.get("augmentation") or {}).get(key) for key in varied):
        path = ("training", "tta")
        raise XrunError("test-time augmentation averages over the augmentation's flips and shifts, and it has none",
                        where=locate(path), path=dotted(path),
                        hint="add augmentation.horizontal_flip (or a shift range), or drop training.tta")


def _check_fold(data: dict, locate) -> None:
    missing = [key for key in ("folds", "fold") if data.get(key) is None]
    if missing:
        path = ("data", "validation")
        raise XrunError(f"validation: fold needs data.{missing[0]}", where=locate(path), path=dotted(path),
                        hint="give data.folds and data.fold (0 to folds-1), or let `xrun cv` set them")
    if data["fold"] >= data["folds"]:
        path = ("data", "fold")
        raise XrunError(f"fold {data['fold']} of {data['folds']} folds: folds count from 0", where=locate(path),
                        path=dotted(path), hint=f"give a fold from 0 to {data['folds'] - 1}, or raise data.folds")


def _check_augmentation(document: dict, locate) -> None:
    """What the augmentation schema cannot say: a [lo, hi] in order, and mixing only on one-hot labels."""
    augmentation = document.get("augmentation") or {}
    for key in ("zoom_range", "brightness_range"):
        bounds = augmentation.get(key)
        if isinstance(bounds, list) and bounds[0] > bounds[1]:
            path = ("augmentation", key)
            raise XrunError(f"expected [lo, hi] with lo <= hi, got {bounds}", where=locate(path), path=dotted(path),
                            hint=f"write [{bounds[1]}, {bounds[0]}]")
    loss = document["loss"] if isinstance(document["loss"], str) else document["loss"]["type"]
    for name in ("mixup", "cutmix"):
        # A Sparse* loss takes class numbers (runner.model.registry.SPARSE_LOSSES): mixed labels need one-hot ones.
        if name in augmentation and loss.startswith("Sparse"):
            path = ("augmentation", name)
            raise XrunError(f"{name} mixes the labels of two images, which needs one-hot labels, but {loss} takes "
                            "class numbers", where=locate(path, key=True), path=dotted(path),
                            hint=f"use loss: {loss.removeprefix('Sparse')}, the same loss on one-hot labels")


def _check_input(document: dict, locate, graph: Graph) -> data_facts.DataFacts:
    """The model against its data's facts (shape, class count), whatever the data source (runner.language.data_facts:
    folders listed, .npy headers read, nothing loaded); the facts, kept with the Spec so nothing reads them again."""
    return data_facts.check_model_against_data(document, graph, locate, check_input_shape)


def check_input_shape(given: list | None, data_shape: tuple, what: str, locate) -> None:
    """`model.input_shape`, where given, must be the shape of one example of the data, `what` (Keras adds or drops
    a last axis of size 1 itself, so [28, 28] takes [28, 28, 1] images)."""
    if given is None or _same_shape(list(given), list(data_shape)):
        return
    path = ("model", "input_shape")
    raise XrunError(f"the model takes {list(given)} but the data's examples are {list(data_shape)} ({what})",
                    where=locate(path), path=dotted(path),
                    hint=f"leave model.input_shape out (it follows the data), or write {list(data_shape)}")


def _same_shape(a: list, b: list) -> bool:
    return a == b or a == b + [1] or a + [1] == b
