"""`xrun export` refuses an output it could not write before it converts anything (issue 22, item 3)."""

import json
import os
from pathlib import Path

import pytest
from helpers import DATA_DIR, xrun
from test_use_inputs import model_of

from runner.trained import export as ex
from runner.trained import use


@pytest.fixture
def never_converted(monkeypatch):
    """Loading gives an untrained 28x28 model; any converter called fails the test."""
    monkeypatch.setattr(use, "load", lambda *_: model_of(28, 28))

    def convert(*_):
        raise AssertionError("converted before the output was checked")
    for name in ("_write_tflite", "_write_onnx", "_write_savedmodel"):
        monkeypatch.setattr(ex, name, convert)


def export_error(*args) -> tuple[int, str]:
    code, out, err = xrun("export", "0123abcd", "--data", "mnist", "--check-images", 8, "--data-dir", DATA_DIR, *args)
    assert out == "" and len(err.splitlines()) == 1, err
    return code, err.strip()


def test_an_output_under_a_regular_file_is_refused_before_converting(tmp_path, never_converted):
    (tmp_path / "afile").write_text("x")
    output = tmp_path / "afile" / "sub" / "m.tflite"
    assert export_error("--format", "tflite", "-o", output) == (
        2, f"{output}: {tmp_path / 'afile'} is a file, not a folder; give another --output")


def test_a_file_output_that_is_a_folder_is_refused_even_with_force(tmp_path, never_converted):
    (tmp_path / "m.tflite").mkdir()
    assert export_error("--format", "tflite", "-o", tmp_path / "m.tflite", "--force") == (
        2, f"{tmp_path / 'm.tflite'}: is a folder; give a file name, e.g. {tmp_path / 'm.tflite' / 'model'}")


def test_an_output_in_a_folder_that_is_not_writable_is_refused(tmp_path, never_converted, monkeypatch):
    # The tests run as root, who may write into a chmod 555 folder: os.access, which the check asks (and which
    # says no for a read-only file system even to root), is told that this folder is not writable.
    readonly = tmp_path / "ro"
    readonly.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda given, mode: Path(given) != readonly and real_access(given, mode))
    output = readonly / "new" / "m.onnx"
    assert export_error("--format", "onnx", "-o", output) == (
        2, f"{output}: the folder {readonly} is not writable; give another --output")
    assert not (readonly / "new").exists()


def test_a_folder_that_can_be_made_is_made_and_written(tmp_path, monkeypatch):
    monkeypatch.setattr(use, "load", lambda *_: model_of(28, 28))
    output = tmp_path / "new" / "deeper" / "m"
    code, out, err = xrun("export", "0123abcd", "--data", "mnist", "--check-images", 8, "--data-dir", DATA_DIR,
                          "--format", "savedmodel", "-o", output)
    assert code == 0 and out.startswith(f"wrote {output} ("), err
    assert (output / "saved_model.pb").is_file()
    assert json.loads(Path(f"{output}.json").read_text())["check"]["images"] == 8
