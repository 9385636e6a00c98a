"""libyaml composes experiment files, and whatever it would read differently goes to PyYAML's composer instead."""

import glob
from pathlib import Path

import pytest
import yaml

from runner.errors import XrunError
from runner.language import source
from runner.language.source import C_MAX_NESTING, parse, read_text
from runner.language.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted(glob.glob(str(REPO / "experiments" / "*.yaml")))


def python_only(monkeypatch):
    monkeypatch.setattr(yaml, "__with_libyaml__", False)


def refuse_python(monkeypatch):
    def refused(text, filename):
        raise AssertionError(f"{filename} was composed by PyYAML, not libyaml")
    monkeypatch.setattr(source, "_compose_in_python", refused)


def error_of(text: str, filename: str = "t.yaml") -> str:
    with pytest.raises(XrunError) as info:
        parse(text, filename)
    return info.value.format()


def test_libyaml_is_there():
    assert yaml.__with_libyaml__  # else every test below would only exercise the Python composer


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: Path(p).stem)
def test_every_experiment_is_composed_by_libyaml(path, monkeypatch):
    refuse_python(monkeypatch)
    data, _ = parse(read_text(Path(path)), path)
    assert isinstance(data, dict) and data["name"]


def test_an_experiment_loads_without_pyyamls_composer(monkeypatch):
    refuse_python(monkeypatch)
    spec = load_spec(REPO / "experiments" / "model1.yaml", data_must_exist=False)
    assert spec.document["name"] == "model1"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: Path(p).stem)
def test_both_composers_give_the_same_data_and_locations(path, monkeypatch):
    text = read_text(Path(path))
    fast_data, fast_locs = parse(text, path)
    python_only(monkeypatch)
    data, locs = parse(text, path)
    assert fast_data == data
    assert fast_locs.values == locs.values and fast_locs.keys == locs.keys  # every value's and key's line, column
    assert len(locs.values) > 20


def test_a_syntax_error_is_told_by_pyyaml_after_libyaml_fails(monkeypatch):
    tried = []
    c_compose = source._compose_in_c
    monkeypatch.setattr(source, "_compose_in_c", lambda text: tried.append(c_compose(text)) or tried[-1])
    assert error_of("name: x: y\n") == ("t.yaml:1:8: YAML syntax error: mapping values are not allowed here; quote a "
                                        "value that contains ': ', or check the indentation of this line")
    assert tried == [source._SLOW]  # libyaml was asked first, and its error was not the one shown


def test_a_very_deep_file_is_refused_as_before_without_a_crash():
    text = "a: " + "[" * 100_000 + "]" * 100_000 + "\n"
    assert source._compose_in_c(text) is source._SLOW  # too many nesting characters for C's stack: not tried
    assert error_of(text) == "t.yaml:1:68: nesting deeper than 64 levels; an experiment is a shallow mapping"


def test_nesting_that_libyaml_composes_is_still_held_to_max_depth():
    text = "[" * 70 + "]" * 70 + "\n"  # 140 nesting characters: libyaml composes it, 70 levels deep
    assert sum(map(text.count, "[{-:")) <= C_MAX_NESTING
    assert source._compose_in_c(text) is source._SLOW
    # The 66th `[` is where the composer goes past 64 levels below the document's own mapping level (1:66).
    assert error_of(text) == "t.yaml:1:66: nesting deeper than 64 levels; an experiment is a shallow mapping"


def test_a_deep_list_within_the_limit_is_read_by_libyaml(monkeypatch):
    refuse_python(monkeypatch)
    data, locs = parse("a: " + "[" * 60 + "1" + "]" * 60 + "\n", "t.yaml")
    assert locs.of(("a",) + (0,) * 59).col == 63  # the innermost list: the 60th `[`, at column 3 + 60
    inner = data["a"]
    for _ in range(59):
        inner = inner[0]
    assert inner == [1]


@pytest.mark.parametrize("text", [
    "a:\tb\n",                 # libyaml allows a tab after `:`; PyYAML refuses it
    "a: [b?c]\n",              # in a flow list libyaml reads `b?c` as one scalar
    "a: |#\n  x\n",            # libyaml allows a comment right after a block scalar's `|`
    "a: !+.5!local x\n",       # a tag handle PyYAML refuses
    "a: {b: }\nc: 1\n",        # the empty value of b: libyaml places it one column later
    "a:\n",                    # an empty value at the end
    "a: x\r\nb: [1,\r 2]\n",   # line breaks other than \n
    "\ufeffa: 1\n",            # a byte-order mark
], ids=["tab", "question-mark", "block-scalar-comment", "tag-handle", "empty-flow-value", "empty-value",
        "carriage-returns", "bom"])
def test_text_that_libyaml_reads_differently_reads_as_pyyaml_reads_it(text, monkeypatch):
    assert source._compose_in_c(text) is source._SLOW
    outcomes = []
    for _ in range(2):
        try:
            data, locs = parse(text, "t.yaml")
            outcomes.append((data, locs.values, locs.keys))
        except XrunError as exc:
            outcomes.append(exc.format())
        python_only(monkeypatch)
    assert outcomes[0] == outcomes[1]


def test_the_guards_are_needed():
    # What libyaml alone would do with two of the texts above, unlike PyYAML: accept a tab, place an empty value.
    assert yaml.compose("a:\tb\n", Loader=source._CLoader).value[0][1].value == "b"
    with pytest.raises(yaml.YAMLError):
        yaml.compose("a:\tb\n", Loader=source._Loader)
    empty = yaml.compose("a: {b: }\n", Loader=source._CLoader).value[0][1].value[0][1]
    assert (empty.value, empty.start_mark.column) == ("", 7)
    assert yaml.compose("a: {b: }\n", Loader=source._Loader).value[0][1].value[0][1].start_mark.column == 6


def test_scalars_read_as_pyyaml_reads_them(monkeypatch):
    refuse_python(monkeypatch)
    data, _ = parse("lr: 1e-3\nday: 2026-01-01\non: yes\nn: 0x1F\nt: (3, 3) pooled\n", "t.yaml")
    assert data == {"lr": 0.001, "day": "2026-01-01", "on": True, "n": 31, "t": "(3, 3) pooled"}


def test_a_python_tuple_in_a_flow_list_is_shown_whole_from_libyaml(monkeypatch):
    refuse_python(monkeypatch)  # libyaml's marks hold no text: the tuple is read back from the file's text
    assert error_of("name: x\nsizes: [(3, 3), 4]\n") == (
        "t.yaml:2:9: sizes[0]: (3, 3) is a Python tuple, which YAML reads as text; write a YAML list: [3, 3]")
