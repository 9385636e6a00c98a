"""Read YAML as plain data while remembering where every key and value came from, safely."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from runner.errors import Location, XrunError

MAX_BYTES = 1 << 20   # experiments are a few KB; a bigger file is a mistake or an attack
MAX_NODES = 20_000    # caps alias expansion ("billion laughs"); the largest experiment has a few hundred
MAX_DEPTH = 64

Path_ = tuple  # a path into the document: keys (str) and list indices (int)

# The only tags plain data may carry; anything else (e.g. !!python/object) is refused, never constructed.
PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in
              ("str", "int", "float", "bool", "null", "map", "seq", "merge")}
_YAML_TAG = "tag:yaml.org,2002:"
_MERGE_TAG = _YAML_TAG + "merge"


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads `1e-3` as a number (YAML 1.1 wants `1.0e-3`), leaves dates as text, and refuses
    nesting deeper than MAX_DEPTH while composing (PyYAML's composer recurses, so a deep file would otherwise
    end in a RecursionError)."""

    depth = 0

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH + 1:
                raise XrunError(f"nesting deeper than {MAX_DEPTH} levels", where=_mark(self.name, self.peek_event()),
                                hint="an experiment is a shallow mapping")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _YAML_TAG + "timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(_YAML_TAG + "float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                              list("-+0123456789"))


class _CLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """libyaml's composer (C, several times faster than PyYAML's) reading scalars exactly as _Loader does."""


_CLoader.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers
# Text libyaml reads differently from PyYAML (found by composing ~100,000 generated or mutated documents with both):
# tabs and the line breaks \r \x85 \u2028 \u2029, a byte-order mark, `?` (a plain scalar may hold it in a flow
# collection for libyaml only), `!` (libyaml takes tag handles PyYAML refuses) and a block scalar header followed
# by `#` without a space. Such a text goes to the Python composer.
_C_DIVERGES = re.compile(r"[?!\t\r\x85\u2028\u2029\ufeff]|[|>][-+0-9]*#")
# libyaml composes nested collections by recursing in C (~0.4 KB of stack a level here), outside Python's recursion
# limit. Each level needs one of these characters, so a text with at most C_MAX_NESTING of them nests no deeper
# (0.8 MB: within a 1 MB thread stack); the largest experiment has 259.
_NESTING = "[{-:"
C_MAX_NESTING = 2_000
_SLOW = object()  # the Python composer must read this text


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
        return Locations({p: loc for p, loc in self.values.items() if p[:n] == prefix},
                         {p: loc for p, loc in self.keys.items() if p[:n] == prefix})

    def update(self, other: "Locations") -> None:
        self.values.update(other.values)
        self.keys.update(other.keys)


def read_text(path: Path) -> str:
    """The file's text, refusing what cannot be an experiment: missing, not a regular file, huge, binary."""
    raw = _read_bounded(path, Location(str(path)))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        line = raw[:exc.start].count(b"\n") + 1
        col = len(raw[line_start:exc.start].decode("utf-8", errors="replace")) + 1
        raise XrunError(f"byte 0x{raw[exc.start]:02x} is not UTF-8 text", where=Location(str(path), line, col),
                        hint="save the file as UTF-8") from None


# What a path is when it is not a regular file, for the message that refuses it.
_NOT_FILES = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFIFO: "a named pipe",
              stat.S_IFSOCK: "a socket"}


