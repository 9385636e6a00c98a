"""How xrun names runs that differ from their experiment file: a sweep trial and a `--set` run, by what they changed."""

from __future__ import annotations

import json
import math

from runner.errors import XrunError
from runner.language.source import parse
from runner.records import names

# Overrides that change where or how a run is recorded, or what it is called, not what it trains: left out of names.
UNNAMED_KEYS = ("tracking.", "name", "description")
UNNAMED_TAILS = (".data_dir",)


def run_name(name: str, overrides) -> str:
    """The experiment's name, and after it what `--set` changed (`NAME [key=value ...]`), as a sweep trial's name."""
    values = {key: _value(raw) for key, _, raw in (text.partition("=") for text in overrides) if named(key)}
    return names.TRIAL_RUN_NAME.format(name=name, variant=short_name(values)) if values else name


def named(key: str) -> bool:
    """Whether an override of `key` shows in the run's name."""
    return not (key.startswith(UNNAMED_KEYS) or key.endswith(UNNAMED_TAILS))


def _value(raw: str):
    try:
        return parse(f"v: {raw}", "--set")[0]["v"]
    except XrunError:
        return raw


def yaml_value(value) -> str:
    """The value as `--set` text that reads back as the same value."""
    if isinstance(value, str):
        try:
            if parse(f"v: {value}", "value")[0]["v"] == value:
                return value
        except XrunError:
            pass
    if isinstance(value, float) and math.isfinite(value):
        text = format(value, ".12g")  # 1e+12, not 1000000000000.0
        return text if any(c in text for c in ".e") else text + ".0"  # and a float stays a float
    return json.dumps(value)  # JSON is YAML: quoted strings, numbers, flow lists and mappings


def short_name(values: dict) -> str:
    """What varied, briefly: each key by its shortest unambiguous tail, long values abbreviated."""
    keys = list(values)
    return " ".join(f"{_tail(k, keys)}={_brief(v)}" for k, v in values.items())


def _tail(key: str, keys: list[str]) -> str:
    parts = key.split(".")
    for n in range(1, len(parts) + 1):
        tail = ".".join(parts[-n:])
        if sum(k == tail or k.endswith("." + tail) for k in keys) == 1:
            return tail
    return key


def _brief(value) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return format(value, ".3g")
    text = yaml_value(value)
    return text if len(text) <= 16 else text[:15] + "…"
