"""Block params put into a block's layers: "${name}" as the value given, "${width * 4}" as arithmetic, and where
each value was written (the block use, `first:`, or the param's default), so that a bad one is reported there."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from runner.errors import Location, XrunError, did_you_mean
from runner.language.expressions import ExpressionError, bare_name, evaluate, names_in
from runner.language.source import Path_, dotted

_PARAM = re.compile(r"\$\{([^}]*)\}")
Locate = Callable[..., "Location | None"]


@dataclass(frozen=True)
class Origins:
    """Where the values a block's params put into one of its layers were written, so that a bad one is reported
    there: {path in the layer: (path of the value at the block use, or of the param's default; the text it replaced)}.
    """

    at: dict = field(default_factory=dict)

    def source(self, key: Path_, default: Path_) -> Path_:
        return self.at[key][0] if key in self.at else default

    def _found(self, path: Path_) -> int:
        return next((n for n in range(len(path), 0, -1) if path[:n] in self.at), 0)

    def path(self, origin: Path_, path: Path_) -> Path_:
        """Where a problem at `path` inside the layer written at `origin` is shown: at the value given, if one was."""
        n = self._found(path)
        return self.at[path[:n]][0] + path[n:] if n else origin + path

    def shown(self, origin: Path_, path: Path_, via: str) -> str:
        """`path` for a message: the value's own path, saying where the block used it."""
        n = self._found(path)
        if not n:
            return dotted(origin + path) + (f" (in {via})" if via else "")
        text = self.at[path[:n]][1]
        used = dotted(origin + path[:n]) + ("" if _PARAM.fullmatch(text) and bare_name(text[2:-1]) else f" = {text}")
        return f"{dotted(self.path(origin, path))} (used in {used})"


NO_ORIGINS = Origins()

def substitute_layers(layers: list, params: dict, sources: dict, path: Path_, locate: Locate):
    """A block's layers with their params filled in, and where each layer's param values were written."""
    found: dict = {}
    inner = _substitute(layers, params, sources, path, locate, found)
    origins = [Origins({p[len(path) + 1:]: v for p, v in found.items() if p[:len(path) + 1] == path + (i,)})
               for i in range(len(inner))]
    return inner, origins


def _substitute(value, params: dict, sources: dict, path: Path_, locate: Locate, found: dict):
    """A copy of `value` with each "${expression}" replaced by its value (a whole string keeps the value's type);
    `found` gets, for each string a single param went into, that param's source and the string."""
    if isinstance(value, dict):
        return {k: _substitute(v, params, sources, path + (k,), locate, found) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, params, sources, path + (i,), locate, found) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    used = [name for ref in _PARAM.findall(value) for name in _known_names(ref, params, path, locate)]
    if len(set(used)) == 1:  # the value comes from one param: a bad one is shown where that param was given
        found[path] = (sources[used[0]], value)
    whole = _PARAM.fullmatch(value)
    if whole:
        return _value(whole.group(1), params, sources, path, value, locate)
    return _PARAM.sub(lambda m: str(_value(m.group(1), params, sources, path, value, locate)), value)


def _known_names(ref: str, params: dict, path: Path_, locate: Locate) -> list[str]:
    """The params an expression uses, each of them declared."""
    names = names_in(ref)
    for name in names:
        if name not in params:
            hint = did_you_mean(name, params) or ("declare it under params" if not params else
                                                  "declared params: " + ", ".join(params))
            what = f"'${{{ref}}}'" if bare_name(ref) else f"'{name}' in '${{{ref}}}'"
            raise XrunError(f"unknown block param {what}", where=locate(path), path=dotted(path), hint=hint)
    return names


def _value(ref: str, params: dict, sources: dict, path: Path_, text: str, locate: Locate):
    """The value of one "${...}": a param as it is, or the number an expression over params comes to."""
    name = bare_name(ref)
    if name is not None:
        return params[name]
    try:
        return evaluate(ref, params)
    except ExpressionError as exc:
        if exc.name is None:  # the expression itself is at fault
            raise XrunError(exc.message, where=locate(path), path=dotted(path), hint=exc.hint) from None
        source = sources[exc.name]  # the value given to the param is
        raise XrunError(exc.message, where=locate(source), path=f"{dotted(source)} (used in {dotted(path)} = {text})",
                        hint=exc.hint) from None
