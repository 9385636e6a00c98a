"""The one trained sweep that the trial and report tests read, run once per session (it trains)."""

import pytest
from helpers import store_uri, xrun
from sweep_cases import CONV, GRID, sweep_runs, write


@pytest.fixture(scope="session")
def swept(tmp_path_factory):
    """A 4-point grid whose two kernel-29 points fail, run, then run again (the study has nothing left)."""
    folder = tmp_path_factory.mktemp("sweep")
    uri = store_uri(folder)
    write(folder, "conv.yaml", CONV)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.delenv("XRUN_STUDY_STORAGE", raising=False)
        first = xrun("sweep", "conv.yaml", *GRID, "--tracking-uri", uri)
        first_runs = sweep_runs(uri)
        second = xrun("sweep", "conv.yaml", *GRID, "--tracking-uri", uri, "--format", "json")
    # The working folder is restored before the other tests of the session run.
    return {"uri": uri, "folder": folder, "first": first, "first_runs": first_runs, "second": second,
            "second_runs": sweep_runs(uri)}
