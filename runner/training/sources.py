"""The loaders of the data sources (built-in datasets, image folders, NumPy arrays, CSV lists of images, TFDS),
named by the one table of data sources, `runner.language.data_facts.DATA_SOURCES`.

Each source gives the same `Data`: x arrays (uint8 scaled by 1/255, float taken as is) or `ImageFiles` that tf.data
decodes as it streams, int labels, class names, and the facts a run records (where, fingerprint, split sizes).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from runner.errors import did_you_mean
from runner.language import data_facts as facts
from runner.language.advice import print_warnings
from runner.language.data_facts import data_error
from runner.language.labels import split_labels
from runner.language.reference import resolve
from runner.language.spec import Spec
from runner.text import dims
from runner.training.data import load_dataset
from runner.training.splits import held_out


@dataclass(frozen=True, eq=False)
class ImageFiles:
    """Images still on disk, and how each is decoded; indexing decodes (for plots), `subset` stays lazy."""

    paths: np.ndarray                 # str paths
    size: tuple[int, int]             # (height, width) every image comes out as
    channels: int
    resize: bool                      # False: the files already have `size`
    crop_to_aspect_ratio: bool = False
    interpolation: str = "bilinear"
    cache: str = "memory"

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, index) -> "ImageFiles":
        return ImageFiles(self.paths[index], self.size, self.channels, self.resize, self.crop_to_aspect_ratio,
                          self.interpolation, self.cache)

    def __getitem__(self, index) -> np.ndarray:
        if np.ndim(self.paths[index]) == 0:  # one image: [height, width, channels]
            return self.decode(tf.constant(self.paths[index])).numpy()
        chosen = self.paths[index]
        if len(chosen) == 0:
            return np.zeros((0, *self.size, self.channels), np.uint8)
        return np.stack([self.decode(tf.constant(p)).numpy() for p in chosen])

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    @property
    def shape(self) -> tuple:
        return (len(self), *self.size, self.channels)

    def decode(self, path: tf.Tensor) -> tf.Tensor:
        """One file -> uint8 [height, width, channels], as every epoch sees it."""
        raw = tf.io.read_file(path)
        rgb_only = tf.strings.regex_full_match(tf.strings.lower(path), r".*\.(gif|bmp)")
        image = tf.cond(rgb_only, lambda: self._rgb_decoded(raw),
                        lambda: tf.io.decode_image(raw, channels=self.channels, expand_animations=False))
        image.set_shape([None, None, self.channels])
        if not self.resize:
            return tf.ensure_shape(image, [*self.size, self.channels])
        if self.crop_to_aspect_ratio:
            image = _centre_crop(image, self.size)
        shape = tf.shape(image)
        same = tf.logical_and(tf.equal(shape[0], self.size[0]), tf.equal(shape[1], self.size[1]))
        return tf.cond(same, lambda: image, lambda: self._resized(image))  # most folders need no resizing

    def _resized(self, image: tf.Tensor) -> tf.Tensor:
        resized = tf.image.resize(image, self.size, method=self.interpolation)
        return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


    def _rgb_decoded(self, raw: tf.Tensor) -> tf.Tensor:
        """GIF (first frame) and BMP: TensorFlow decodes them only as RGB, so grayscale is converted here."""
        frame = tf.io.decode_image(raw, channels=3, expand_animations=False)
        if self.channels == 3:
            return frame
        gray = tf.image.rgb_to_grayscale(tf.cast(frame, tf.float32))
        return tf.cast(tf.clip_by_value(tf.round(gray), 0, 255), tf.uint8)


def _centre_crop(image: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """The largest centred window with the aspect ratio of `size` (Keras's crop_to_aspect_ratio)."""
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float64), tf.cast(shape[1], tf.float64)
    target = size[1] / size[0]
    crop_h = tf.cast(tf.minimum(h, w / target), tf.int32)
    crop_w = tf.cast(tf.minimum(w, h * target), tf.int32)
    top, left = (shape[0] - crop_h) // 2, (shape[1] - crop_w) // 2
    return image[top:top + crop_h, left:left + crop_w]


