"""runner.language.config: one resolved, typed config per run; written out as config/resolved.yaml and read back
equal; and nothing outside runner/language/ reads the experiment's raw document."""

import ast
from pathlib import Path

import pytest
import yaml

from runner.language.config import Config, Settings, read_resolved, resolve
from runner.language.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((REPO / "experiments").glob("*.yaml"))
SETTINGS = Settings(precision="float32", jit_compile=False, steps_per_execution=1, device="CPU test", seed=1234,
                    seed_given=False, deterministic=True)


def test_resolve_makes_every_decision(tmp_path):
    spec = load_spec(REPO / "experiments" / "model1.yaml")
    assert (spec.training.seed, spec.training.precision) == (None, "auto")  # as asked: undecided
    config = resolve(spec, SETTINGS)
    assert (config.training.seed, config.training.precision) == (1234, "float32")  # as used
    assert config.settings is SETTINGS
    assert (config.facts.shape, config.facts.num_classes) == ((28, 28, 1), 10)
    assert config.resolved()["training"]["seed"] == 1234
    assert "seed" not in spec.document["training"]  # the spec is not changed by a decision


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_resolved_yaml_reads_back_as_an_equal_config(path, tmp_path):
    config = resolve(load_spec(path, data_must_exist=False), SETTINGS)  # folder_digits' data is made by a command
    text = yaml.safe_dump(config.resolved(), sort_keys=False)  # as the run writes config/resolved.yaml
    again = read_resolved(text, path, SETTINGS)  # as if written where the experiment is (relative data paths)
    assert isinstance(again, Config) and again == config
    assert again.resolved() == config.resolved()


def test_configs_that_run_differently_are_not_equal():
    spec = load_spec(REPO / "experiments" / "model1.yaml")
    other = load_spec(REPO / "experiments" / "model1.yaml", ["optimizer.learning_rate=0.5"])
    assert resolve(spec, SETTINGS) != resolve(other, SETTINGS)
    assert resolve(spec, SETTINGS) != resolve(spec, Settings(**{**SETTINGS.__dict__, "seed": 1}))


# --- no raw-dict read of the experiment below the language --------------------------------------------------------

RAW = "document"  # Spec.document: the experiment as a plain dict, for the language's own use


def raw_reads(root: Path) -> list[str]:
    """Every `x.document` in runner/ outside runner/language/, as file:line."""
    found = []
    for path in sorted((root / "runner").rglob("*.py")):
        if "language" in path.relative_to(root / "runner").parts[:1]:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr == RAW:
                found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_no_code_below_the_cli_reads_the_raw_experiment():
    assert raw_reads(REPO) == []


def test_the_raw_read_check_can_fail(tmp_path):
    (tmp_path / "runner" / "training").mkdir(parents=True)
    (tmp_path / "runner" / "language").mkdir()
    (tmp_path / "runner" / "training" / "x.py").write_text("def f(spec):\n    return spec.document['data']\n")
    (tmp_path / "runner" / "language" / "y.py").write_text("def g(spec):\n    return spec.document\n")
    assert raw_reads(tmp_path) == ["runner/training/x.py:2"]
