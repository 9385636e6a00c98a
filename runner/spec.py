"""Load an experiment: read the YAML, follow `extends`, apply `--set` overrides, check it, expand its model graph.

Nothing here imports TensorFlow, so `xrun validate` stays fast.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path

from . import schema
from .errors import Location, XrunError, did_you_mean
from .graph import Graph, build_graph
from .source import Locations, Path_, dotted, parse, read_text

MAX_EXTENDS = 32


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
    document, locs, files = _load_with_bases(path, [])
    for text in overrides:
        _apply_override(document, locs, text)
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


# --- extends ---------------------------------------------------------------------------------------------

def _load_with_bases(path: Path, chain: list[Path]) -> tuple[dict, Locations, list[Path]]:
    document, locs = parse(read_text(path), str(path))
    base_ref = document.pop("extends", None)
    if base_ref is None:
        return document, locs, [path]
    base_path = _resolve_base(path, base_ref, locs, chain)
    base, base_locs, files = _load_with_bases(base_path, chain + [path.resolve()])
    merged, dropped = _merge(base, document, ())
    for prefix in dropped:
        base_locs = _without(base_locs, prefix)
    base_locs.update(locs)
    return merged, base_locs, [path] + files


def _resolve_base(path: Path, ref, locs: Locations, chain: list[Path]) -> Path:
    where = locs.of(("extends",))
    if not isinstance(ref, str) or not ref:
        raise XrunError("extends must be a file path", where=where, path="extends",
                        hint="e.g. extends: base/seed004.yaml")
    base = (path.parent / ref)
    if not base.is_file():
        what = "is a directory" if base.is_dir() else "does not exist"
        raise XrunError(f"the base file '{ref}' {what}", where=where, path="extends",
                        hint=f"the path is relative to {path.parent or '.'}/")
    if base.resolve() in chain + [path.resolve()]:
        loop = " -> ".join(p.name for p in chain + [path.resolve(), base.resolve()])
        raise XrunError(f"extends goes round in a circle: {loop}", where=where, path="extends",
                        hint="remove one of the extends")
    if len(chain) >= MAX_EXTENDS:
        raise XrunError(f"more than {MAX_EXTENDS} levels of extends", where=where, path="extends")
    return base


def _merge(base, over, path: Path_) -> tuple:
    """Deep-merge `over` onto `base` (mappings merge unless their `type` differs; the rest replaces; null deletes).

    Also returns the paths whose base content was replaced, so their old locations can be dropped.
    """
    if not (isinstance(base, dict) and isinstance(over, dict)) or _other_type(base, over):
        return copy.deepcopy(over), [path]
    out, dropped = copy.deepcopy(base), []
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
            dropped.append(path + (key,))
        elif key in out:
            out[key], more = _merge(out[key], value, path + (key,))
            dropped += more
        else:
            out[key] = copy.deepcopy(value)
    return out, dropped


def _other_type(base: dict, over: dict) -> bool:
    """A mapping that names another `type` (say Adam over Yogi) replaces the base's: their arguments differ."""
    return "type" in over and base.get("type", over["type"]) != over["type"]


def _without(locs: Locations, prefix: Path_) -> Locations:
    n = len(prefix)
    return Locations({p: l for p, l in locs.values.items() if p[:n] != prefix},
                     {p: l for p, l in locs.keys.items() if p[:n] != prefix or len(p) == n})


# --- overrides -------------------------------------------------------------------------------------------

_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_KEY = re.compile(r"[A-Za-z_][\w-]*(\.[\w-]+|\[\d+\])*")