@dataclass(frozen=True, eq=False)
class Data:
    """A run's examples from any source; x_val is None where the source has no validation split of its own."""

    name: str
    kind: str                         # the data.source: builtin, image_folder, arrays, csv
    source: str                       # where it was read from
    x_train: object = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: object = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    class_names: tuple[str, ...]
    shape: tuple[int, ...]            # one example, (height, width, channels)
    fingerprint: str
    x_val: object = field(default=None, repr=False)
    y_val: np.ndarray | None = field(default=None, repr=False)
    skipped: tuple[str, ...] = ()     # unreadable files left out (on_bad_file: skip)
    path: str = ""

    def tags(self) -> dict:
        tags = {"dataset.fingerprint": self.fingerprint, "dataset.source": self.source, "dataset.name": self.name,
                "dataset.kind": self.kind, "dataset.classes": ",".join(self.class_names),
                "dataset.shape": dims(self.shape)}
        if self.path:
            tags["dataset.path"] = self.path
        if facts.DATA_SOURCES[self.kind].image_files:
            tags["dataset.skipped_files"] = len(self.skipped)
        return tags


def load(spec: Spec, data_dir: str | None, seed: int) -> Data:
    """The data section's examples, checked, in the order training uses them."""
    data = dict(spec.data.options)
    return resolve(facts.DATA_SOURCES[data["source"]].loader)(data, spec.locate, data_dir, seed)


# --- builtin ----------------------------------------------------------------------------------------------------

def load_builtin(data: dict, locate, data_dir: str | None, seed: int) -> Data:
    d = load_dataset(data["dataset"], data_dir)
    shape = (*d.x_train.shape[1:], 1)
    return Data(d.name, "builtin", d.source, d.x_train, d.y_train, d.x_test, d.y_test, d.class_names, shape,
                d.fingerprint)


# --- image files: folders and CSV lists --------------------------------------------------------------------------

def load_image_folder(data: dict, locate, data_dir: str | None, seed: int) -> Data:
    root = facts.data_path(data, locate)
    layout = facts.folder_layout(root, locate)
    names = tuple(layout["train"])
    # In order of file name (then class), as exported from a built-in dataset; training shuffles anyway.
    splits = {split: sorted(((f, names.index(c)) for c, files in classes.items() for f in files),
                            key=lambda row: (row[0].name, row[1]))
              for split, classes in layout.items()}
    return _from_files(data, locate, splits, names, seed, root, root.name)


def load_csv(data: dict, locate, data_dir: str | None, seed: int) -> Data:
    path = facts.data_path(data, locate)
    rows = facts.csv_rows(path, locate, empty_labels=bool(data.get("multi_label")))
    names = facts.csv_class_names(rows, data, locate)
    target = _label_row(names, data["label_separator"]) if data.get("multi_label") else _class_index(rows, names)
    # In order of file name (then class), as a folder's images are: the same images give the same run either way.
    listed = {split: sorted(((p, target(label)) for p, label, s in rows if s == split),
                            key=lambda row: (row[0].name, row[1]))
              for split in facts.SPLIT_FOLDERS if any(s == split for _, _, s in rows)}
    missing = [p for p, _, _ in rows if not p.is_file()]
    if missing and data["on_bad_file"] == "fail":
        raise data_error(f"{missing[0]} (listed in {path.name}) does not exist"
                         + (f", nor do {len(missing) - 1} more" if len(missing) > 1 else ""), locate,
                         "fix the paths (they are relative to the CSV), or set data.on_bad_file: skip", "path")
    if "train" not in listed:
        raise data_error(f"{path} lists no training images", locate, "mark some rows 'train' (or give no split)",
                         "path")
    return _from_files(data, locate, listed, names, seed, path, path.stem)


