"""Export a trained model as a SavedModel, TFLite (optionally quantized) or ONNX file, each checked against Keras
before it is put in place."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runner.errors import XrunError
from runner.language.reference import resolve
from runner.model import standalone
from runner.trained.evaluate import Labelled
from runner.trained.formats import FORMATS
from runner.trained.use import Model
from runner.training import multilabel
from runner.training.data import load_dataset

# Largest |exported - Keras| allowed in any probability on the check images. float32 exports compute the same
# function with other kernels (differences of a few float32 ulps); float16 weights move outputs by ~1e-3.
# int8 changes the arithmetic itself: there the accuracy change is what is measured, and bounded by max_drop.
TOLERANCE = {None: 1e-4, "float16": 2e-2, "int8": None}
CALIBRATION_IMAGES = 200


@dataclass
class Check:
    images: int
    max_difference: float
    keras_accuracy: float
    exported_accuracy: float
    agreement: float                  # share of images whose top class is the same
    tolerance: float | None


@dataclass
class Exported:
    path: Path
    description: Path                 # PATH.json: class names, input, output, the check
    check: Check
    bytes: int


def default_path(model: Model, fmt: str, quantize: str | None) -> Path:
    name = model.logged.name if model.logged else Path(model.source).stem
    return Path(f"{name}{'-' + quantize if quantize else ''}{FORMATS[fmt].suffix or '_savedmodel'}")


def export(model: Model, fmt: str, check_data: Labelled, *, quantize: str | None = None, output: Path | None = None,
           force: bool = False, max_drop: float = 0.02, data_dir: str | None = None) -> Exported:
    """Write MODEL in `fmt` to a temporary place, check it on `check_data`, then move it to `output`."""
    if quantize and fmt != "tflite":
        raise XrunError(f"--quantize {quantize} applies to --format tflite only", hint="drop --quantize")
    path = Path(output) if output else default_path(model, fmt, quantize)
    description = path.with_name(path.name + ".json")
    _refuse_overwrite([path, description], force)
    _refuse_unwritable(path, folder=not FORMATS[fmt].suffix)
    model.keras(check_data.pixels[:1])  # a loaded model has never been called, which Keras's ONNX export needs
    with tempfile.TemporaryDirectory(prefix="xrun-export-") as tmp, _converters_quiet():
        built = Path(tmp) / ("model" + FORMATS[fmt].suffix)
        resolve(FORMATS[fmt].writer)(model, built, quantize, lambda: _calibration(model, check_data, data_dir))
        check = _check(model, resolve(FORMATS[fmt].reader)(built), check_data, TOLERANCE[quantize], max_drop)
        _replace(built, path)
    description.write_text(json.dumps(_description(model, fmt, quantize, check), indent=2) + "\n")
    return Exported(path, description, check, _size(path))


def _refuse_overwrite(paths: list[Path], force: bool) -> None:
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        raise XrunError("already exists", where=str(existing[0]),
                        hint="give another --output, or --force to replace it")


def _refuse_unwritable(path: Path, folder: bool) -> None:
    """Before converting (minutes, for a large model): the output's folder exists or can be made, and is writable,
    and a file's output is not a folder."""
    if path.is_dir() and not folder:
        raise XrunError("is a folder", where=str(path), hint="give a file name, e.g. " + str(path / "model"))
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise XrunError(f"{parent} is a file, not a folder", where=str(path), hint="give another --output")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise XrunError(f"the folder {parent} is not writable", where=str(path), hint="give another --output")


