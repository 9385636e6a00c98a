"""Every ```yaml example of README.md is valid: a whole experiment loads as `xrun validate` loads it; a fragment (a
`model:` or `sweep:` section alone) is valid YAML whose sections the schema's definitions of them accept."""

import re
import shutil

import pytest
from helpers import REPO

from runner.language import schema
from runner.language.graph import build_graph
from runner.language.source import parse
from runner.language.spec import load_spec, merge_types

BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.S | re.M)


def examples() -> list[tuple[int, str]]:
    """(README line of the block's first line, its text) for each ```yaml block."""
    text = (REPO / "README.md").read_text()
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in BLOCK.finditer(text)]


EXAMPLES = examples()


def test_the_readme_has_its_yaml_examples():
    assert len(EXAMPLES) == 7  # a new example is checked too: raise this count with it


@pytest.mark.parametrize("line, text", EXAMPLES, ids=[f"README.md:{line}" for line, _ in EXAMPLES])
def test_a_readme_yaml_example_is_valid(line, text, tmp_path):
    document, locs = parse(text, f"README.md (the yaml block at line {line})")  # positions are within the block
    if "name" in document:  # a whole experiment, written beside a copy of the bases it extends (experiments/base)
        shutil.copytree(REPO / "experiments" / "base", tmp_path / "base")
        (tmp_path / "example.yaml").write_text(text)
        assert load_spec(tmp_path / "example.yaml").name == document["name"]
        return
    # A fragment: each section as the schema defines it (a file that `extends` may hold any part of an experiment).
    schema.check({"extends": "base.yaml", **document}, locs.of)
    if "model" in document:  # and its layers' references resolve
        assert build_graph(document["model"], locs.of, merge_types()).nodes


def test_a_broken_example_would_fail():
    """The check can fail: the sweep example as it was written before issue 22 is not YAML."""
    from runner.errors import XrunError

    with pytest.raises(XrunError) as info:
        parse("sweep:\n  grid: {model.layers[0].filters: [8, 16, 32]}\n", "README.md")
    assert info.value.format() == ("README.md:2:22: YAML syntax error: expected ',' or '}', but got '[' (while "
                                   "parsing a flow mapping); fix the YAML at this position")