def _class_index(rows: list, names: tuple):
    """A CSV label's class number: the number itself where all labels are numbers, else its place in `names`."""
    numeric = all(label.isdigit() for _, label, _ in rows)
    return lambda label: int(label) if numeric else names.index(label)


def _label_row(names: tuple, separator: str):
    """A multi-label CSV cell (`cat;dog`) as a 0/1 tuple over `names`."""
    def row(cell: str) -> tuple:
        found = set(split_labels(cell, separator))
        return tuple(int(name in found) for name in names)
    return row


def _from_files(data: dict, locate, splits: dict, names: tuple, seed: int, where: Path, name: str) -> Data:
    where = where.resolve()
    scanned = {split: _scan(rows, data, locate) for split, rows in splits.items()}
    bad = [found for _, _, bad in scanned.values() for found in bad]
    if bad and data["on_bad_file"] == "fail":  # all of them at once: one fix-and-retry, not one per file
        raise data_error(_unreadable(bad), locate, "fix or remove the files, or set data.on_bad_file: skip"
                         if len(bad) > 1 else "fix or remove the file, or set data.on_bad_file: skip", "path")
    skipped = tuple(str(p) for p, _ in bad)
    size = _common_size(scanned, data, locate)
    parts = {split: (np.array([str(r[0]) for r in rows]), _targets([r[1] for r in rows]))
             for split, (rows, _, _) in scanned.items()}
    if "test" not in parts:
        parts["train"], parts["test"] = _hold_out(*parts["train"], data["test_split"], seed, locate, "test_split")
    files = {split: ImageFiles(p, size, facts.CHANNELS[data["color_mode"]], bool(data.get("image_size")),
                               data["crop_to_aspect_ratio"], data["interpolation"], data["cache"])
             for split, (p, _) in parts.items()}
    val = files.get("val")
    return Data(name, data["source"], str(where), files["train"], parts["train"][1], files["test"], parts["test"][1],
                names, (*size, facts.CHANNELS[data["color_mode"]]), _files_fingerprint(scanned, where),
                x_val=val, y_val=parts["val"][1] if val is not None else None, skipped=skipped, path=str(where))


BAD_FILES_NAMED = 5  # unreadable files a message names; the rest it counts (a skipping run logs all of them)


def named_files(paths) -> str:
    """The first BAD_FILES_NAMED of `paths`, then how many more there are."""
    shown = ", ".join(str(p) for p in paths[:BAD_FILES_NAMED])
    return shown + (f" and {len(paths) - BAD_FILES_NAMED} more" if len(paths) > BAD_FILES_NAMED else "")


def _unreadable(bad: list) -> str:
    if len(bad) == 1:
        return f"cannot read image {bad[0][0]}: {bad[0][1]}"
    return f"cannot read {len(bad)} images: " + named_files([f"{p} ({why})" for p, why in bad])


def _scan(rows: list, data: dict, locate) -> tuple[list, list, list]:
    """(readable rows with their file size, their image sizes, (unreadable path, why)); Pillow checks each file's
    header and, for PNG and GIF, its chunks; nothing is decoded."""
    from PIL import Image

    good, sizes, bad = [], [], []
    for path, label in rows:
        try:
            with Image.open(path) as image:
                image.verify()
                width, height = image.size
            if path.suffix.lower() in (".jpg", ".jpeg") and not _ends_like_jpeg(path):
                raise OSError("truncated JPEG (no end-of-image marker)")
        except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for a bad file; each means unreadable
            bad.append((path, exc))
            continue
        good.append((path, label, path.stat().st_size))
        sizes.append((height, width))
    return good, sizes, bad


def _ends_like_jpeg(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 64))
        return b"\xff\xd9" in f.read()