def _apply_override(document: dict, locs: Locations, text: str) -> None:
    """Apply `--set a.b[2].c=value`; the value is read as YAML, then typed by the schema."""
    where = Location(f"--set {text}")
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise XrunError("expected KEY=VALUE", where=where, hint="e.g. --set training.epochs=3")
    path = _parse_key(key.strip(), where)
    if path[0] == "extends":
        raise XrunError("extends cannot be set from the command line (the bases are already merged)", where=where,
                        hint="edit extends in the file, or set the values you want to change")
    value = _typed_value(document, path, raw, where)
    replaced = _set_path(document, path, value, where)
    # Locations of what was replaced would point at text that no longer applies (a cleared mapping keeps its own).
    n = len(replaced)
    for table in (locs.values, locs.keys):
        for p in [p for p in table if p[:n] == replaced and (len(p) > n or replaced == path)]:
            del table[p]
    locs.values[path] = where
    locs.keys[path] = where


def _parse_key(key: str, where: Location) -> Path_:
    if not _KEY.fullmatch(key):
        raise XrunError(f"'{key}' is not a key path", where=where, hint="e.g. training.epochs or model.layers[0].filters")
    return tuple(int(index) if index else int(name) if name.isdigit() else name
                 for name, index in _SEGMENT.findall(key))


def _typed_value(document: dict, path: Path_, raw: str, where: Location):
    """The value read as YAML, but kept as the text typed where the schema wants text (`name=123`)."""
    value = _parse_scalar(raw, where)
    sub = _known_path(document, path, where)
    wants_text = sub.get("type") == "string" or all(isinstance(v, str) for v in sub.get("enum", [0]))
    return raw if wants_text and not isinstance(value, (str, dict, list)) else value


def _known_path(document: dict, path: Path_, where: Location) -> dict:
    """The schema of `path`, or an error that names the first part of it the schema does not know."""
    for n in range(1, len(path) + 1):
        parent, part = path[:n - 1], path[n - 1]
        items = _value_at(document, parent)
        if isinstance(part, int) and isinstance(items, list) and part >= len(items):
            raise XrunError(f"{dotted(parent)} has no item [{part}]", where=where,
                            hint=f"it has {len(items)} (numbered from 0)")
        sub = schema.property_schema(path[:n], document)
        if sub is not None:
            continue
        if isinstance(part, int):
            raise XrunError(f"{dotted(parent)} is not a list", where=where, hint=f"remove [{part}]")
        keys = schema.known_keys(parent, document)
        hint = did_you_mean(part, keys) or ("known keys here: " + ", ".join(keys) if keys else
                                            f"{dotted(parent)} holds a single value, not keys" if parent else None)
        raise XrunError(f"unknown key '{dotted(path[:n])}'", where=where, hint=hint)
    return sub


def _value_at(document: dict, path: Path_):
    for part in path:
        if isinstance(part, int):
            document = document[part] if isinstance(document, list) and part < len(document) else None
        else:
            document = document.get(part) if isinstance(document, dict) else None
    return document


def _parse_scalar(raw: str, where: Location):
    try:
        document, _ = parse(f"v: {raw}" if raw.strip() else "v: ''", str(where))
    except XrunError as exc:
        raise XrunError(f"the value is not valid YAML ({exc.message})", where=where) from None
    return document["v"]


def _set_path(document: dict, path: Path_, value, where: Location) -> Path_:
    """Set the value at `path`; returns the path whose old content is gone (a new `type` clears its mapping)."""
    node = document
    for i, part in enumerate(path[:-1]):
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise XrunError(f"{dotted(path[:i])} has no item [{part}]", where=where)
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise XrunError(f"{dotted(path[:i])} is not a mapping", where=where)
            node = node.setdefault(part, {})
    last = path[-1]
    if isinstance(last, int) and (not isinstance(node, list) or last >= len(node)):
        raise XrunError(f"{dotted(path[:-1])} has no item [{last}]", where=where)
    if last == "type" and isinstance(node, dict) and node.get("type", value) != value:
        # As with extends: another type (Adam for Adadelta) takes other arguments, so the old ones go;
        # a layer keeps its place in the graph.
        kept = {k: node[k] for k in ("name", "inputs") if k in node}
        node.clear()
        node.update({last: value, **kept})
        return path[:-1]
    node[last] = value
    return path


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
