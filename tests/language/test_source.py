"""Reading experiment files: every kind of broken or hostile YAML gives one exact line with its position."""

import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from runner.errors import XrunError
from runner.language.source import MAX_NODES, parse, python_tuple, read_text
from runner.language.spec import load_spec


def write(tmp_path: Path, content, name: str = "t.yaml") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(XrunError) as info:
        load_spec(path)
    return info.value.format()


@pytest.mark.parametrize("content, expected", [
    ("name: x\nmodel: {layers: [\n",
     "3:1: YAML syntax error: expected the node content, but found '<stream end>' (while parsing a flow node); "
     "fix the YAML at this position"),
    ('name: x\ndescription: "no end\n',
     "3:1: YAML syntax error: found unexpected end of stream (while scanning a quoted scalar that starts at "
     "line 2); fix the YAML at this position"),
    ("name: x: y\n",
     "1:8: YAML syntax error: mapping values are not allowed here; quote a value that contains ': ', or check "
     "the indentation of this line"),
    ("name: x\n  data: 1\n",
     "2:7: YAML syntax error: mapping values are not allowed here; quote a value that contains ': ', or check "
     "the indentation of this line"),
    ("model:\n  layers:\n    - {type: Conv2D, name: conv_${f}}\n",
     "3:34: YAML syntax error: expected ',' or '}', but got '{' (while parsing a flow mapping); "
     'put quotes around a value that holds ${...} inside {...}, e.g. name: "conv_${filters}"'),
], ids=["unclosed-bracket", "unclosed-quote", "colon-in-value", "bad-indent", "unquoted-param"])
def test_yaml_syntax_errors(tmp_path, content, expected):
    path = write(tmp_path, content)
    assert error_of(path) == f"{path}:{expected}"


def test_tab_indentation(tmp_path):
    path = write(tmp_path, "name: x\nmodel:\n\tlayers: []\n")
    assert error_of(path) == f"{path}:3:1: a tab character where YAML needs spaces; indent with spaces"


def test_duplicate_key(tmp_path):
    path = write(tmp_path, "name: x\ntraining:\n  epochs: 1\n  epochs: 2\n")
    assert error_of(path) == (f"{path}:4:3: training.epochs: duplicate key 'epochs' (first at line 3); "
                              "each key may appear once in a mapping")


def test_python_tag_is_refused_without_running_anything(tmp_path):
    marker = tmp_path / "ran"
    path = write(tmp_path, f'name: !!python/object/apply:os.system ["touch {marker}"]\n')
    assert error_of(path) == (f"{path}:1:7: name: the tag '!!python/object/apply:os.system' is not allowed; "
                              "an experiment holds plain data only (no Python objects or custom tags)")
    assert not marker.exists()


def test_custom_tag_is_refused(tmp_path):
    path = write(tmp_path, "name: x\ntraining: {epochs: !int 3}\n")
    assert error_of(path) == (f"{path}:2:20: training.epochs: the tag '!int' is not allowed; "
                              "an experiment holds plain data only (no Python objects or custom tags)")


@pytest.mark.parametrize("content", ["", "\n\n", "# only a comment\n"], ids=["empty", "blank", "comment"])
def test_empty_file(tmp_path, content):
    path = write(tmp_path, content)
    assert error_of(path) == (f"{path}:1:1: the file is empty; "
                              "an experiment is a YAML mapping with name, data, model, ...")


@pytest.mark.parametrize("content, kind", [("- a\n- b\n", "list"), ("just text\n", "string"), ("42\n", "number")])
def test_document_that_is_not_a_mapping(tmp_path, content, kind):
    path = write(tmp_path, content)
    assert error_of(path) == (f"{path}:1:1: the document is a {kind}, not a mapping; "
                              "an experiment is a YAML mapping with name, data, model, ...")


def test_several_documents(tmp_path):
    path = write(tmp_path, "name: a\n---\nname: b\n")
    assert error_of(path) == (f"{path}:2:1: more than one YAML document in the file; "
                              "an experiment is one document; remove the '---' separator")


