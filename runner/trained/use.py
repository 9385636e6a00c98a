"""Use a trained model: load it (run id, models:/ URI or .keras file), read images to give it, and predict."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from runner.errors import XrunError
from runner.language.datasets import DATASETS
from runner.model import standalone
from runner.model import yogi as _yogi  # noqa: F401 - registers Yogi, which an older run's model was saved with
from runner.records import models
from runner.text import one_line
from runner.trained import multilabel_report
from runner.training import multilabel

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class Model:
    """A model ready to use: raw uint8 images in, probabilities out, with its class names and where it came from."""

    keras: keras.Model
    class_names: list[str]
    source: str                                # what the user named
    logged: models.LoggedModel | None = None   # the MLflow side, unless it came from a file

    @property
    def image_shape(self) -> tuple[int, ...]:
        return standalone.image_shape(self.keras)

    @property
    def resizing(self) -> Resizing | None:
        """How training resized its images (data.image_size), so that images of other sizes are taken alike."""
        params = self.logged.params if self.logged else {}
        size = json.loads(params.get("data.image_size") or "null")
        if not size:
            return None
        return Resizing(tuple(size), params.get("data.interpolation", "bilinear"),
                        params.get("data.crop_to_aspect_ratio") == "true")

    @property
    def multi_label(self) -> bool:
        """Trained on multi-label data (its logged metadata says so): an independent probability per label."""
        return bool(self.logged and self.logged.metadata.get("multi_label"))

    @property
    def label(self) -> str:
        """How messages name it: `tiny (run 597a1b18)`, or the file."""
        if self.logged and self.logged.run_id:
            return f"{self.logged.name} (run {self.logged.run_id[:8]})"
        return self.source


def load(model: str, uri: str | None = None) -> Model:
    """MODEL as given on the command line: a .keras file, a models:/ or runs:/ URI, or a run id (or prefix)."""
    if model.endswith(".keras") or Path(model).is_file():
        return _from_file(Path(model))
    logged = models.find(model, uri)
    try:
        loaded = models.load_keras(logged)
    except Exception as exc:  # noqa: BLE001 - a model from another Keras fails in many ways: one line for all
        raise XrunError(f"{model}: the logged model {logged.model_uri} does not load ({one_line(exc, 200, '...')})",
                        hint="it may come from another Keras version; train the run again") from None
    names = logged.metadata.get("class_names") or _dataset_classes(logged.params.get("data.dataset"), loaded)
    return Model(_usable(loaded), list(names), model, logged)


def _from_file(path: Path) -> Model:
    if not path.is_file():
        raise XrunError("no such file", where=str(path), hint="give a .keras file, a run id or a models:/ URI")
    try:
        loaded = keras.saving.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras' errors for a bad file vary by what is wrong: one line for all
        raise XrunError(f"not a Keras model file ({one_line(exc, 200, '...')})", where=str(path),
                        hint="give a .keras file saved by Keras 3 (model.save), a run id or a models:/ URI") from None
    return Model(_usable(loaded), _dataset_classes(None, loaded), str(path))


def _usable(model: keras.Model) -> keras.Model:
    """A model that takes raw pixels; one that takes scaled floats (a training checkpoint) gets the scaling."""
    if standalone.is_standalone(model):
        return model
    shape = tuple(model.input_shape[1:])
    return standalone.standalone(model, shape[:-1] if shape[-1:] == (1,) else shape)


def _dataset_classes(dataset: str | None, model: keras.Model) -> list[str]:
    """The class names of the run's dataset; for a bare file, the class numbers."""
    if dataset in DATASETS:
        return list(DATASETS[dataset]["class_names"])
    return [str(i) for i in range(standalone.num_classes(model))]


# --- inputs ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Resizing:
    """A run's data.image_size, data.interpolation and data.crop_to_aspect_ratio."""

    size: tuple[int, int]         # (height, width)
    interpolation: str
    crop: bool

    def note(self, count: int) -> str:
        """The one line that says images were resized, and how."""
        how = f"{self.interpolation}{', centre-cropped to the aspect ratio' if self.crop else ''}"
        return (f"resized {count} image{'s' if count != 1 else ''} to {self.size[1]}x{self.size[0]} ({how}), "
                "as training resized its images (data.image_size)")


@dataclass
class Images:
    names: list[str]      # a file's path, or `file.npy[i]` for one image of an array
    pixels: np.ndarray    # uint8, (N, *image_shape)
    notes: list[str] = field(default_factory=list)   # for stderr: e.g. how many images were resized


@dataclass
class ImageReader:
    """Reads image files for one model: at its size, or resized as its training resized them; counts those."""

    image_shape: tuple[int, ...]
    resizing: Resizing | None = None
    resized: int = 0

    def read(self, path: Path) -> np.ndarray:
        size, pixels = _open(path, self.image_shape)
        if size == tuple(self.image_shape[:2]):
            return pixels.reshape(self.image_shape)
        if self.resizing is None:
            h, w = size
            raise XrunError(f"the image is {w}x{h} pixels; the model takes {self.image_shape[1]}x{self.image_shape[0]}",
                            where=str(path), hint=f"resize or crop it to {self.image_shape[1]}x{self.image_shape[0]} "
                                                  "first")
        self.resized += 1
        return _as_training_read(path, self.image_shape, self.resizing)

    def notes(self) -> list[str]:
        return [self.resizing.note(self.resized)] if self.resized else []


def reader(model: Model) -> ImageReader:
    return ImageReader(model.image_shape, model.resizing)


