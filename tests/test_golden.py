"""Every experiment gives the summary and the seeded first-epoch loss recorded in tests/golden/experiments.json.

The golden file was made by tests/golden/make_golden.py from the code before a refactoring; the same functions
produce the values here from the current code, so a refactoring that changes what a user sees fails here.
"""

import json

import pytest
from golden import make_golden

GOLDEN = json.loads(make_golden.GOLDEN.read_text())
FILES = make_golden.experiment_files(make_golden.HERE.parent.parent)
# Two runs of the golden code gave the same loss to the last bit (see make_golden --runs 2); the tolerance leaves
# room only for float32 rounding of a reordered sum, never for another initialisation, batch order or model.
RELATIVE_TOLERANCE = 1e-5
REMAKE = "record it with tests/golden/make_golden.py (see its docstring), from the code before your change"


def golden(file) -> dict:
    assert file.name in GOLDEN, f"{file.name} has no golden values: {REMAKE}"
    return GOLDEN[file.name]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """One store and one set of made-up image folders for all the golden runs."""
    return tmp_path_factory.mktemp("golden")


def test_every_golden_entry_is_an_experiment():
    assert set(GOLDEN) <= {file.name for file in FILES}, f"golden values of files no longer there: {REMAKE}"


@pytest.mark.parametrize("file", FILES, ids=[f.stem for f in FILES])
def test_summary_json_is_the_golden_one(file):
    expected = golden(file)["summary"]
    assert make_golden.summary(file) == expected


@pytest.mark.slow
@pytest.mark.parametrize("file", FILES, ids=[f.stem for f in FILES])
def test_first_epoch_loss_is_the_golden_one(file, scratch):
    expected = golden(file)["first_epoch_loss"]
    assert make_golden.first_epoch_loss(file, scratch) == pytest.approx(expected, rel=RELATIVE_TOLERANCE)
