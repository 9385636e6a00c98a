"""The experiment JSON Schema: loading it, checking documents against it, and saying what is wrong in plain words."""

from __future__ import annotations

import difflib
import json
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

import jsonschema

from runner.errors import Location, XrunError, did_you_mean
from runner.language.source import Path_, dotted

SCHEMA_NAME = "experiment.schema.json"
# In a wheel the schema sits inside the package (runner/schema/); in a checkout, in schema/ beside runner/.
_CANDIDATES = (Path(__file__).parents[1] / "schema" / SCHEMA_NAME,
               Path(__file__).parents[2] / "schema" / SCHEMA_NAME)

Locate = Callable[[Path_, bool], "Location | None"]


def schema_path() -> Path:
    return next((p for p in _CANDIDATES if p.is_file()), _CANDIDATES[-1])


@lru_cache(maxsize=1)
def schema() -> dict:
    return json.loads(schema_path().read_text())


@lru_cache(maxsize=8)
def _validator(pointer: str) -> jsonschema.Draft202012Validator:
    root = _dispatching(schema())
    sub = {"$ref": pointer, "$defs": root["$defs"]} if pointer != "#" else root
    return _Dispatching(sub)


def _dispatch(validator, table: dict, instance, _schema):
    # A type that is no string (a fuzzed list, say) dispatches nowhere; `properties.type` reports it.
    if isinstance(instance, dict) and isinstance(instance.get("type"), str) and instance["type"] in table:
        yield from validator.descend(instance, {"$ref": table[instance["type"]]})


_Dispatching = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"x-dispatch": _dispatch})


def _dispatching(root: dict) -> dict:
    """The schema with each `allOf` of `if type == X then $ref` turned into one `x-dispatch: {X: $ref}` table.

    The meaning (and so every message) is the same, but jsonschema would evaluate all ~30 branches for every layer:
    two thirds of the checking time of `xrun validate` (bench/README.md). The file keeps the standard form, which
    editors understand.
    """
    defs = dict(root["$defs"])
    for name, node in root["$defs"].items():
        table = _dispatch_table(node.get("allOf")) if isinstance(node, dict) else None
        if table:
            defs[name] = {key: value for key, value in node.items() if key != "allOf"} | {"x-dispatch": table}
    return root | {"$defs": defs}


def _dispatch_table(branches) -> dict | None:
    try:
        table = {b["if"]["properties"]["type"]["const"]: b["then"]["$ref"] for b in branches}
    except (KeyError, TypeError):
        return None
    return table if all(set(b) == {"if", "then"} for b in branches) else None


def definition(ref: str) -> dict:
    """The schema object a local `$ref` like `#/$defs/layers/Conv2D` points at."""
    node = schema()
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def layer_types() -> list[str]:
    return list(definition("#/$defs/layer_type")["enum"])


# Keras layers that exist but that an experiment may not name, with the reason a user is told: the schema's
# `x-refused` annotation on KerasLayer's class_name.
REFUSED_LAYERS: dict[str, str] = definition("#/$defs/layers/KerasLayer")["properties"]["class_name"]["x-refused"]


@lru_cache(maxsize=1)
def _enum_words() -> dict:
    """What the values of each named list are, for messages: 'unknown activation', not 'unknown value'."""
    d = schema()["$defs"]
    words = {"layer type": d["layer_type"]["enum"], "activation": d["activation"]["enum"],
             "initializer": d["initializer_name"]["enum"],
             "initializer type": d["initializer_object"]["properties"]["type"]["enum"],
             "optimizer": d["optimizer"]["properties"]["type"]["enum"],
             "loss": d["loss"]["then"]["enum"], "callback": d["callback"]["properties"]["type"]["enum"],
             "learning-rate schedule": d["schedule"]["properties"]["type"]["enum"],
             "dataset": definition("#/$defs/data_sources/builtin")["properties"]["dataset"]["enum"],
             "data source": schema()["properties"]["data"]["properties"]["source"]["enum"]}
    return {tuple(options): word for word, options in words.items()}