def _read_bounded(path: Path, where: Location) -> bytes:
    """At most MAX_BYTES of a regular file: its reported size is not trusted (/dev/zero reports 0 and never ends).

    A device or pipe is refused before it is opened (opening one can block or act), and the open file is checked
    again, so what is read is what was checked.
    """
    try:
        _check_regular(os.stat(path), where)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise XrunError("no such file", where=where, hint="check the path (it is relative to the current "
                        "directory)") from None
    except OSError as exc:  # e.g. no permission
        raise XrunError(f"cannot read file ({exc.strerror})", where=where, hint="check the path") from None
    with os.fdopen(fd, "rb") as file:
        _check_regular(os.fstat(fd), where)
        try:
            raw = file.read(MAX_BYTES + 1)
        except OSError as exc:
            raise XrunError(f"cannot read file ({exc.strerror})", where=where, hint="check the path") from None
    if len(raw) > MAX_BYTES:  # it grew, or reported less than it holds
        raise XrunError(f"file is more than the {MAX_BYTES:,} bytes an experiment may have", where=where,
                        hint="an experiment is a short YAML file; keep data out of it")
    return raw


def _check_regular(info: os.stat_result, where: Location) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise XrunError("is a directory, not a YAML file", where=where, hint="give the path of a .yaml file")
    if not stat.S_ISREG(info.st_mode):
        what = _NOT_FILES.get(stat.S_IFMT(info.st_mode), "not a regular file")
        raise XrunError(f"is {what}, not a YAML file", where=where, hint="give the path of a .yaml file")
    if info.st_size > MAX_BYTES:
        raise XrunError(f"file is {info.st_size:,} bytes, more than the {MAX_BYTES:,} an experiment may have",
                        where=where, hint="an experiment is a short YAML file; keep data out of it")

def parse(text: str, filename: str) -> tuple[dict, Locations]:
    """Parse one YAML document into plain data (a mapping) and the locations of its parts."""
    node = _compose_single(text, filename)
    if node is None:
        raise XrunError("the file is empty", where=Location(filename, 1, 1),
                        hint="an experiment is a YAML mapping with name, data, model, ...")
    builder = _Builder(filename, text)
    data = builder.build(node, ())
    if not isinstance(data, dict):
        raise XrunError(f"the document is a {_kind(data)}, not a mapping", where=_mark(filename, node),
                        hint="an experiment is a YAML mapping with name, data, model, ...")
    return data, builder.locs


def _compose_single(text: str, filename: str):
    node = _compose_in_c(text) if yaml.__with_libyaml__ else _SLOW
    return _compose_in_python(text, filename) if node is _SLOW else node


def _compose_in_c(text: str):
    """The document's node tree from libyaml, or _SLOW where only PyYAML's composer gives today's exact answer:
    every error (its message and position) comes from the Python composer, which reads the text again."""
    if _C_DIVERGES.search(text) or sum(map(text.count, _NESTING)) > C_MAX_NESTING:
        return _SLOW
    try:
        loader = _CLoader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except Exception:  # noqa: BLE001 - whatever it is, the Python composer reports it as today
        return _SLOW
    return node if node is None or _same_as_python(node) else _SLOW


def _same_as_python(root) -> bool:
    """Whether the C tree is what the Python composer makes (plain scalars get its style, None), walking it
    without recursion. An empty value (`key:`) is placed elsewhere by libyaml, and a tree deeper than MAX_DEPTH
    is the Python composer's error to report."""
    seen: set[int] = set()
    stack = [(root, 1)]
    while stack:  # depth first in document order, so a node is met first where it is written, not at an alias
        node, depth = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if depth > MAX_DEPTH:
            return False
        if isinstance(node, yaml.ScalarNode):
            node.style = node.style or None
            if node.style is None and node.value == "":
                return False
            continue
        children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
        stack.extend((child, depth + 1) for child in reversed(children))
    return True


def _compose_in_python(text: str, filename: str):
    try:
        loader = _Loader(text)  # the reader checks for control characters here already
        loader.name = filename
        try:
            return loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, filename, text) from None
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, filename, text) from None
    except yaml.YAMLError as exc:
        raise XrunError(f"YAML error: {exc}", where=Location(filename)) from None