def _common_size(scanned: dict, data: dict, locate) -> tuple[int, int]:
    if data.get("image_size"):
        return tuple(data["image_size"])
    seen: dict[tuple, Path] = {}
    for rows, sizes, _ in scanned.values():
        for (path, _, _), size in zip(rows, sizes):
            seen.setdefault(size, path)
    if not seen:
        raise data_error("no readable images", locate, "check data.path", "path")
    if len(seen) > 1:
        (a, pa), (b, pb) = list(seen.items())[:2]
        raise data_error(f"images differ in size: {pa} is {a[0]}x{a[1]}, {pb} is {b[0]}x{b[1]}", locate,
                         "set data.image_size: [height, width] to resize them all", "path")
    return next(iter(seen))


def _targets(found: list) -> np.ndarray:
    """int32 class numbers, or for multi-label rows (tuples) a uint8 0/1 matrix, even when empty."""
    if found and isinstance(found[0], tuple):
        return np.array(found, np.uint8)
    return np.array(found, np.int32)


def _files_fingerprint(scanned: dict, root: Path) -> str:
    base = root if root.is_dir() else root.parent
    lines = sorted(f"{_relative(p, base)}\t{size}\t{label}" for rows, _, _ in scanned.values()
                   for p, label, size in rows)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _hold_out(x, y, fraction: float, seed: int, locate, key: str):
    """(kept, held out): `fraction` of each class (splits.held_out, drawn with data.split_seed), both in their
    order."""
    out = held_out(y, fraction, seed)
    if out.all() or not out.any():
        raise data_error(f"holding out {key} {fraction} of {len(y)} examples leaves none to train on or none to "
                         "hold out", locate, f"add examples or change data.{key}", key)
    return (x[~out], y[~out]), (x[out], y[out])


# --- arrays -----------------------------------------------------------------------------------------------------

def load_arrays(data: dict, locate, data_dir: str | None, seed: int) -> Data:
    path = facts.data_path(data, locate)
    facts.array_headers(path, data, locate)  # missing arrays and unreadable files, named, before loading
    arrays = _read_arrays(path, facts.array_keys(data))
    digest = _digest(*(arrays[k] for k in ("x_train", "y_train", "x_test", "y_test") if k in arrays))
    labels = {k: _labels(arrays[k], k, data, locate) for k in ("y_train", "y_test") if k in arrays}
    images = {k: _images(arrays[k], k, data, locate) for k in ("x_train", "x_test") if k in arrays}
    for split in ("train", "test"):
        if f"x_{split}" in images and len(images[f"x_{split}"]) != len(labels.get(f"y_{split}", ())):
            raise data_error(f"{path.name}: x_{split} has {len(images[f'x_{split}'])} examples but y_{split} "
                             f"{len(labels.get(f'y_{split}', ()))}", locate,
                             "give one label per image", "path")
    names = _array_class_names(data, labels, arrays, locate, path)
    x, y = images["x_train"], labels["y_train"]
    if "x_test" in images:
        train, test = (x, y), (images["x_test"], labels["y_test"])
    else:
        train, test = _hold_out(x, y, data["test_split"], seed, locate, "test_split")
    shape = tuple(x.shape[1:]) + ((1,) if x.ndim == 3 else ())
    where = str(path.resolve())
    return Data(path.stem, "arrays", where, *train, *test, names, shape, digest, path=where)


def _read_arrays(path: Path, names: dict) -> dict:
    if path.is_file():
        with np.load(path, allow_pickle=False) as f:
            return {k: f[n] for k, n in names.items() if n in f.files}
    return {k: np.load(path / f"{n}.npy", allow_pickle=False) for k, n in names.items()
            if (path / f"{n}.npy").is_file()}


def _images(x: np.ndarray, key: str, data: dict, locate) -> np.ndarray:
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3, 4)):
        raise data_error(f"{key} has shape {list(x.shape)}; expected [N, height, width] or "
                         "[N, height, width, channels]", locate, "reshape the images before saving them", "path")
    if x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating):
        return x if x.dtype == np.uint8 else _floats(x, key, locate)
    raise data_error(f"{key} is {x.dtype}; expected uint8 (0-255) or float images", locate,
                     "save the images as uint8 or float32", "path")