def check(instance, locate: Locate, pointer: str = "#", shown: Callable[[Path_], str] = dotted) -> None:
    """Raise one XrunError (listing every problem, first by position) if `instance` breaks the schema."""
    raw = _without_noise(list(_validator(pointer).iter_errors(instance)))
    misspelt = _misspelt(raw)
    errors = [e for err in raw for e in _explain(err, locate, shown, misspelt)]
    if errors:
        raise XrunError.group(sorted(_unique(errors), key=_position))


def _misspelt(errors: list) -> set:
    """(mapping path, key) for each required key that is present under a near-miss name: `filterz` for `filters`.

    The 'unknown key' error then says it all; 'missing required key' would only repeat it.
    """
    out = set()
    for err in errors:
        if err.validator in ("additionalProperties", "unevaluatedProperties") and isinstance(err.instance, dict):
            allowed = _allowed_keys(err.schema, err.instance)
            for key in err.instance:
                if key not in allowed and (near := _renamed_argument(key, allowed) or _closest(key, allowed)):
                    out.add((tuple(err.absolute_path), near))
    return out


def _closest(word: str, choices: list[str]) -> str | None:
    """The choice that `did_you_mean` would suggest."""
    by_lower = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower.get(word.lower()) or (by_lower[close[0]] if close else None)


_DISPATCH_KEYS = (("type",), ("source",))  # the keys that pick a branch: a layer's type, the data's source