def _reader_error(exc: yaml.reader.ReaderError, filename: str, text: str) -> XrunError:
    """A character YAML does not allow (a control character, say), pointed at by line and column."""
    before = text[:exc.position]
    where = Location(filename, before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1)
    return XrunError(f"the character U+{exc.character:04X} is not allowed in YAML", where=where,
                     hint="delete it (a control character, perhaps pasted from elsewhere)")


def _syntax_error(exc: yaml.MarkedYAMLError, filename: str, text: str = "") -> XrunError:
    mark = exc.problem_mark or exc.context_mark
    where = Location(filename, mark.line + 1, mark.column + 1) if mark else Location(filename)
    problem = exc.problem or "invalid YAML"
    if "expected a single document" in str(exc.context or ""):
        return XrunError("more than one YAML document in the file", where=where,
                         hint="an experiment is one document; remove the '---' separator")
    if "found character '\\t'" in problem:
        return XrunError("a tab character where YAML needs spaces", where=where, hint="indent with spaces")
    context = f" ({exc.context})" if exc.context else ""
    start = exc.context_mark
    if exc.context and start and mark and start.line != mark.line:
        # The problem is often found far from its cause (an unclosed bracket or quote): say where that began.
        context = f" ({exc.context} that starts at line {start.line + 1})"
    return XrunError(f"YAML syntax error: {problem}{context}", where=where, hint=_syntax_hint(problem, mark, text))


def _syntax_hint(problem: str, mark, text: str) -> str:
    """What usually causes this syntax error in an experiment file."""
    line = text.splitlines()[mark.line] if mark and mark.line < len(text.splitlines()) else ""
    if "${" in line and ("'{'" in problem or "'}'" in problem):
        return 'put quotes around a value that holds ${...} inside {...}, e.g. name: "conv_${filters}"'
    if problem.startswith("mapping values are not allowed"):
        return "quote a value that contains ': ', or check the indentation of this line"
    return "fix the YAML at this position"


def _mark(filename: str, node) -> Location:
    return Location(filename, node.start_mark.line + 1, node.start_mark.column + 1)


def _tag_text(tag: str) -> str:
    """A tag as it is written: `!!python/object` rather than `tag:yaml.org,2002:python/object`."""
    return "!!" + tag.removeprefix(_YAML_TAG) if tag.startswith(_YAML_TAG) else tag


def _kind(value) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


