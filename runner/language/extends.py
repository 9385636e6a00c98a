"""`extends`: an experiment inherits a base file, merged deeply with the locations of every value kept."""

from __future__ import annotations

import copy
from pathlib import Path

from runner.errors import XrunError
from runner.language.source import Locations, Path_, parse, read_text

MAX_EXTENDS = 32


def load_with_bases(path: Path, text: str | None = None) -> tuple[dict, Locations, list[Path]]:
    """The file merged onto each base it extends, their locations, and the files read (the file first); `text`,
    where given, is the file's content (a run's recorded config, read back as if it were `path`)."""
    return _load_with_bases(path, [], text)


def _load_with_bases(path: Path, chain: list[Path], text: str | None = None) -> tuple[dict, Locations, list[Path]]:
    document, locs = parse(read_text(path) if text is None else text, str(path))
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
    if isinstance(base, str) and isinstance(over, dict) and "type" not in over:
        base = {"type": base}  # a bare name (`loss: X`, `optimizer: X`) is {type: X}: arguments merge onto it
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
    return Locations({p: loc for p, loc in locs.values.items() if p[:n] != prefix},
                     {p: loc for p, loc in locs.keys.items() if p[:n] != prefix or len(p) == n})