def _without_noise(errors: list) -> list:
    """Drop the echoes of a more basic problem: an unknown `type` makes every other key look unexpected."""
    bad_types = {tuple(e.absolute_path)[:-1] for e in errors
                 if e.validator == "enum" and tuple(e.absolute_path)[-1:] in _DISPATCH_KEYS}
    return [e for e in errors
            if not any(tuple(e.absolute_path)[:len(p)] == p and tuple(e.absolute_path)[len(p):] not in _DISPATCH_KEYS
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


def _explain(err: jsonschema.ValidationError, locate: Locate, shown, misspelt: set = frozenset()) -> list[XrunError]:
    return [XrunError(msg, where=locate(p, key), path=shown(p) or "(top level)", hint=hint)
            for p, key, msg, hint in _items(err, misspelt)]


def _items(err: jsonschema.ValidationError, misspelt: set):
    path = tuple(err.absolute_path)
    if err.validator == "required":
        return _required(err, path, skip={key for p, key in misspelt if p == path})
    return _EXPLAINERS.get(err.validator, _fallback)(err, path)


# Each explainer yields (path, point-at-key?, message, hint) for one jsonschema error.

def _enum(err, path):
    options = err.validator_value if err.validator == "enum" else [err.validator_value]
    value = err.instance
    what = _enum_words().get(tuple(options), "value")
    if what == "layer type" and isinstance(value, str) and value in REFUSED_LAYERS:
        yield path, False, f"the layer type '{value}' is not allowed", REFUSED_LAYERS[value]
        return
    hint = did_you_mean(str(value), [str(o) for o in options]) if isinstance(value, str) else None
    if what == "layer type" and isinstance(value, str) and value in KERAS_LAYER_NAMES:
        hint = _renamed_layer_hint(value)
    expected = "expected one of: " + ", ".join(_show(o) for o in options[:40]) + (" ..." if len(options) > 40 else "")
    if err.validator == "const":
        expected = f"expected {_show(options[0])}"
    yield path, False, f"unknown {what} {_show(value)}", hint or expected


def _type(err, path):
    expected = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
    names = " or ".join(_TYPE_WORDS.get(t, t) for t in expected)
    yield path, False, f"expected {names}, got {_describe_value(err.instance)}", None


def _required(err, path, skip=frozenset()):
    for name in err.validator_value:
        if isinstance(err.instance, dict) and name not in err.instance and name not in skip:
            yield path, False, f"missing required key '{name}'", f"add '{name}:' here"


# Keras habits, kept in this one place. Layers that Keras 2 (or a Keras alias) names otherwise: the name here,
# and what else to change. Every new name is a layer type of the schema (tests/language/test_spec.py checks).
KERAS_LAYER_NAMES = {
    "Convolution2D": ("Conv2D", ""), "AtrousConvolution2D": ("Conv2D", " with dilation_rate"),
    "SeparableConvolution2D": ("SeparableConv2D", ""), "Deconvolution2D": ("Conv2DTranspose", ""),
    "Deconv2D": ("Conv2DTranspose", ""), "MaxPool2D": ("MaxPooling2D", ""), "AvgPool2D": ("AveragePooling2D", ""),
    "GlobalMaxPool2D": ("GlobalMaxPooling2D", ""), "GlobalAvgPool2D": ("GlobalAveragePooling2D", ""),
    "Merge": ("Concatenate", " (or Add, Multiply, Average, Maximum) with its inputs"),
    "ThresholdedReLU": ("ReLU", " with threshold"),
}
# Arguments that Keras 2 named otherwise, with their Keras 3 names (suggested only where that name is allowed).
KERAS_ARGUMENT_NAMES = {
    "lr": "learning_rate", "nb_epoch": "epochs", "nb_epochs": "epochs", "nb_filter": "filters",
    "nb_row": "kernel_size", "nb_col": "kernel_size", "output_dim": "units", "border_mode": "padding",
    "subsample": "strides", "init": "kernel_initializer", "W_regularizer": "kernel_regularizer",
    "b_regularizer": "bias_regularizer", "p": "rate", "atrous_rate": "dilation_rate", "bias": "use_bias",
}
# Where a Keras layer takes its input shape, an experiment's layers take the model's input (from the data).
_INPUT_ARGUMENTS = ("input_shape", "input_dim", "batch_input_shape", "batch_shape")


def _renamed_layer_hint(old: str) -> str:
    new, more = KERAS_LAYER_NAMES[old]
    return f"'{old}' is the Keras 2 name or an alias of {new}: write type: {new}{more}"


def _renamed_argument(key: str, allowed: list[str]) -> str | None:
    new = KERAS_ARGUMENT_NAMES.get(key)
    return new if new in allowed else None


def habit_hint(key: str, allowed: list[str]) -> str | None:
    """What to write instead of a Keras habit, or None if `key` is not one here."""
    if key in _INPUT_ARGUMENTS and "inputs" in allowed:  # on a layer
        return "a layer's input comes from the data: remove it (model.input_shape gives the model another shape)"
    if key == "decay" and "learning_rate" in allowed:  # Keras 2's learning-rate decay of optimizers
        return ("Keras 3 optimizers have no 'decay': give learning_rate a schedule, e.g. "
                "{type: ExponentialDecay, initial_learning_rate: 0.001, decay_rate: 0.96}")
    new = _renamed_argument(key, allowed)
    return f"'{key}' is the Keras 2 name: write '{new}'" if new else None


# Keras arguments counted in steps that an experiment gives in epochs (the trainer converts them).
_IN_EPOCHS = {"decay_steps": "decay_epochs", "warmup_steps": "warmup_epochs", "boundaries": "boundaries_epochs"}


def _unexpected(err, path):
    allowed = _allowed_keys(err.schema, err.instance)
    for key in err.instance:
        if key not in allowed:
            hint = did_you_mean(key, allowed) or ("allowed keys: " + ", ".join(sorted(allowed)) if allowed else None)
            if _IN_EPOCHS.get(key) in allowed:
                hint = f"an experiment counts in epochs: use '{_IN_EPOCHS[key]}'"
            hint = habit_hint(key, allowed) or hint
            owner = err.instance.get("type") if isinstance(err.instance.get("type"), str) else None
            where = f" for {owner}" if owner else ""
            yield path + (key,), True, f"unknown key '{key}'{where}", hint


def _allowed_keys(sub: dict, instance=None) -> list[str]:
    keys = list(sub.get("properties", {}))
    if "$ref" in sub:
        keys += list(definition(sub["$ref"]).get("properties", {}))
    if "allOf" in sub and isinstance(instance, dict):  # keys of the branch the value takes (data: its source's)
        keys += [k for k in _concrete(sub, instance).get("properties", {}) if k not in keys]
    return keys


def _bound(err, path):
    words = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    yield path, False, f"{_show(err.instance)} is out of range", f"must be {words[err.validator]} {err.validator_value}"


def _length(err, path):
    words = {"minItems": "at least", "maxItems": "at most", "minLength": "at least", "maxLength": "at most",
             "minProperties": "at least"}
    unit = "entr" if err.validator.endswith("Properties") else "item" if "Items" in err.validator else "character"
    count = len(err.instance)
    has = "is empty" if count == 0 else f"has {count} {_plural(unit, count)}"
    limit = err.validator_value
    yield path, False, has, f"expected {words[err.validator]} {limit} {_plural(unit, limit)}"


def _plural(unit: str, n: int) -> str:
    if unit == "entr":
        return "entry" if n == 1 else "entries"
    return unit if n == 1 else unit + "s"


def _pattern(err, path):
    yield path, False, f"{_show(err.instance)} is not a valid name", \
        "use letters, digits, '_', '.' or '-', starting with a letter"


def _alternatives(err, path):
    """A value that fits none of several forms: explain it against the one form of its kind, if there is one."""
    options = err.validator_value
    fitting = _fitting_alternatives(err)
    if len(fitting) == 1:
        misspelt = _misspelt(fitting[0])
        for sub in fitting[0]:
            yield from _items(sub, misspelt)
        return
    yield path, False, f"{_describe_value(err.instance)} is not allowed here", \
        "expected " + " or ".join(_describe_schema(o) for o in options)


def _fitting_alternatives(err) -> list[list]:
    """The errors of each alternative whose type (and constant) the value has: the form the user meant."""
    by_option: dict[int, list] = {}
    for sub in err.context:
        by_option.setdefault(sub.relative_schema_path[0], []).append(sub)
    return [subs for subs in by_option.values()
            if not any(s.validator in ("type", "const") and not s.relative_path for s in subs)]


def _dependent(err, path):
    for key, needs in err.validator_value.items():
        for need in needs:
            if isinstance(err.instance, dict) and key in err.instance and need not in err.instance:
                yield path, False, f"'{key}' needs '{need}'", f"add '{need}:' here"


def _unique_items(err, path):
    seen = set()
    twice = next(v for v in err.instance if json.dumps(v) in seen or seen.add(json.dumps(v)))
    yield path, False, f"{_show(twice)} is listed twice", "list each once"


def _fallback(err, path):
    yield path, False, err.message, None


_EXPLAINERS = {
    "dependentRequired": _dependent,
    "enum": _enum, "const": _enum, "type": _type, "required": _required,
    "additionalProperties": _unexpected, "unevaluatedProperties": _unexpected,
    "minimum": _bound, "maximum": _bound, "exclusiveMinimum": _bound, "exclusiveMaximum": _bound,
    "minItems": _length, "maxItems": _length, "minLength": _length, "maxLength": _length,
    "minProperties": _length, "pattern": _pattern, "oneOf": _alternatives, "anyOf": _alternatives,
    "uniqueItems": _unique_items,
}

_TYPE_WORDS = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
               "array": "a list", "object": "a mapping", "null": "null"}


def _show(value) -> str:
    return f"'{value}'" if isinstance(value, str) else json.dumps(value)


def _describe_value(value) -> str:
    if value is None:
        return "null"
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping"
            }.get(type(value), type(value).__name__)
    return f"{kind} {_show(value)}" if not isinstance(value, (list, dict)) else f"a {kind}"


