"""The one table of export formats (runner/trained/formats.py): what the CLI offers, and every entry's writer and
reader resolving to functions of export.py."""

import inspect

import pytest
from click.testing import CliRunner

from runner.cli import cli
from runner.language.reference import resolve
from runner.trained.formats import FORMATS, help_text


def test_the_cli_offers_exactly_the_table_s_formats_with_their_labels():
    out = CliRunner().invoke(cli, ["export", "--help"]).output
    assert "--format [savedmodel|tflite|onnx]" in out
    assert help_text() == "SavedModel (a folder), TFLite or ONNX (needs the export extra: tf2onnx, onnxruntime)."


@pytest.mark.parametrize("name", ["savedmodel", "tflite", "onnx"])
def test_each_format_s_writer_and_reader_resolve(name):
    entry = FORMATS[name]
    assert entry.name == name
    writer, reader = resolve(entry.writer), resolve(entry.reader)  # imports TensorFlow: export.py's code
    assert (writer.__module__, reader.__module__) == ("runner.trained.export", "runner.trained.export")
    assert list(inspect.signature(writer).parameters) == ["model", "path", "quantize", "calibration"]
    assert list(inspect.signature(reader).parameters) == ["path"]


def test_each_format_has_its_own_suffix():
    assert {name: entry.suffix for name, entry in FORMATS.items()} == {"savedmodel": "", "tflite": ".tflite",
                                                                        "onnx": ".onnx"}