def _floats(x: np.ndarray, key: str, locate) -> np.ndarray:
    """Float images as they are; pixels above 1 are legal but most likely not scaled (0..16 digits, 0..255 floats)."""
    top = float(x.max()) if x.size else 0.0
    if top > 1:
        print_warnings([data_error(f"{key} holds float pixels up to {top:g}, taken as they are; xrun expects float "
                                   "pixels in [0, 1] (uint8 0-255 it scales itself)", locate,
                                   f"divide the images by {top:g} before saving them, or save them as uint8", "path")])
    return x.astype(np.float32)


def _labels(y: np.ndarray, key: str, data: dict, locate) -> np.ndarray:
    """int32 class indices from integer labels or one-hot rows; with data.multi_label, the 0/1 matrix as uint8."""
    if data.get("multi_label"):
        return _label_matrix(y, key, locate)
    if y.ndim == 2 and y.shape[1] > 1:
        if not np.all((y == 0) | (y == 1)) or not np.all(y.sum(axis=1) == 1):
            raise data_error(f"{key} has {y.shape[1]} columns but its rows are not one-hot", locate,
                             "give integer labels, or rows with a single 1", "path")
        return y.argmax(axis=1).astype(np.int32)
    y = y.reshape(len(y)) if y.ndim == 2 else y
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or np.all(np.mod(y, 1) == 0)):
        raise data_error(f"{key} has shape {list(y.shape)} and type {y.dtype}; expected integer class labels",
                         locate, "give one integer label (0, 1, ...) per image, or one-hot rows", "path")
    if len(y) and y.min() < 0:
        raise data_error(f"{key} has a negative label ({int(y.min())})", locate, "number classes 0, 1, ...", "path")
    return y.astype(np.int32)


def _label_matrix(y: np.ndarray, key: str, locate) -> np.ndarray:
    if y.ndim != 2 or not np.all((y == 0) | (y == 1)):
        raise data_error(f"{key} has shape {list(y.shape)}; multi-label data (data.multi_label) needs a 0/1 matrix "
                         "[N, labels]", locate, "give a row of 0s and 1s per image, a column per label", "path")
    return y.astype(np.uint8)


def _array_class_names(data: dict, labels: dict, arrays: dict, locate, path: Path) -> tuple[str, ...]:
    highest = max(int(y.max()) for y in labels.values() if len(y))
    width = arrays["y_train"].shape[1] if arrays["y_train"].ndim == 2 and arrays["y_train"].shape[1] > 1 else 0
    names = tuple(data.get("class_names") or [str(i) for i in range(max(highest + 1, width))])
    if data.get("multi_label") and len(names) != width:
        raise data_error(f"{path.name}: y_train has {width} label columns but there are {len(names)} class names",
                         locate, f"give {width} data.class_names, one per column", "class_names")
    if highest >= len(names):
        raise data_error(f"{path.name}: label {highest} is out of range for {len(names)} class names", locate,
                         f"give {highest + 1} data.class_names, or fix the labels", "class_names")
    return names


# --- TensorFlow Datasets (optional: pip install 'xrun[tfds]') ---------------------------------------------------

