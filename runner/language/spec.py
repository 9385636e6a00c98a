"""Load an experiment: read the YAML, follow `extends`, apply `--set` overrides, check it, expand its model graph.

Nothing here imports TensorFlow, so `xrun validate` stays fast.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from runner.errors import Location, XrunError
from runner.language import schema
from runner.language.extends import load_with_bases
from runner.language.graph import Graph, build_graph
from runner.language.overrides import apply_override
from runner.language.source import Locations, Path_, dotted, read_text


@dataclass
class Spec:
    """A checked experiment, ready for the compiler and the trainer."""

    path: Path                 # the experiment file
    text: str                  # that file as written
    document: dict             # resolved: extends merged, overrides applied, schema defaults filled
    locs: Locations
    files: list[Path]          # the file, then each base it extends
    overrides: list[str]
    graph: Graph

    @property
    def name(self) -> str:
        return self.document["name"]

    def locate(self, path: Path_, key: bool = False) -> Location | None:
        return self.locs.of(path, key=key)


def load_spec(path: str | Path, overrides: list[str] | tuple = ()) -> Spec:
    """Everything `xrun validate` checks, in order; raises XrunError with the file position of the first problem."""
    path = Path(path)
    document, locs, files = load_with_bases(path)
    for text in overrides:
        apply_override(document, locs, text)
    locate = locs.of
    schema.check(document, locate)
    document = schema.default_sections(document)
    graph = build_graph(document["model"], locate, merge_types(), _item_checker(locate))
    _check_consistency(document, locate)
    return Spec(path, read_text(path), document, locs, files, list(overrides), graph)


def merge_types() -> set[str]:
    """Layers that take several inputs: the schema marks them with `x-merge`."""
    layers = schema.definition("#/$defs/layers")
    return {name for name, sub in layers.items() if sub.get("x-merge")}


# --- checks of layers and of the whole ------------------------------------------------------------------------------

def _item_checker(locate):
    """Checks one layer or block use, params filled in, against the schema, as the graph expands it."""
    passed: set[str] = set()  # a block repeated many times yields the same items: check each once

    def check(item: dict, origin: Path_, via: str) -> None:
        key = json.dumps(item, sort_keys=True, default=str)
        if key in passed:
            return

        def shown(p) -> str:
            return dotted(origin + tuple(p)) + (f" (in {via})" if via else "")

        if via:  # an item of model.layers was checked with the whole document already
            schema.check(item, lambda p, key=False: locate(origin + tuple(p), key), "#/$defs/model_item", shown)
        refused = item.get("class_name") if item.get("type") == "KerasLayer" else None
        if refused in schema.REFUSED_LAYERS:
            raise XrunError(f"the layer '{refused}' is not allowed", where=locate(origin + ("class_name",)),
                            path=shown(("class_name",)), hint=schema.REFUSED_LAYERS[refused])
        passed.add(key)
    return check


def _check_consistency(document: dict, locate) -> None:
    """Rules that span sections, which a schema cannot say."""
    lr = document["optimizer"].get("learning_rate")
    callbacks = document.get("callbacks") or []
    for i, cb in enumerate(callbacks):
        path = ("callbacks", i, "type")
        if cb["type"] == "ReduceLROnPlateau" and isinstance(lr, dict):
            raise XrunError("ReduceLROnPlateau cannot change a learning-rate schedule", where=locate(path),
                            path=dotted(path), hint="use a fixed optimizer.learning_rate, or drop this callback")
        monitor = cb.get("monitor", "val_loss" if cb["type"] != "TerminateOnNaN" else "loss")
        if monitor.startswith("val_") and document["data"].get("validation") == "none":
            raise XrunError(f"{cb['type']} monitors '{monitor}' but data.validation is 'none'",
                            where=locate(path), path=dotted(path),
                            hint="monitor 'loss', or validate on a split or the test set")
