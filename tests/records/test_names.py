"""runner.records.names holds every name xrun's records use: no "xrun." literal anywhere else in runner/, and the
names themselves as the stores already written expect them."""

import ast
from pathlib import Path

import pytest

from runner.records import local, names

RUNNER = Path(__file__).resolve().parents[2] / "runner"
NAMES = RUNNER / "records" / "names.py"


def xrun_literals(source: str, filename: str) -> list[str]:
    """file:line of every string constant (an f-string's literal parts included) that starts with "xrun."."""
    return [f"{filename}:{node.lineno}: {node.value!r}" for node in ast.walk(ast.parse(source, filename))
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("xrun.")]


def test_no_xrun_name_is_written_outside_names_py():
    modules = [path for path in sorted(RUNNER.rglob("*.py")) if path != NAMES]
    assert len(modules) > 40  # the walk found the package, not an empty folder
    found = [hit for path in modules for hit in xrun_literals(path.read_text(), str(path.relative_to(RUNNER.parent)))]
    assert found == [], "tag keys belong in runner/records/names.py:\n" + "\n".join(found)


@pytest.mark.parametrize(("source", "expected"), [
    ('TAG = "xrun.study"\n', ["m.py:1: 'xrun.study'"]),
    ('x = 1\nwhere = f"xrun.trial = {x}"\n', ["m.py:2: 'xrun.trial = '"]),
    ('where = f"tags.`{STUDY}` = 1"\n', []),
    ('hint = "pip install \'xrun[tfds]\'"\ndoc = "made by xrun."\n', []),
])
def test_the_walk_finds_plain_and_f_string_literals_with_their_line(source, expected):
    assert xrun_literals(source, "m.py") == expected


def test_tag_keys_are_those_existing_stores_hold():
    assert names.VARIANT == "xrun.variant"
    assert names.PARENT_RUN_ID == "xrun.parent_run_id"
    assert names.EXAMPLES.format(split="train") == "xrun.examples.train"
    assert names.RESOLVED_BEFORE_EPOCH.format(epoch=3) == "config/resolved.before-epoch-3.yaml"
    assert names.CHECKPOINT == "checkpoints/last.keras"


def test_the_two_heartbeats_are_apart():
    assert (names.RUN_HEARTBEAT_SECONDS, names.TRIAL_HEARTBEAT_SECONDS, names.TRIAL_GRACE_SECONDS) == (60, 30, 120)


def test_the_default_store_is_mlflow_db_under_mlruns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert local.tracking_uri() == local.default_uri() == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    assert (tmp_path / "mlruns").is_dir()