def load_tfds(data: dict, locate, data_dir: str | None, seed: int) -> Data:
    tfds = _import_tfds(locate)
    folder = str(facts.data_path(data, locate, "data_dir")) if data.get("data_dir") else None
    try:
        builder = tfds.builder(data["name"], data_dir=folder)
    except tfds.core.registered.DatasetNotFoundError:
        hint = did_you_mean(data["name"].split(":")[0], tfds.list_builders(with_community_datasets=False))
        raise data_error(f"TensorFlow Datasets has no dataset '{data['name']}'", locate,
                         hint or "see tfds.list_builders()", "name") from None
    image_key, label_key = builder.info.supervised_keys or ("image", "label")
    names = tuple(builder.info.features[label_key].names)
    parts = {ours: _tfds_split(builder, split, data, locate) for ours, split in _tfds_splits(data).items() if split}
    x, y = parts["train"]
    return Data(builder.info.name, "tfds", folder or builder.data_dir, x, y, *parts["test"], names,
                tuple(x.shape[1:]) + ((1,) if x.ndim == 3 else ()), _digest(x, y, *parts["test"]),
                x_val=parts["val"][0] if "val" in parts else None, y_val=parts["val"][1] if "val" in parts else None,
                path=folder or "")


def _import_tfds(locate):
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise data_error("data.source tfds needs TensorFlow Datasets, which is not installed", locate,
                         "pip install 'xrun[tfds]' (or tensorflow-datasets)", "source") from None
    return tfds


def _tfds_splits(data: dict) -> dict:
    props = facts.schema.definition("#/$defs/data_sources/tfds")["properties"]["splits"]["properties"]
    return {k: (data.get("splits") or {}).get(k, p["default"]) for k, p in props.items()}


def _tfds_split(builder, split: str, data: dict, locate) -> tuple:
    """A whole split as (uint8 images, int labels); a dataset that is not prepared is an error, never a download."""
    import tensorflow_datasets as tfds

    try:
        batches = list(tfds.as_numpy(builder.as_dataset(split=split, as_supervised=True, batch_size=1024)))
    except (AssertionError, ValueError, KeyError, tf.errors.NotFoundError) as exc:
        raise data_error(f"tfds '{data['name']}' split '{split}' cannot be read: {str(exc).splitlines()[0]}",
                         locate, "prepare it first (tfds build NAME --data_dir DIR), or check data.splits",
                         "name") from None
    if not batches:
        raise data_error(f"tfds '{data['name']}' split '{split}' is empty", locate, "check data.splits", "name")
    return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches]).astype(np.int32)


def _digest(*arrays) -> str:
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()[:16]


# --- the model against the data, once both are real -------------------------------------------------------------

def check_model(model, data: Data, spec: Spec) -> None:
    """The built model must take the data's examples and have one output per class."""
    given = tuple(model.input_shape[1:])
    if not _fits(given, data.shape):
        raise data_error(f"the model takes {dims(given)} inputs but {data.name} examples are {dims(data.shape)}",
                         spec.locate, _shape_hint(given, data))
    outputs = model.output_shape[-1] if not isinstance(model.output_shape, list) else None
    binary = outputs == 1 and len(data.class_names) == 2  # one sigmoid unit for two classes
    if outputs is not None and outputs != len(data.class_names) and not binary:
        raise data_error(f"the model has {outputs} outputs but {data.name} has {len(data.class_names)} classes "
                         f"({', '.join(data.class_names[:10])}{' ...' if len(data.class_names) > 10 else ''})",
                         spec.locate, f"make the output layer's units {len(data.class_names)}")


def _fits(given: tuple, shape: tuple) -> bool:
    """Keras adds or drops a last axis of size 1 itself: [28, 28] takes 28x28x1 images."""
    given, shape = list(given), list(shape)
    return given == shape or given + [1] == shape or given == shape + [1]


def _shape_hint(given: tuple, data: Data) -> str:
    if len(given) == 3 and given[:2] == data.shape[:2] and given[2] != data.shape[2]:
        mode = {1: "grayscale", 3: "rgb"}.get(given[2])
        if facts.DATA_SOURCES[data.kind].image_files and mode:
            return f"set data.color_mode: {mode}, or change model.input_shape"
        return f"the data has {data.shape[2]} channel(s): change model.input_shape, or convert the images"
    return "remove model.input_shape (the data gives it), or resize the data (data.image_size)"