def read_inputs(paths: list[str], image_reader: ImageReader) -> Images:
    """Image files (PNG, JPEG), folders of them (searched recursively), and .npy arrays of uint8 images."""
    names, arrays = [], []
    for given in paths:
        for path in _files(Path(given)):
            found_names, pixels = _read(path, image_reader)
            names += found_names
            arrays.append(pixels)
    return Images(names, np.concatenate(arrays), image_reader.notes())


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not found:
            raise XrunError("no PNG or JPEG images in this folder", where=str(path),
                            hint="give image files, a folder of them or a .npy of uint8 images")
        return found
    if not path.exists():
        raise XrunError("no such file or folder", where=str(path))
    return [path]


def _read(path: Path, image_reader: ImageReader) -> tuple[list[str], np.ndarray]:
    if path.suffix.lower() == ".npy":
        pixels = _array(path, image_reader.image_shape)
        return [f"{path}[{i}]" for i in range(len(pixels))], pixels
    return [str(path)], image_reader.read(path)[None]


def _open(path: Path, image_shape: tuple[int, ...]) -> tuple[tuple[int, int], np.ndarray]:
    """(height, width) and uint8 pixels: grey for a one-channel model (an RGB file is converted, as PIL does), RGB
    for three. A file whose header claims more pixels than Pillow's bomb limit is refused before it is decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # past the limit: a warning, then an error
            with Image.open(path) as image:
                mode = "L" if len(image_shape) == 2 or image_shape[-1] == 1 else "RGB"
                pixels = np.asarray(image.convert(mode), dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise XrunError(f"too large to read safely ({one_line(exc, 200, '...')})", where=str(path),
                        hint=f"give images of the model's size, {image_shape[1]}x{image_shape[0]}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise XrunError(f"not an image xrun can read ({one_line(exc, 200, '...')})", where=str(path),
                        hint="give PNG or JPEG files, a folder of them, or a .npy of uint8 images") from None
    return pixels.shape[:2], pixels


def _as_training_read(path: Path, image_shape: tuple[int, ...], resizing: Resizing) -> np.ndarray:
    """The file decoded and resized by training's own code (runner/training/sources.py), so the same pixels."""
    import tensorflow as tf

    from runner.training.sources import ImageFiles

    channels = 1 if len(image_shape) == 2 else image_shape[-1]
    files = ImageFiles(np.array([str(path)]), resizing.size, channels, True, resizing.crop, resizing.interpolation)
    return files.decode(tf.constant(str(path))).numpy().reshape(image_shape)


def _array(path: Path, image_shape: tuple[int, ...]) -> np.ndarray:
    """A .npy of one image or a stack of them, uint8 0-255 as the datasets store them."""
    try:
        pixels = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise XrunError(f"not a .npy array ({one_line(exc, 200, '...')})", where=str(path),
                        hint="save images with numpy.save(path, uint8_array)") from None
    if pixels.dtype != np.uint8:
        raise XrunError(f"the array holds {pixels.dtype}; the model takes uint8 pixels 0-255", where=str(path),
                        hint="save the raw images (numpy.uint8), not scaled floats: the model scales them itself")
    if pixels.shape == tuple(image_shape):
        pixels = pixels[None]
    if pixels.shape[1:] != tuple(image_shape) and pixels.shape[1:] != (*image_shape, 1):
        raise XrunError(f"the array's shape is {pixels.shape}; the model takes images of shape {tuple(image_shape)}",
                        where=str(path), hint=f"give an array of shape (N, {', '.join(map(str, image_shape))})")
    return pixels.reshape((len(pixels), *image_shape))


# --- predicting -----------------------------------------------------------------------------------------

@dataclass
class Prediction:
    name: str
    top: list[tuple[str, float]]   # (class name, probability), most likely first


def predict(model: Model, images: Images, top_k: int = 3, batch_size: int = 256) -> list[Prediction]:
    probabilities = model.keras.predict(images.pixels, batch_size=batch_size, verbose=0)
    k = min(top_k, probabilities.shape[1])
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return [Prediction(name, [(model.class_names[c], float(p[c])) for c in best])
            for name, p, best in zip(images.names, probabilities, order)]


def label_predictions(model: Model, images: Images, given: tuple[str, ...],
                      batch_size: int = 256) -> tuple[list[dict], list[dict]]:
    """A multi-label model's predictions (rows for the table and CSV, and JSON): the labels whose probability
    reaches its threshold (`--threshold` texts: `0.3`, `cat=0.3`; 0.5 by default)."""
    probabilities = model.keras.predict(images.pixels, batch_size=batch_size, verbose=0)
    limits = multilabel.thresholds(given, model.class_names)
    return (multilabel_report.prediction_rows(images.names, probabilities, model.class_names, limits),
            multilabel_report.prediction_json(images.names, probabilities, model.class_names, limits))


def prediction_rows(predictions: list[Prediction]) -> list[dict]:
    """One flat row per image, for the table and CSV: file, class_1, p_1, class_2, p_2, ..."""
    return [{"file": p.name, **{k: v for i, (name, prob) in enumerate(p.top, 1)
                                for k, v in ((f"class_{i}", name), (f"p_{i}", round(prob, 4)))}}
            for p in predictions]


def prediction_json(predictions: list[Prediction]) -> list[dict]:
    return [{"file": p.name, "top": [{"class": name, "probability": prob} for name, prob in p.top]}
            for p in predictions]


def text_table(rows: list[dict]) -> str:
    """Columns padded to their widest cell, numbers right-aligned, probabilities with 4 decimals."""
    if not rows:
        return ""
    cells = [list(rows[0])] + [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in r.values()] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    numeric = [isinstance(v, float) for v in rows[0].values()]
    lines = ["  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(row, widths, numeric)).rstrip()
             for row in cells]
    return "\n".join(lines) + "\n"