_PLURAL_TYPE_WORDS = {"integer": "integers", "number": "numbers", "string": "strings", "boolean": "booleans",
                      "array": "lists", "object": "mappings"}


def _describe_schema(sub: dict, plural: bool = False) -> str:
    if "$ref" in sub:
        target = definition(sub["$ref"])
        return _describe_schema(target, plural) if "$ref" not in target else sub["$ref"].rsplit("/", 1)[-1]
    if "const" in sub:
        return _show(sub["const"])
    if sub.get("type") == "array":
        size = sub.get("minItems") if sub.get("minItems") == sub.get("maxItems") else None
        return f"a list of {size or ''} ".replace("  ", " ") + _describe_schema(sub.get("items", {}), plural=True)
    if "pattern" in sub:
        return "names" if plural else "a name"
    bounds = [f"{w} {sub[k]}" for k, w in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="))
              if k in sub]
    kind = sub.get("type")
    word = (_PLURAL_TYPE_WORDS.get(kind, "values") if plural else
            _TYPE_WORDS.get(kind, "a " + str(kind) if kind else "a mapping with 'type'"))
    return " ".join([word] + bounds)


def default_sections(document: dict) -> dict:
    """A copy of the document with every schema `default` filled in where its key is absent.

    At every depth: a section left out whose schema defaults to `{}` (tracking) gets its own defaults too, and
    list items (callbacks, layers, block uses) get those of the branch their `type` or form picks (a schedule's
    inside `oneOf`, a callback's, a block use's `repeat`).
    """
    return _with_defaults(document, schema())