def _replace(built: Path, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    shutil.move(str(built), str(path))


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def _description(model: Model, fmt: str, quantize: str | None, check: Check) -> dict:
    return {"format": fmt, "quantize": quantize, "source": model.source,
            "model_uri": model.logged.model_uri if model.logged else None, **_interface(model), "check": vars(check)}


def _interface(model: Model) -> dict:
    """What goes in and what comes out: in PATH.json, and in the ONNX file's own metadata."""
    return {"class_names": model.class_names,
            "input": f"uint8 pixels 0-255, shape (N, {', '.join(map(str, model.image_shape))})",
            "output": f"class probabilities, shape (N, {len(model.class_names)}), in class_names order"}


@contextlib.contextmanager
def _converters_quiet():
    """The converters' notices kept off the terminal: TensorFlow's C++ INFO/WARNING lines (written to file descriptor
    2, as at TensorFlow's start-up: see runner/training/settings.import_tensorflow), tf2onnx's logging, and the
    FutureWarning of Keras's np.object patch for tf2onnx. Errors still raise, and say what went wrong."""
    sys.stderr.flush()
    saved = os.dup(2)
    loggers = {name: logging.getLogger(name).level for name in ("tf2onnx", "absl")}
    try:
        with open(os.devnull, "w") as devnull, warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*np.object.*", FutureWarning)
            for name in loggers:
                logging.getLogger(name).setLevel(logging.ERROR)
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        for name, level in loggers.items():
            logging.getLogger(name).setLevel(level)


# --- the check ------------------------------------------------------------------------------------------

def _check(model: Model, run_exported, data: Labelled, tolerance: float | None, max_drop: float) -> Check:
    expected = model.keras.predict(data.pixels, verbose=0)
    got = np.asarray(run_exported(data.pixels), dtype=np.float32)
    check = Check(len(data.labels), float(np.abs(got - expected).max()), _accuracy(expected, data.labels),
                  _accuracy(got, data.labels), float(np.mean(got.argmax(1) == expected.argmax(1))), tolerance)
    if tolerance is not None and check.max_difference > tolerance:
        raise XrunError(f"the exported model's outputs differ from Keras's by up to {check.max_difference:.2e} on "
                        f"{check.images} images, more than the {tolerance:.0e} allowed; nothing was written",
                        hint="report it: the converter changed the model")
    if check.keras_accuracy - check.exported_accuracy > max_drop:
        raise XrunError(f"the exported model's accuracy is {check.exported_accuracy:.4f}, Keras's "
                        f"{check.keras_accuracy:.4f} on {check.images} images: a drop of more than {max_drop}; "
                        "nothing was written", hint="use --quantize float16, or raise --max-drop if that is fine")
    return check


def _accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    if multilabel.is_multi_label(labels):  # each label decided at 0.5: the share right, as training's accuracy
        return float(np.mean(multilabel.decide(probabilities, multilabel.DEFAULT_THRESHOLD) == labels))
    return float(np.mean(probabilities.argmax(1) == labels))


def _calibration(model: Model, check_data: Labelled, data_dir: str | None) -> np.ndarray:
    """Images that int8 quantization measures activation ranges on: the run's training images where known (so
    that the check images stay unseen), else the check images themselves."""
    dataset = model.logged.params.get("data.dataset") if model.logged else None
    if dataset:
        return load_dataset(dataset, data_dir).x_train[:CALIBRATION_IMAGES]
    return check_data.pixels[:CALIBRATION_IMAGES]


# --- the formats ----------------------------------------------------------------------------------------

def _write_savedmodel(model: Model, path: Path, quantize, calibration) -> None:
    model.keras.export(str(path), format="tf_saved_model", verbose=False)


def _read_savedmodel(path: Path):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    return lambda pixels: loaded.serve(tf.constant(pixels)).numpy()


def _write_tflite(model: Model, path: Path, quantize: str | None, calibration) -> None:
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="xrun-savedmodel-") as tmp:
        model.keras.export(tmp, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":  # weights and activations in int8, ranges measured on calibration images
            images = calibration()
            converter.representative_dataset = lambda: ([images[i:i + 1]] for i in range(len(images)))
        path.write_bytes(converter.convert())


def _read_tflite(path: Path):
    import tensorflow as tf

    def run(pixels: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():  # "deprecated, use ai_edge_litert": TF 2.21 still ships it, and it works
            warnings.simplefilter("ignore", UserWarning)
            interpreter = tf.lite.Interpreter(model_path=str(path))
        source, sink = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        interpreter.resize_tensor_input(source["index"], pixels.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(source["index"], pixels.astype(source["dtype"]))
        interpreter.invoke()
        return interpreter.get_tensor(sink["index"])
    return run


def _write_onnx(model: Model, path: Path, quantize, calibration) -> None:
    try:
        import onnxruntime  # noqa: F401 - the check needs it; say so before converting
        import tf2onnx  # noqa: F401
    except ImportError as exc:
        raise XrunError(f"ONNX export needs tf2onnx and onnxruntime ({exc})",
                        hint="pip install 'xrun[export]' (tf2onnx, onnx, onnxruntime)") from None
    model.keras.export(str(path), format="onnx", verbose=False)
    _describe_onnx(path, _interface(model))


def _describe_onnx(path: Path, interface: dict) -> None:
    """The output named `probabilities` (not the converter's `Identity:0`), and the class names and the input and
    output described in the file's metadata_props, as onnxruntime's modelmeta.custom_metadata_map shows them."""
    import onnx

    proto = onnx.load(str(path))
    old = proto.graph.output[0].name
    for node in proto.graph.node:
        node.output[:] = [standalone.OUTPUT_NAME if name == old else name for name in node.output]
        node.input[:] = [standalone.OUTPUT_NAME if name == old else name for name in node.input]
    proto.graph.output[0].name = standalone.OUTPUT_NAME
    for key, value in interface.items():
        proto.metadata_props.add(key=key, value=value if isinstance(value, str) else json.dumps(value))
    onnx.save(proto, str(path))


def _read_onnx(path: Path):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda pixels: session.run(None, {name: pixels})[0]
