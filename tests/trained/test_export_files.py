"""What an exported file says about itself, and what exporting prints (issue 22, items 27 and 28)."""

import json
import os
import subprocess
import sys

import pytest
from helpers import DATA_DIR
from test_use_inputs import model_of

CLASSES = json.dumps(list("0123456789"))


def export(tmp_path, fmt: str) -> tuple[subprocess.CompletedProcess, str]:
    """`xrun export` of a 28x28 model file in its own process, as a user runs it (no test's log level)."""
    model = tmp_path / "m.keras"
    model_of(28, 28).keras.save(model)
    output = tmp_path / f"m.{fmt}"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-m", "runner.cli", "export", str(model), "--format", fmt, "--data",
                           "mnist", "--data-dir", DATA_DIR, "--check-images", "8", "-o", str(output)],
                          capture_output=True, text=True, timeout=300, env=env)
    return done, str(output)


@pytest.mark.slow
def test_the_onnx_file_names_its_output_and_describes_its_input_and_classes(tmp_path):
    pytest.importorskip("tf2onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    done, output = export(tmp_path, "onnx")
    assert done.returncode == 0 and done.stderr == "", done.stderr[-3000:]  # no converter notices, no warnings
    session = onnxruntime.InferenceSession(output, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["pixels"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    assert session.get_modelmeta().custom_metadata_map == {
        "class_names": CLASSES, "input": "uint8 pixels 0-255, shape (N, 28, 28)",
        "output": "class probabilities, shape (N, 10), in class_names order"}


@pytest.mark.slow
def test_a_tflite_export_prints_only_what_it_wrote(tmp_path):
    done, output = export(tmp_path, "tflite")
    assert done.returncode == 0 and done.stderr == "", done.stderr[-3000:]
    assert done.stdout.startswith(f"wrote {output} (")