class _Builder:
    """Turns composed YAML nodes into dicts, lists and scalars, recording locations as it goes."""

    def __init__(self, filename: str, text: str):
        self.filename = filename
        self.text = text
        self.locs = Locations()
        self.count = 0
        self.scalars = _Loader("")  # only its scalar constructors are used
        self.open: list = []        # the nodes being built, outermost first (an alias may point back at one)
        self.open_ids: set[int] = set()
        self.sizes: dict[int, int] = {}  # values in each collection built so far: meeting one again means an alias

    def build(self, node, path: Path_):
        self._check_limits(node, path)
        self.locs.values[path] = _mark(self.filename, node)
        if isinstance(node, yaml.ScalarNode):
            if node.style is None and (listed := python_tuple(_written(node, self.text))):
                raise XrunError(f"{_written(node, self.text)} is a Python tuple, which YAML reads as text",
                                where=_mark(self.filename, node), path=dotted(path) or None,
                                hint=f"write a YAML list: {listed}")
            return self.scalars.construct_object(node)
        self.open.append(node)
        self.open_ids.add(id(node))
        before = self.count
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        finally:
            self.open.pop()
            self.open_ids.discard(id(node))
            self.sizes[id(node)] = self.count - before

    def _check_limits(self, node, path: Path_) -> None:
        self.count += 1
        if node.tag not in PLAIN_TAGS:
            raise XrunError(f"the tag '{_tag_text(node.tag)}' is not allowed", where=_mark(self.filename, node),
                            path=dotted(path) or None,
                            hint="an experiment holds plain data only (no Python objects or custom tags)")
        if id(node) in self.open_ids:
            raise XrunError("an alias refers to a value that contains it", where=_mark(self.filename, node),
                            path=dotted(path) or None, hint="a value cannot include itself; write it out")
        # An alias's size is known from its first expansion, so a bomb is stopped before it goes off.
        if self.count + self.sizes.get(id(node), 0) > MAX_NODES:
            raise self._through_aliases(node, path, f"expands to more than {MAX_NODES:,} values")
        if len(path) > MAX_DEPTH:  # aliases of aliases can nest deeper than the text does
            raise self._through_aliases(node, path, f"nests deeper than {MAX_DEPTH} levels")

    def _through_aliases(self, node, path: Path_, what: str) -> XrunError:
        """Point at the outermost value that aliases inflate: that is where the user wrote them."""
        chain = self.open + [node]
        n = next((i for i, n in enumerate(chain) if id(n) in self.sizes), None)
        if not n:
            return XrunError(f"the document {what}", where=Location(self.filename),
                             hint="an experiment is a short, shallow YAML file; keep data out of it")
        return XrunError(f"this value {what} through aliases", where=_mark(self.filename, chain[n - 1]),
                         path=dotted(path[:n - 1]) or None, hint="write the experiment out without nested aliases")

    def _mapping(self, node, path: Path_) -> dict:
        own = {id(k) for k, _ in node.value if k.tag != _MERGE_TAG}
        self.scalars.flatten_mapping(node)  # applies YAML merge keys (<<: *base), merged pairs first
        out: dict = {}
        written: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, path)
            if key in out and id(key_node) in own and written.get(key) in own:
                first = self.locs.keys[path + (key,)]
                raise XrunError(f"duplicate key '{key}' (first at line {first.line})",
                                where=_mark(self.filename, key_node), path=dotted(path + (key,)),
                                hint="each key may appear once in a mapping")
            # A key written here overrides one brought in by `<<:`, as YAML merge keys mean.
            written[key] = id(key_node)
            self.locs.keys[path + (key,)] = _mark(self.filename, key_node)
            out[key] = self.build(value_node, path + (key,))
        return out

    def _key(self, key_node, path: Path_) -> str:
        if not isinstance(key_node, yaml.ScalarNode):
            raise XrunError("a mapping key must be a plain name, not a list or mapping",
                            where=_mark(self.filename, key_node), path=dotted(path) or None,
                            hint="write the key as a plain word, e.g. filters:")
        # The written text, not YAML 1.1's reading of it: a key `on:` stays "on", not True.
        return key_node.value


# `(3, 3)` or `(None, 28, 28)` as Python writes a tuple; a flow mapping `{kernel_size: (3, 3)}` splits it at the
# comma, leaving `(3` (and a key `3)`), so the closing parenthesis is optional.
_NUMBER = r"\s*(?:[-+]?\d[\w.+-]*|None)\s*"
_TUPLE = re.compile(rf"\((?:{_NUMBER}(?:,{_NUMBER})*,?)?\s*\)?")


def python_tuple(text: str) -> str | None:
    """The YAML list for a Python tuple written as a plain value (`(3, 3)` -> `[3, 3]`), or None if it is not one."""
    text = text.strip()
    if not (text.startswith("(") and _TUPLE.fullmatch(text)):
        return None
    items = [item.strip() for item in text.strip("()").split(",") if item.strip()]
    return "[" + ", ".join("null" if item == "None" else item for item in items) + "]"


def _written(node, source: str) -> str:
    """A plain scalar as written: `(3` in `{kernel_size: (3, 3)}` is read up to the comma, but was `(3, 3)`."""
    start, text = node.start_mark.index, node.value  # marks count characters in both composers
    if text.startswith("(") and ")" not in text:
        line_end = source.find("\n", start)
        close = source.find(")", start, None if line_end < 0 else line_end)
        text = source[start:close + 1] if close > 0 else text
    return text


def dotted(path: Path_) -> str:
    """`model.layers[3].filters` for ('model', 'layers', 3, 'filters')."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out