def test_bytes_that_are_not_utf8(tmp_path):
    path = write(tmp_path, b"name: x\ndescription: caf\xe9\n")
    assert error_of(path) == f"{path}:2:17: byte 0xe9 is not UTF-8 text; save the file as UTF-8"


def test_control_character(tmp_path):
    path = write(tmp_path, "name: x\n  \x07b: 2\n")
    assert error_of(path) == (f"{path}:2:3: the character U+0007 is not allowed in YAML; "
                              "delete it (a control character, perhaps pasted from elsewhere)")


def test_a_directory(tmp_path):
    assert error_of(tmp_path) == f"{tmp_path}: is a directory, not a YAML file; give the path of a .yaml file"


def test_a_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    assert error_of(path) == (f"{path}: no such file; "
                              "check the path (it is relative to the current directory)")


def test_a_huge_file(tmp_path):
    path = write(tmp_path, "description: '" + "x" * (1 << 20) + "'\n")
    assert error_of(path) == (f"{path}: file is 1,048,592 bytes, more than the 1,048,576 an experiment may have; "
                              "an experiment is a short YAML file; keep data out of it")


def validate_elsewhere(path) -> tuple[int, str]:
    """`xrun validate PATH` in a child process, so that a read without end fails the test instead of hanging it."""
    code = ("import sys; from runner.cli import main\n"
            "try:\n    sys.exit(main(['validate', sys.argv[1]]))\nexcept SystemExit as exc:\n    sys.exit(exc.code)")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    return done.returncode, done.stderr


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero on this system")
def test_a_device_is_refused_before_it_is_read():
    # /dev/zero reports size 0 and never ends: it used to be read until the kernel killed xrun (21 GB).
    assert validate_elsewhere("/dev/zero") == (
        2, "/dev/zero: is a character device, not a YAML file; give the path of a .yaml file\n")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "exp.yaml"
    os.mkfifo(fifo)
    assert validate_elsewhere(fifo) == (
        2, f"{fifo}: is a named pipe, not a YAML file; give the path of a .yaml file\n")


