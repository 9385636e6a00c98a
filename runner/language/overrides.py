"""`--set KEY=VALUE` overrides: a dotted key path into the document, the value read as YAML and typed by the schema."""

from __future__ import annotations

import json
import re

from runner.errors import Location, XrunError, did_you_mean
from runner.language import schema
from runner.language.source import Locations, Path_, dotted, parse, python_tuple

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
    made: list = []
    replaced = _set_path(document, path, value, where, made)
    # Locations of what was replaced would point at text that no longer applies (a cleared mapping keeps its own).
    n = len(replaced)
    for table in (locs.values, locs.keys):
        for p in [p for p in table if p[:n] == replaced and (len(p) > n or replaced == path)]:
            del table[p]
    for p in made:  # mappings made by this override (in place of a single value, or of nothing)
        locs.values[p] = where
    locs.values[path] = where
    locs.keys[path] = where


def _parse_key(key: str, where: Location) -> Path_:
    if not _KEY.fullmatch(key):
        raise XrunError(f"'{key}' is not a key path", where=where, hint="e.g. training.epochs or model.layers[0].filters")
    return tuple(int(index) if index else int(name) if name.isdigit() else name
                 for name, index in _SEGMENT.findall(key))


def _typed_value(document: dict, path: Path_, raw: str, where: Location):
    """The value read as YAML, but kept as the text typed where the schema wants text (`name=123`)."""
    sub = _known_path(document, path, where)
    wants_text = sub.get("type") == "string" or all(isinstance(v, str) for v in sub.get("enum", [0]))
    listed = python_tuple(raw)
    if listed is not None:
        if wants_text:
            return raw
        raise XrunError(f"{raw.strip()} is a Python tuple, which YAML reads as text", where=where,
                        hint=f"write a YAML list: {dotted(path)}={listed}")
    value = _parse_scalar(raw, where)
    return raw if wants_text and not isinstance(value, (str, dict, list)) else value


def _known_path(document: dict, path: Path_, where: Location) -> dict:
    """The schema of `path`, or an error that names the first part of it the schema does not know."""
    for n in range(1, len(path) + 1):
        parent, part = path[:n - 1], path[n - 1]
        items = _value_at(document, parent)
        if isinstance(part, int) and isinstance(items, list) and part >= len(items):
            raise XrunError(f"{dotted(parent)} has no item [{part}]", where=where,
                            hint=f"it has {len(items)} (numbered from 0)")
        _check_form(document, path[:n], items, last=n == len(path), where=where)
        sub = schema.property_schema(path[:n], document)
        if sub is not None:
            if isinstance(part, int) and not isinstance(items, list):
                raise XrunError(f"{dotted(parent)} has no item [{part}]", where=where,
                                hint=f"it is not set: give the whole list, e.g. --set '{dotted(parent)}=[...]'")
            continue
        if isinstance(part, int):
            raise XrunError(f"{dotted(parent)} is not a list", where=where, hint=f"remove [{part}]")
        keys = schema.known_keys(parent, document)
        hint = schema.habit_hint(part, keys) or did_you_mean(part, keys) or (
            "known keys here: " + ", ".join(keys) if keys else
            f"{dotted(parent)} holds a single value, not keys" if parent else None)
        raise XrunError(f"unknown key '{dotted(path[:n])}'", where=where, hint=hint)
    return sub


def _check_form(document: dict, path: Path_, value, last: bool, where: Location) -> None:
    """Refuse a key or item under a value that has none (`lr=0.01`, then `lr.warmup_target`), saying what to do.

    Two single values do take keys: a bare name (`loss: CategoricalCrossentropy` is {type: CategoricalCrossentropy})
    and any value whose new `type` is being set (it becomes a mapping of that type, as a new type clears a mapping).
    """
    parent, part = path[:-1], path[-1]
    if not parent or value is None or isinstance(value, list if isinstance(part, int) else dict):
        return
    names = _type_names(document, parent)
    takes_keys = not isinstance(value, list) and (value in names or (part == "type" and last and names))
    if isinstance(part, str) and takes_keys:
        return
    kind, what = ("item", f"[{part}]") if isinstance(part, int) else ("key", f"'{part}'")
    if isinstance(part, str) and names:
        others = f" (or {', '.join(names[1:])})" if names[1:] else ""
        hint = f"make it a mapping first: --set {dotted(parent)}.type={names[0]}{others}, then set its keys"
    elif schema.property_schema(path, document) is not None:
        hint = f"set the whole value: --set '{dotted(parent)}=" + ("[...]'" if kind == "item" else "{...}'")
    else:
        return  # the schema knows no such key or item here at all: _known_path says so
    shown = {list: "a list", dict: "a mapping"}.get(type(value)) or f"{_show(value)}, a single value"
    raise XrunError(f"{dotted(parent)} is {shown}, so it has no {kind} {what}", where=where, hint=hint)


def _type_names(document: dict, path: Path_) -> list[str]:
    """The names `type` may take under `path` where the schema gives it a mapping form picked by `type`."""
    sub = schema.property_schema(path + ("type",), document) or {}
    return [name for name in sub.get("enum", []) if isinstance(name, str)]


def _show(value) -> str:
    return f"'{value}'" if isinstance(value, str) else json.dumps(value)


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


def _set_path(document: dict, path: Path_, value, where: Location, made: list) -> Path_:
    """Set the value at `path`; returns the path whose old content is gone (a new `type` clears its mapping).

    `made` gets the paths where a single value was replaced by a mapping (they now come from the command line).
    """
    node = document
    for i, part in enumerate(path[:-1]):
        if isinstance(part, int) and not (isinstance(node, list) and part < len(node)):
            raise XrunError(f"{dotted(path[:i])} has no item [{part}]", where=where)
        if isinstance(part, str) and not isinstance(node, dict):
            raise XrunError(f"{dotted(path[:i])} is not a mapping", where=where)
        node = _container_under(document, node, path[:i + 1], made)
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


def _container_under(document: dict, node: dict | list, path: Path_, made: list) -> dict | list:
    """The mapping or list at `path` to set something in: a mapping made where there is none, a bare name `Adam`
    read as {type: Adam} (a single value in the way was refused by _known_path unless its `type` is being set)."""
    current = node[path[-1]] if isinstance(node, list) else node.get(path[-1])
    if not isinstance(current, (dict, list)):
        named = isinstance(current, str) and current in _type_names(document, path)
        node[path[-1]] = {"type": current} if named else {}
        made += [] if named else [path]
    return node[path[-1]]