def with_defaults(value, pointer: str):
    """`value` with the defaults of the schema at `pointer` filled in (a block's layers, once its params are)."""
    return _with_defaults(value, definition(pointer))


def form_of(pointer: str, value) -> dict:
    """The schema at `pointer` as it applies to `value`: the branch its `type` (or `source`, or form) picks."""
    return _form_of(definition(pointer), value)


def _with_defaults(value, sub: dict):
    sub = _form_of(sub, value)
    if sub.get("x-keras-defaults"):  # a layer's: Keras applies them itself, and the config stays as written
        return value
    if isinstance(value, list) and isinstance(sub.get("items"), dict):
        return [_with_defaults(item, sub["items"]) for item in value]
    if not isinstance(value, dict):
        return value
    out = dict(value)
    for key, prop in sub.get("properties", {}).items():
        if not isinstance(prop, dict):
            continue
        if key not in out and "default" in prop:
            out[key] = json.loads(json.dumps(prop["default"]))
        if key in out:
            out[key] = _with_defaults(out[key], prop)
    return out


_BRANCHING = ("$ref", "if", "then", "else", "allOf", "oneOf", "anyOf")


def _form_of(sub: dict, value) -> dict:
    """`sub` as it applies to `value`: references followed and the branches that `value` takes folded in."""
    out = {k: v for k, v in sub.items() if k not in _BRANCHING}
    for part in _branches(sub, value):
        out = _combine(_form_of(part, value), out)
    return out


def _branches(sub: dict, value):
    if "$ref" in sub:
        yield definition(sub["$ref"])
    if "if" in sub:
        branch = sub.get("then") if _holds(sub["if"], value) else sub.get("else")
        yield from [branch] if isinstance(branch, dict) else []
    table = _once(_dispatch_table, sub.get("allOf"))
    if table is not None:  # `type` picks one branch: no need to test all thirty
        kind = value.get("type") if isinstance(value, dict) else None
        yield from [{"$ref": table[kind]}] if isinstance(kind, str) and kind in table else []
    else:
        for part in sub.get("allOf", []):
            yield from _branches(part, value) if "if" in part else [part]
    for key in ("oneOf", "anyOf"):  # the first alternative the value fits (a checked value fits one)
        yield from [alt for alt in sub.get(key, []) if _holds(alt, value)][:1]


def _holds(condition: dict, value) -> bool:
    return _once(_validator_of, condition).is_valid(value)


def _validator_of(condition: dict) -> jsonschema.Draft202012Validator:
    return _condition_validator(json.dumps(condition, sort_keys=True))


# What was derived from a node of the schema, by (how, the node's id): `xrun validate` asks again for every value
# of every file. Each entry keeps its node, so the id cannot pass to another object while the entry is there.
_DERIVED: dict[tuple, tuple] = {}


def _once(derive: Callable, node):
    """`derive(node)`, computed once per node of the schema (which is never changed once loaded)."""
    found = _DERIVED.get((derive, id(node)))
    if found is None or found[0] is not node:
        if len(_DERIVED) > 4096:  # only schema nodes come here, a few hundred; the bound is for safety's sake
            _DERIVED.clear()
        found = _DERIVED[(derive, id(node))] = (node, derive(node))
    return found[1]


