"""`--set KEY=VALUE` overrides: a dotted key path into the document, the value read as YAML and typed by the schema."""

from __future__ import annotations

import re

from runner.errors import Location, XrunError, did_you_mean
from runner.language import schema
from runner.language.source import Locations, Path_, dotted, parse

_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_KEY = re.compile(r"[A-Za-z_][\w-]*(\.[\w-]+|\[\d+\])*")


def apply_override(document: dict, locs: Locations, text: str) -> None:
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
