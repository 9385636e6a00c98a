"""Import TensorFlow quietly, once, for the commands that build or train models."""

from __future__ import annotations

import os
import sys


def import_tensorflow():
    """TensorFlow, imported with its C++ start-up notices (CUDA probing, oneDNN, CPU features) silenced.

    Those lines are written to file descriptor 2 before any Python logging exists, so the only way to keep them
    out of a user's terminal is to point that descriptor elsewhere for the import. Python errors still raise.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return tensorflow