@lru_cache(maxsize=256)
def _condition_validator(text: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({**json.loads(text), "$defs": schema()["$defs"]})


def property_schema(path: Path_, document=None) -> dict | None:
    """The schema that governs `path` (used to type command-line overrides), or None if the path is unknown.

    The value of `document` along the path picks the branch where the schema depends on it (an optimizer's `type`
    picks its arguments; a learning rate is a number or a schedule). Where the path goes on into the keys or items
    of a value that has none (yet), the form that has them answers: a bare name `Adam` stands for {type: Adam}.
    """
    found = _walk(path, document)
    return _concrete(*found) if found else None


def _walk(path: Path_, document) -> tuple[dict, object] | None:
    """The schema at `path`, its branches not yet chosen, and the value there; None if the path is unknown."""
    sub, value = schema(), document
    for part in path:
        sub = _child(_concrete(sub, _stand_in(value, part)), part)
        value = _step(value, part)
        if not isinstance(sub, dict):
            return None
    return sub, value


def _stand_in(value, part):
    """`value` in the form that has `part`: a list for an index, else a mapping (a bare name as its `type`)."""
    if isinstance(part, int):
        return value if isinstance(value, list) else []
    if isinstance(value, dict):
        return value
    return {"type": value} if isinstance(value, str) else {}


def _step(value, part):
    if isinstance(part, int):
        return value[part] if isinstance(value, list) and 0 <= part < len(value) else None
    return value.get(part) if isinstance(value, dict) else None


def _child(sub: dict, key):
    """The schema of key (or item) `key` of a value governed by `sub`; {} where any key goes, None where none may."""
    if isinstance(key, int):
        return sub.get("items") if sub.get("type") == "array" or "items" in sub else None
    props = sub.get("properties", {})
    if isinstance(props.get(key), dict):
        return props[key]
    extra = sub.get("additionalProperties", sub.get("unevaluatedProperties"))
    if isinstance(extra, dict):
        return extra
    if extra is None and sub.get("type") == "object" and not props:
        return {}  # a free-form mapping, such as a block's params or a KerasLayer's config
    return None


def _concrete(sub: dict, value) -> dict:
    """`sub` with its `$ref` followed and the branches that `value` takes folded in: if/then, and the
    alternatives of a oneOf/anyOf that take a value of its kind (a schedule for a mapping, a number for 0.01)."""
    out = {k: v for k, v in sub.items() if k not in ("$ref", "if", "then", "else", "allOf", "oneOf", "anyOf")}
    parts = [definition(sub["$ref"])] if "$ref" in sub else []
    if "if" in sub:
        branch = sub.get("then") if _fits(sub["if"], value) else sub.get("else")
        parts += [branch] if branch else []
    parts += [p["then"] for p in sub.get("allOf", []) if "if" in p and _fits(p["if"], value)]
    parts += [alt for key in ("oneOf", "anyOf") for alt in sub.get(key, []) if _kind_fits(alt, value)]
    for part in parts:
        out = _combine(_concrete(part, value), out)
    return out


def _combine(base: dict, over: dict) -> dict:
    """Two schemas for one value as one: their properties together, a real schema winning over a bare `true`."""
    props = dict(base.get("properties", {}))
    props.update({k: v for k, v in over.get("properties", {}).items() if isinstance(v, dict) or k not in props})
    return {**base, **over, "properties": props} if props else {**base, **over}


def _fits(condition: dict, value) -> bool:
    # A condition that requires keys picks a branch of mappings only (JSON Schema would let any string pass it).
    if value is None or ("required" in condition and not isinstance(value, dict)):
        return False
    return jsonschema.Draft202012Validator(condition).is_valid(value)


def _kind_fits(alternative: dict, value) -> bool:
    """Whether `value` is of the kind (type, constant) that `alternative` takes, whatever its other rules."""
    form = _concrete(alternative, value)
    return _fits({k: form[k] for k in ("type", "const", "enum") if k in form}, value)


def known_keys(path: Path_, document=None) -> list[str]:
    """The keys the schema allows directly under `path` (for 'did you mean' on overrides), a bare name's too."""
    found = _walk(path, document)
    return list(_concrete(found[0], _stand_in(found[1], "")).get("properties", {})) if found else []
