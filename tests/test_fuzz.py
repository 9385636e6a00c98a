"""Property-based fuzzing: whatever a YAML file says, validate and summary either work or raise XrunError.

The budget is small in CI; set XRUN_FUZZ_EXAMPLES (e.g. 2000) for a longer run.
"""

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.errors import XrunError
from runner.language.spec import load_spec
from runner.model import compiler

EXAMPLES = int(os.environ.get("XRUN_FUZZ_EXAMPLES", "40"))
EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
# The big seed-004 nets are slow to build; the small ones exercise the same code.
BASES = ["model1", "model2", "model5", "seed000_yogi", "seed001_cnn5", "seed002_method2"]
# CI replays the same cases (a failure is reproducible); a long run explores new ones.
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="XRUN_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6)


def _documents() -> dict:
    return {name: load_spec(EXPERIMENTS / f"{name}.yaml").document for name in BASES}


DOCUMENTS = _documents()


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated(draw):
    """A seed experiment with one to three random edits: a value replaced, a key deleted or renamed."""
    import copy

    document = copy.deepcopy(DOCUMENTS[draw(st.sampled_from(BASES))])
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(document) if p]
        path = draw(st.sampled_from(paths))
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "rename"]))
        if action == "replace" or isinstance(parent, list):
            parent[path[-1]] = draw(values)
        elif action == "delete":
            del parent[path[-1]]
        else:
            parent[draw(st.text(min_size=1, max_size=10))] = parent.pop(path[-1])
    return document


def _check(path: Path) -> None:
    """The property: the project's own error, or a model, and never anything else."""
    try:
        spec = load_spec(path)
    except XrunError as exc:
        assert exc.line().strip() and "Traceback" not in exc.format()
        return
    try:
        compiler.build_model(spec)
    except XrunError as exc:
        assert exc.line().strip()


@pytest.fixture
def small_machine(monkeypatch):
    # A fuzzed Dense can legally ask for a billion weights; pretend memory is small so it is refused, not built.
    monkeypatch.setattr(compiler, "_memory_bytes", lambda: 400 << 20)


@FUZZ
@given(document=mutated())
def test_mutated_experiments_validate_or_fail_cleanly(document, tmp_path_factory, small_machine):
    path = tmp_path_factory.mktemp("fuzz") / "x.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    _check(path)


@FUZZ
@given(text=st.text(max_size=300))
def test_any_text_validates_or_fails_cleanly(text, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "x.yaml"
    path.write_text(text)
    with pytest.raises(XrunError):
        load_spec(path)  # random text is never a complete experiment


@FUZZ
@given(data=st.binary(max_size=300))
def test_any_bytes_validate_or_fail_cleanly(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "x.yaml"
    path.write_bytes(data)
    with pytest.raises(XrunError):
        load_spec(path)
