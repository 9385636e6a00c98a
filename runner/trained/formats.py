"""The one table of export formats, in plain Python so that the CLI lists them without loading TensorFlow.

Each entry names its writer and reader in runner/trained/export.py as "module:function" strings, resolved there.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Format:
    """One `xrun export --format`: how it is named, shown and suffixed, and the functions that write and read it."""

    name: str
    label: str          # in --format's help
    suffix: str         # of the exported file; "" for a folder
    writer: str         # "module:function" (model, path, quantize, calibration) -> None
    reader: str         # "module:function" (path) -> a function from uint8 pixels to probabilities


_EXPORT = "runner.trained.export"
# A new format is an entry here and its writer and reader in export.py (tests/trained/test_formats.py checks them).
FORMATS = {entry.name: entry for entry in (
    Format("savedmodel", "SavedModel (a folder)", "", f"{_EXPORT}:_write_savedmodel", f"{_EXPORT}:_read_savedmodel"),
    Format("tflite", "TFLite", ".tflite", f"{_EXPORT}:_write_tflite", f"{_EXPORT}:_read_tflite"),
    Format("onnx", "ONNX (needs the export extra: tf2onnx, onnxruntime)", ".onnx", f"{_EXPORT}:_write_onnx",
           f"{_EXPORT}:_read_onnx"),
)}


def help_text() -> str:
    """`SavedModel (a folder), TFLite or ONNX (...)`: the formats' labels as one sentence."""
    labels = [entry.label for entry in FORMATS.values()]
    return f"{', '.join(labels[:-1])} or {labels[-1]}."
