"""Read YAML as plain data while remembering where every key and value came from, safely."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import Location, XrunError

MAX_BYTES = 1 << 20   # experiments are a few KB; a bigger file is a mistake or an attack
MAX_NODES = 100_000   # caps alias expansion ("billion laughs") and huge documents
MAX_DEPTH = 64

Path_ = tuple  # a path into the document: keys (str) and list indices (int)

# The only tags plain data may carry; anything else (e.g. !!python/object) is refused, never constructed.
PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in
              ("str", "int", "float", "bool", "null", "map", "seq", "merge")}


@dataclass
class Locations:
    """Where each value (and each mapping key) of a document was written."""

    values: dict = field(default_factory=dict)
    keys: dict = field(default_factory=dict)

    def of(self, path: Path_, key: bool = False) -> Location | None:
        """The location of `path`, or of its nearest written ancestor."""
        table = self.keys if key else self.values
        for n in range(len(path), -1, -1):
            loc = table.get(tuple(path[:n])) or self.values.get(tuple(path[:n]))
            if loc is not None:
                return loc
        return None

    def under(self, prefix: Path_) -> "Locations":
        """Only the entries at or below `prefix`."""
        n = len(prefix)
        return Locations({p: l for p, l in self.values.items() if p[:n] == prefix},
                         {p: l for p, l in self.keys.items() if p[:n] == prefix})

    def update(self, other: "Locations") -> None:
        self.values.update(other.values)
        self.keys.update(other.keys)


def read_text(path: Path) -> str:
    """The file's text, refusing what cannot be an experiment: missing, directory, huge, binary."""
    where = Location(str(path))
    if path.is_dir():
        raise XrunError("is a directory, not a YAML file", where=where, hint="give the path of a .yaml file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise XrunError(f"cannot read file ({exc.strerror})", where=where, hint="check the path") from None
    if size > MAX_BYTES:
        raise XrunError(f"file is {size:,} bytes, more than the {MAX_BYTES:,} an experiment may have", where=where,
                        hint="an experiment is a short YAML file; keep data out of it")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise XrunError(f"byte 0x{raw[exc.start]:02x} is not UTF-8 text", where=Location(str(path), line, 1),
                        hint="save the file as UTF-8") from None


def parse(text: str, filename: str) -> tuple[dict, Locations]:
    """Parse one YAML document into plain data (a mapping) and the locations of its parts."""
    node = _compose_single(text, filename)
    if node is None:
        raise XrunError("the file is empty", where=Location(filename, 1, 1),
                        hint="an experiment is a YAML mapping with name, data, model, ...")
    builder = _Builder(filename)
    data = builder.build(node, ())
    if not isinstance(data, dict):
        raise XrunError(f"the document is a {_kind(data)}, not a mapping", where=_mark(filename, node),
                        hint="an experiment is a YAML mapping with name, data, model, ...")
    return data, builder.locs


def _compose_single(text: str, filename: str):
    loader = yaml.SafeLoader(text)
    try:
        return loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, filename) from None
    except yaml.YAMLError as exc:  # e.g. a reader error on control characters
        raise XrunError(f"YAML error: {exc}", where=Location(filename)) from None
    finally:
        loader.dispose()


def _syntax_error(exc: yaml.MarkedYAMLError, filename: str) -> XrunError:
    mark = exc.problem_mark or exc.context_mark
    where = Location(filename, mark.line + 1, mark.column + 1) if mark else Location(filename)
    problem = exc.problem or "invalid YAML"
    if "expected a single document" in str(exc.context or ""):
        return XrunError("more than one YAML document in the file", where=where,
                         hint="an experiment is one document; remove the '---' separator")
    if "found character '\\t'" in problem:
        return XrunError("a tab character where YAML needs spaces", where=where, hint="indent with spaces")
    context = f" ({exc.context})" if exc.context else ""
    return XrunError(f"YAML syntax error: {problem}{context}", where=where, hint="fix the YAML at this position")


def _mark(filename: str, node) -> Location:
    return Location(filename, node.start_mark.line + 1, node.start_mark.column + 1)


def _kind(value) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


class _Builder:
    """Turns composed YAML nodes into dicts, lists and scalars, recording locations as it goes."""

    def __init__(self, filename: str):
        self.filename = filename
        self.locs = Locations()
        self.count = 0
        self.scalars = yaml.SafeLoader("")  # only its scalar constructors are used

    def build(self, node, path: Path_):
        self._check_limits(node, path)
        self.locs.values[path] = _mark(self.filename, node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        return self.scalars.construct_object(node)

    def _check_limits(self, node, path: Path_) -> None:
        self.count += 1
        if node.tag not in PLAIN_TAGS:
            raise XrunError(f"the tag '{node.tag}' is not allowed", where=_mark(self.filename, node),
                            hint="an experiment holds plain data only (no Python objects or custom tags)")
        if self.count > MAX_NODES:
            raise XrunError(f"the document expands to more than {MAX_NODES:,} values (aliases repeated?)",
                            where=_mark(self.filename, node), hint="write the experiment out without nested aliases")
        if len(path) > MAX_DEPTH:
            raise XrunError(f"nesting deeper than {MAX_DEPTH} levels", where=_mark(self.filename, node),
                            hint="an experiment is a shallow mapping")

    def _mapping(self, node, path: Path_) -> dict:
        self.scalars.flatten_mapping(node)  # applies YAML merge keys (<<: *base)
        out: dict = {}
        for key_node, value_node in node.value:
            key = self._key(key_node)
            if key in out:
                first = self.locs.keys[path + (key,)]
                raise XrunError(f"duplicate key '{key}' (first at line {first.line})",
                                where=_mark(self.filename, key_node), path=dotted(path + (key,)),
                                hint="each key may appear once in a mapping")
            self.locs.keys[path + (key,)] = _mark(self.filename, key_node)
            out[key] = self.build(value_node, path + (key,))
        return out

    def _key(self, key_node) -> str:
        if not isinstance(key_node, yaml.ScalarNode):
            raise XrunError("a mapping key must be a plain name", where=_mark(self.filename, key_node))
        # The written text, not YAML 1.1's reading of it: a key `on:` stays "on", not True.
        return key_node.value


def dotted(path: Path_) -> str:
    """`model.layers[3].filters` for ('model', 'layers', 3, 'filters')."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out