def test_a_file_holding_more_than_it_reports_is_read_only_up_to_the_cap(tmp_path, monkeypatch):
    path = write(tmp_path, "description: '" + "x" * (2 << 20) + "'\n")
    real_stat, real_fstat = os.stat, os.fstat

    def reporting_nothing(stat):
        return lambda *args, **kwargs: os.stat_result((*stat(*args, **kwargs)[:6], 0, *stat(*args, **kwargs)[7:]))

    monkeypatch.setattr(os, "stat", reporting_nothing(real_stat))   # as /proc and device files report
    monkeypatch.setattr(os, "fstat", reporting_nothing(real_fstat))
    tracemalloc.start()
    try:
        with pytest.raises(XrunError) as info:
            read_text(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.format() == (f"{path}: file is more than the 1,048,576 bytes an experiment may have; "
                                   "an experiment is a short YAML file; keep data out of it")
    assert peak < 1.5 * (1 << 20)  # the cap and a little, never the whole file


@pytest.mark.parametrize("content, expected", [
    ("name: x\nmodel:\n  input_shape: (28, 28, 1)\n",
     "3:16: model.input_shape: (28, 28, 1) is a Python tuple, which YAML reads as text; "
     "write a YAML list: [28, 28, 1]"),
    ("name: x\nmodel:\n  layers:\n    - {type: Conv2D, filters: 8, kernel_size: (3, 3), padding: same}\n",
     # In a flow mapping YAML splits `(3, 3)` at the comma: one error for the tuple, none for a key `3)`.
     "4:47: model.layers[0].kernel_size: (3, 3) is a Python tuple, which YAML reads as text; "
     "write a YAML list: [3, 3]"),
    ("name: x\nmodel:\n  input_shape: (None, 28, 1)\n",
     "3:16: model.input_shape: (None, 28, 1) is a Python tuple, which YAML reads as text; "
     "write a YAML list: [null, 28, 1]"),
], ids=["block", "flow", "none"])
def test_a_python_tuple(tmp_path, content, expected):
    path = write(tmp_path, content)
    assert error_of(path) == f"{path}:{expected}"


def test_parentheses_in_text_are_text():
    assert parse("description: (draft) two convs\nname: '(3, 3)'\n", "f.yaml")[0] == \
        {"description": "(draft) two convs", "name": "(3, 3)"}
    assert python_tuple("(3, 3)") == "[3, 3]" and python_tuple("(3,)") == "[3]" and python_tuple("(a, b)") is None


BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_billion_laughs_fails_fast(tmp_path):
    path = write(tmp_path, BILLION_LAUGHS)
    start = time.perf_counter()
    message = error_of(path)
    elapsed = time.perf_counter() - start
    # The first list that inflates past the limit is `e` (9**5 values), on line 5.
    assert message == (f"{path}:5:4: e: this value expands to more than {MAX_NODES:,} values through aliases; "
                       "write the experiment out without nested aliases")
    assert elapsed < 1.0


def test_billion_laughs_in_bounded_memory(tmp_path):
    path = write(tmp_path, BILLION_LAUGHS)
    tracemalloc.start()  # slows the parse several times over, so the time is measured above, not here
    try:
        with pytest.raises(XrunError):
            load_spec(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100 * 2**20  # a billion strings would be tens of GB


def test_an_alias_inside_itself(tmp_path):
    path = write(tmp_path, "a: &a [1, *a]\n")
    assert error_of(path) == (f"{path}:1:4: a[1]: an alias refers to a value that contains it; "
                              "a value cannot include itself; write it out")


def test_deep_nesting_is_an_error_not_a_crash(tmp_path):
    path = write(tmp_path, "a: " + "[" * 1000 + "]" * 1000 + "\n")  # past Python's recursion limit
    assert error_of(path) == f"{path}:1:68: nesting deeper than 64 levels; an experiment is a shallow mapping"


def test_aliases_nesting_deeper_than_the_text(tmp_path):
    text = "a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 100))
    path = write(tmp_path, text)
    assert error_of(path) == (f"{path}:64:6: a63: this value nests deeper than 64 levels through aliases; "
                              "write the experiment out without nested aliases")


def test_a_key_that_is_a_list(tmp_path):
    path = write(tmp_path, "? [a, b]\n: 1\n")
    assert error_of(path) == (f"{path}:1:3: a mapping key must be a plain name, not a list or mapping; "
                              "write the key as a plain word, e.g. filters:")


def test_plain_values_are_read_as_data():
    data, _ = parse("a: 1e-3\nb: 2024-01-01\nc: 1_000\non: yes\nd: 1.5E+2\ne: 12e\n", "f.yaml")
    # 1e-3 is a number (YAML 1.1 would make it text), a date stays text, a key `on` stays "on".
    assert data == {"a": 0.001, "b": "2024-01-01", "c": 1000, "on": True, "d": 150.0, "e": "12e"}


def test_merge_keys_let_written_keys_override():
    data, _ = parse("x: &c {type: Conv2D, filters: 32}\ny: {<<: *c, filters: 64}\n", "f.yaml")
    assert data["y"] == {"type": "Conv2D", "filters": 64}


def test_locations_of_keys_and_values():
    _, locs = parse("name: x\nmodel:\n  layers:\n    - {type: Dense, units: 3}\n", "f.yaml")
    assert str(locs.of(("model", "layers", 0, "units"))) == "f.yaml:4:28"
    assert str(locs.of(("model", "layers", 0, "units"), key=True)) == "f.yaml:4:21"
    assert str(locs.of(("model", "layers", 0, "missing"))) == "f.yaml:4:7"  # the nearest written ancestor


def test_read_text_returns_the_text(tmp_path):
    path = write(tmp_path, "name: x\n")
    assert read_text(path) == "name: x\n"
