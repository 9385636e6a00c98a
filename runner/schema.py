"""The experiment JSON Schema: loading it, checking documents against it, and saying what is wrong in plain words."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

import jsonschema

from .errors import Location, XrunError, did_you_mean
from .source import Path_, dotted

SCHEMA_NAME = "experiment.schema.json"
# In a wheel the schema sits inside the package; in a checkout, in schema/ beside it.
_CANDIDATES = (Path(__file__).parent / "schema" / SCHEMA_NAME,
               Path(__file__).parent.parent / "schema" / SCHEMA_NAME)

Locate = Callable[[Path_, bool], "Location | None"]


def schema_path() -> Path:
    return next((p for p in _CANDIDATES if p.is_file()), _CANDIDATES[-1])


@lru_cache(maxsize=1)
def schema() -> dict:
    return json.loads(schema_path().read_text())


@lru_cache(maxsize=8)
def _validator(pointer: str) -> jsonschema.Draft202012Validator:
    root = schema()
    sub = {"$ref": pointer, "$defs": root["$defs"]} if pointer != "#" else root
    return jsonschema.Draft202012Validator(sub)


def definition(ref: str) -> dict:
    """The schema object a local `$ref` like `#/$defs/layers/Conv2D` points at."""
    node = schema()
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def layer_types() -> list[str]:
    return list(definition("#/$defs/layer_type")["enum"])


def check(instance, locate: Locate, pointer: str = "#", shown: Callable[[Path_], str] = dotted) -> None:
    """Raise one XrunError (listing every problem, first by position) if `instance` breaks the schema."""
    raw = list(_validator(pointer).iter_errors(instance))
    errors = [e for err in _without_noise(raw) for e in _explain(err, locate, shown)]
    if errors:
        raise XrunError.group(sorted(_unique(errors), key=_position))


def _without_noise(errors: list) -> list:
    """Drop the echoes of a more basic problem: an unknown `type` makes every other key look unexpected."""
    bad_types = {tuple(e.absolute_path)[:-1] for e in errors
                 if e.validator == "enum" and tuple(e.absolute_path)[-1:] == ("type",)}
    return [e for e in errors
            if not any(tuple(e.absolute_path)[:len(p)] == p and tuple(e.absolute_path)[len(p):] != ("type",)
                       for p in bad_types)]


def _unique(errors: Iterable[XrunError]) -> list[XrunError]:
    seen, out = set(), []
    for e in errors:
        if e.line() not in seen:
            seen.add(e.line())
            out.append(e)
    return out


def _position(error: XrunError) -> tuple:
    w = error.where
    return (str(getattr(w, "file", w)), getattr(w, "line", 0) or 0, getattr(w, "col", 0) or 0)


def _explain(err: jsonschema.ValidationError, locate: Locate, shown) -> list[XrunError]:
    path = tuple(err.absolute_path)
    explain = _EXPLAINERS.get(err.validator, _fallback)
    return [XrunError(msg, where=locate(p, key), path=shown(p) or "(top level)", hint=hint)
            for p, key, msg, hint in explain(err, path)]


# Each explainer yields (path, point-at-key?, message, hint) for one jsonschema error.

def _enum(err, path):
    options = err.validator_value
    value = err.instance
    what = "layer type" if path[-1:] == ("type",) and path[-3:-2] in (("layers",), ("blocks",)) or \
        (len(path) >= 2 and path[-1] == "type" and isinstance(path[-2], int)) else "value"
    hint = did_you_mean(str(value), [str(o) for o in options]) if isinstance(value, str) else None
    expected = "expected one of: " + ", ".join(_show(o) for o in options[:40]) + (" ..." if len(options) > 40 else "")
    yield path, False, f"unknown {what} {_show(value)}", hint or expected


def _type(err, path):
    expected = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
    names = " or ".join(_TYPE_WORDS.get(t, t) for t in expected)
    yield path, False, f"expected {names}, got {_describe_value(err.instance)}", None


def _required(err, path):
    for name in err.validator_value:
        if isinstance(err.instance, dict) and name not in err.instance:
            yield path, False, f"missing required key '{name}'", f"add '{name}:' here"


def _unexpected(err, path):
    allowed = _allowed_keys(err.schema)
    for key in err.instance:
        if key not in allowed:
            hint = did_you_mean(key, allowed) or ("allowed keys: " + ", ".join(sorted(allowed)) if allowed else None)
            owner = err.instance.get("type") if isinstance(err.instance.get("type"), str) else None
            where = f" for {owner}" if owner else ""
            yield path + (key,), True, f"unknown key '{key}'{where}", hint


def _allowed_keys(sub: dict) -> list[str]:
    keys = list(sub.get("properties", {}))
    if "$ref" in sub:
        keys += list(definition(sub["$ref"]).get("properties", {}))
    return keys


def _bound(err, path):
    words = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    yield path, False, f"{_show(err.instance)} is out of range", f"must be {words[err.validator]} {err.validator_value}"


def _length(err, path):
    words = {"minItems": "at least", "maxItems": "at most", "minLength": "at least", "maxLength": "at most",
             "minProperties": "at least"}
    unit = "entries" if err.validator.endswith("Properties") else "items" if "Items" in err.validator else "characters"
    yield path, False, f"has the wrong size", f"expected {words[err.validator]} {err.validator_value} {unit}"


def _pattern(err, path):
    yield path, False, f"{_show(err.instance)} is not a valid name", \
        "use letters, digits, '_', '.' or '-', starting with a letter"


def _alternatives(err, path):
    options = err.validator_value
    yield path, False, f"{_describe_value(err.instance)} is not allowed here", \
        "expected " + " or ".join(_describe_schema(o) for o in options)


def _fallback(err, path):
    yield path, False, err.message, None


_EXPLAINERS = {
    "enum": _enum, "const": _enum, "type": _type, "required": _required,
    "additionalProperties": _unexpected, "unevaluatedProperties": _unexpected,
    "minimum": _bound, "maximum": _bound, "exclusiveMinimum": _bound, "exclusiveMaximum": _bound,
    "minItems": _length, "maxItems": _length, "minLength": _length, "maxLength": _length,
    "minProperties": _length, "pattern": _pattern, "oneOf": _alternatives, "anyOf": _alternatives,
}

_TYPE_WORDS = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
               "array": "a list", "object": "a mapping", "null": "null"}


def _show(value) -> str:
    return f"'{value}'" if isinstance(value, str) else json.dumps(value)


def _describe_value(value) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping",
            type(None): "null"}.get(type(value), type(value).__name__)
    return f"{kind} {_show(value)}" if not isinstance(value, (list, dict)) else f"a {kind}"


def _describe_schema(sub: dict) -> str:
    if "$ref" in sub:
        target = definition(sub["$ref"])
        return _describe_schema(target) if "$ref" not in target else sub["$ref"].rsplit("/", 1)[-1]
    if "const" in sub:
        return _show(sub["const"])
    if sub.get("type") == "array":
        return "a list of " + _describe_schema(sub.get("items", {})).removeprefix("a ").removeprefix("an ") + "s"
    if "pattern" in sub:
        return "a name"
    bounds = [f"{w} {sub[k]}" for k, w in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="))
              if k in sub]
    word = _TYPE_WORDS.get(sub.get("type"), "a " + str(sub.get("type", "mapping with 'type'")))
    return " ".join([word] + bounds)


def default_sections(document: dict) -> dict:
    """A copy of the document with the schema's `default`s filled in for absent keys of its sections."""
    return _with_defaults(document, schema())


def _with_defaults(value, sub: dict):
    sub = definition(sub["$ref"]) if "$ref" in sub else sub
    if not isinstance(value, dict) or "properties" not in sub:
        return value
    out = dict(value)
    for key, prop in sub["properties"].items():
        if key not in out and "default" in prop:
            out[key] = json.loads(json.dumps(prop["default"]))
        if key in out:
            out[key] = _with_defaults(out[key], prop)
    return out


def property_schema(path: Path_) -> dict | None:
    """The schema that governs `path` (used to type command-line overrides), or None if the path is unknown."""
    sub = schema()
    for part in path:
        sub = definition(sub["$ref"]) if "$ref" in sub else sub
        if isinstance(part, int):
            sub = sub.get("items")
        else:
            props = sub.get("properties", {})
            sub = props.get(part) if part in props else sub.get("additionalProperties")
        if not isinstance(sub, dict):
            return None
    return definition(sub["$ref"]) if "$ref" in sub else sub


def known_keys(path: Path_) -> list[str]:
    """The keys the schema allows directly under `path` (for 'did you mean' on overrides)."""
    sub = property_schema(path)
    return list(sub.get("properties", {})) if sub else []
