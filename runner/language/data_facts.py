"""What the `data:` section says about a model's input and output, found without loading the data (plain Python).

Folders are listed, .npy headers and CSV label columns read, one image header opened; nothing is decoded. The
same listing (`folder_layout`) is what the trainer streams, so `validate` and `run` see the same classes.
"""

from __future__ import annotations

import ast
import csv
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from runner.errors import XrunError, did_you_mean
from runner.language import schema
from runner.language.datasets import DATASETS
from runner.language.graph import Graph
from runner.language.labels import split_labels
from runner.language.source import dotted

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # those keras.utils.image_dataset_from_directory takes
SPLIT_FOLDERS = ("train", "val", "test")
# Names people give split folders, and the one xrun expects instead.
SPLIT_SYNONYMS = {"validation": "val", "valid": "val", "dev": "val", "training": "train", "testing": "test",
                  "eval": "val", "evaluation": "val"}
CHANNELS = {"grayscale": 1, "rgb": 3}
# Layers between the last Dense and the output that keep its width.
_SAME_WIDTH = {"Activation", "Dropout", "Softmax", "BatchNormalization", "LayerNormalization", "GaussianNoise",
               "GaussianDropout", "AlphaDropout", "ActivityRegularization"}


@dataclass(frozen=True)
class DataFacts:
    """The input shape (height, width, channels) and class names of the data, None where not known yet."""

    shape: tuple | None
    class_names: tuple[str, ...] | None
    what: str                       # for messages: "mnist", "the images in data/digits"
    multi_label: bool = False       # a set of labels per image (data.multi_label), not one class

    @property
    def num_classes(self) -> int | None:
        return None if self.class_names is None else len(self.class_names)


def settings(data: dict) -> dict:
    """The data section with its source's schema defaults filled in (`color_mode: rgb`, `cache: memory`, ...)."""
    source = data.get("source", "builtin")
    branch = schema.definition(f"#/$defs/data_sources/{source}")
    props = dict(branch.get("properties", {}))
    if "$ref" in branch:
        props = {**schema.definition(branch["$ref"])["properties"], **props}
    props = {k: schema.definition(p["$ref"]) if "$ref" in p else p for k, p in props.items()}
    return {**{k: p["default"] for k, p in props.items() if "default" in p}, **data}


def data_path(data: dict, locate, key: str = "path") -> Path:
    """`data.path` (or another path key), relative to the YAML file that wrote it (a `--set` one: to the current
    folder)."""
    path = Path(data[key]).expanduser()
    where = locate(("data", key))
    if path.is_absolute() or where is None or not Path(where.file).is_file():
        return path
    return Path(where.file).parent / path


def data_error(message: str, locate, hint: str, key: str | None = None) -> XrunError:
    """A problem with the data, reported at the `data:` key (or one of its keys)."""
    path = ("data", key) if key else ("data",)
    return XrunError(message, where=locate(path, key=True), path=dotted(path), hint=hint)


def data_facts(document: dict, locate, strict: bool = False) -> DataFacts:
    """What the data gives the model; with `strict`, missing files are errors instead of unknowns."""
    data = settings(document["data"])
    return DATA_SOURCES[data["source"]].facts(data, locate, strict)


def _builtin(data: dict, locate, strict: bool) -> DataFacts:
    facts = DATASETS[data["dataset"]]
    return DataFacts(tuple(facts["shape"]), tuple(facts["class_names"]), f"{data['dataset']} images")


def _image_shape(data: dict) -> tuple:
    size = data.get("image_size")
    return (*(size or (None, None)), CHANNELS[data["color_mode"]])


def _folder(data: dict, locate, strict: bool) -> DataFacts:
    root = data_path(data, locate)
    what = f"the images in {data['path']}"
    if not root.exists() and not strict:
        return DataFacts(_image_shape(data), None, what)
    layout = folder_layout(root, locate)
    shape = _image_shape(data)
    if shape[0] is None:
        first = next(f for classes in layout.values() for files in classes.values() for f in files)
        shape = (*image_header_size(first, data, locate), shape[2])
    return DataFacts(shape, tuple(layout[SPLIT_FOLDERS[0]]), what)


def _csv(data: dict, locate, strict: bool) -> DataFacts:
    path = data_path(data, locate)
    what = f"the images listed in {data['path']}"
    multi = bool(data.get("multi_label"))
    if not path.exists() and not strict:
        return DataFacts(_image_shape(data), None, what, multi)
    rows = csv_rows(path, locate, empty_labels=multi)
    shape = _image_shape(data)
    if shape[0] is None:
        shape = (*image_header_size(rows[0][0], data, locate), shape[2])
    return DataFacts(shape, csv_class_names(rows, data, locate), what, multi)


def csv_class_names(rows: list, data: dict, locate) -> tuple[str, ...]:
    """The classes of a CSV list: its labels, or with multi_label every label any row lists."""
    if not data.get("multi_label"):
        return class_names([row[1] for row in rows])
    labels = [label for row in rows for label in split_labels(row[1], data["label_separator"])]
    if len(set(labels)) < 2:
        raise data_error(f"{data['path']} lists {len(set(labels))} distinct label(s); multi-label data needs at "
                         "least 2", locate, f"list each image's labels separated by '{data['label_separator']}' "
                         "(data.label_separator)", "path")
    return class_names(labels)


def _arrays(data: dict, locate, strict: bool) -> DataFacts:
    path = data_path(data, locate)
    what = f"the arrays in {data['path']}"
    multi = bool(data.get("multi_label"))
    if not path.exists() and not strict:
        return DataFacts(None, _given_names(data), what, multi)
    headers = array_headers(path, data, locate)
    x, y = headers["x_train"], headers["y_train"]
    shape = tuple(x["shape"][1:]) + ((1,) if len(x["shape"]) == 3 else ())
    names = _given_names(data)
    if names is None and len(y["shape"]) == 2:  # one-hot rows (or a label matrix): their width is the class count
        names = tuple(str(i) for i in range(y["shape"][1]))
    return DataFacts(shape, names, what, multi)


def _given_names(data: dict) -> tuple[str, ...] | None:
    return tuple(data["class_names"]) if data.get("class_names") else None


def _tfds(data: dict, locate, strict: bool) -> DataFacts:
    # Its metadata is TFDS's own (protobuf); the shape and classes are known once TFDS reads it (at run time).
    if strict:
        raise data_error(f"the shape of tfds '{data['name']}' images is known only once TensorFlow Datasets reads it",
                         locate, "set model.input_shape (e.g. [28, 28, 1])", "name")
    return DataFacts(None, None, f"tfds '{data['name']}'")


@dataclass(frozen=True)
class DataSource:
    """One `data.source`: its facts read here in plain Python, and the training-layer function that loads it."""

    name: str                       # the schema's `data.source` value
    facts: Callable[[dict, object, bool], DataFacts]  # (data, locate, strict): shape and classes, nothing loaded
    loader: str                     # "module:function" (data, locate, data_dir, seed) -> Data, in runner.training
    image_files: bool = False       # images streamed from files: skipped files counted, color_mode hinted
    path_is: str = ""               # what its `data.path` names, for hints ("" for a source without a path)
    path_kind: str = ""             # "folder", "file" or "file or folder": a missing one is "no folder PATH"


# The one table of data sources: a new source is its schema branch and an entry here (tests/language/test_data_facts.py).
DATA_SOURCES = {source.name: source for source in (
    DataSource("builtin", _builtin, "runner.training.sources:load_builtin"),
    DataSource("image_folder", _folder, "runner.training.sources:load_image_folder", image_files=True,
               path_is="a folder of class folders (or of train/ val/ test/ folders)", path_kind="folder"),
    DataSource("arrays", _arrays, "runner.training.sources:load_arrays",
               path_is="an .npz file or a folder of .npy files", path_kind="file or folder"),
    DataSource("csv", _csv, "runner.training.sources:load_csv", image_files=True,
               path_is="a CSV file of path,label rows", path_kind="file"),
    DataSource("tfds", _tfds, "runner.training.sources:load_tfds"),
)}


def check_data_exists(document: dict, locate) -> None:
    """A `data.path` that names nothing is an error at its line (`validate` reads the facts leniently otherwise)."""
    data = document["data"]
    if "path" not in data or data_path(data, locate).exists():
        return
    source = DATA_SOURCES[data.get("source", "builtin")]
    raise data_error(f"no {source.path_kind} {data_path(data, locate)}", locate,
                     f"give data.path as {source.path_is}", "path")


# --- folders ----------------------------------------------------------------------------------------------------

def folder_layout(root: Path, locate) -> dict[str, dict[str, list[Path]]]:
    """{split: {class name: sorted image files}}: `train` always, `val`/`test` where the folder has them."""
    if not root.is_dir():
        raise data_error(f"no folder {root}" if not root.exists() else f"{root} is a file, not a folder", locate,
                         f"give data.path as {DATA_SOURCES['image_folder'].path_is}", "path")
    subs = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if "train" not in subs:
        return {"train": _classes(root, locate)}
    layout = {}
    for name in subs:
        if name not in SPLIT_FOLDERS:
            hint = f"did you mean '{SPLIT_SYNONYMS[name]}'?" if name in SPLIT_SYNONYMS else did_you_mean(
                name, SPLIT_FOLDERS)
            raise data_error(f"{root / name} is not a split folder: expected {', '.join(SPLIT_FOLDERS)}", locate,
                             f"rename it ({hint})" if hint else "rename or remove it", "path")
        layout[name] = _classes(root / name, locate)
    _same_classes(layout, root, locate)
    return layout


def _classes(folder: Path, locate) -> dict[str, list[Path]]:
    classes = {p.name: p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")}
    if len(classes) < 2:
        raise data_error(f"{folder} has {len(classes)} class folder{'s' if len(classes) != 1 else ''}; "
                         "a classifier needs at least 2", locate,
                         "put each class's images in a folder named after it (cat/, dog/, ...)", "path")
    out = {name: sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
           for name, p in classes.items()}
    empty = [name for name, files in out.items() if not files]
    if empty:
        raise data_error(f"class folder {folder / empty[0]} has no images ({', '.join(IMAGE_EXTENSIONS)})", locate,
                         "add images to it, or remove the folder", "path")
    return out


def _same_classes(layout: dict, root: Path, locate) -> None:
    known = set(layout["train"])
    for split, classes in layout.items():
        extra = sorted(set(classes) - known)
        if extra:
            raise data_error(f"{root / split / extra[0]} is a class that {root / 'train'} does not have", locate,
                             "every split folder must use the class folders of train/", "path")


def image_header_size(path: Path, data: dict, locate) -> tuple[int, int]:
    """(height, width) from the first image's header (Pillow reads only the header here)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise data_error(f"cannot read image {path}: {exc}", locate, "fix or remove the file", "path") from None
    return height, width


# --- CSV lists --------------------------------------------------------------------------------------------------

def csv_rows(path: Path, locate, empty_labels: bool = False) -> list[tuple[Path, str, str]]:
    """(image path, label, split) per row; paths relative to the CSV file; a `path,label[,split]` header row is
    skipped; split is train, val or test (default train). With `empty_labels` (multi-label lists) a row may have
    no label: the image has none of them."""
    if not path.is_file():
        raise data_error(f"no file {path}", locate, f"give data.path as {DATA_SOURCES['csv'].path_is}", "path")
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0][:2]] in (["path", "label"], ["path", "labels"]):
        rows = rows[1:]
    bad = next((i for i, r in enumerate(rows) if len(r) not in (2, 3) or not r[0].strip()
                or not (r[1].strip() or empty_labels)
                or (len(r) == 3 and r[2].strip() not in SPLIT_FOLDERS)), None)
    if bad is not None:
        raise data_error(f"{path} row {bad + 1}: expected 'path,label' or 'path,label,split' (split: "
                         f"{', '.join(SPLIT_FOLDERS)}), got {','.join(rows[bad])!r}", locate,
                         "write one image path and its label per row", "path")
    if not rows:
        raise data_error(f"{path} lists no images", locate, "write one 'path,label' row per image", "path")
    return [(path.parent / r[0].strip(), r[1].strip(), r[2].strip() if len(r) == 3 else "train") for r in rows]


def class_names(labels: list[str]) -> tuple[str, ...]:
    """The distinct labels in order: numerically if they are all whole numbers (then 0..max), else sorted."""
    distinct = set(labels)
    if all(label.isdigit() for label in distinct):
        return tuple(str(i) for i in range(max(int(label) for label in distinct) + 1))
    return tuple(sorted(distinct))


# --- NumPy files, read as headers only -------------------------------------------------------------------------

def array_keys(data: dict) -> dict[str, str]:
    """The name of each array (x_train, y_train, x_test, y_test) in the file(s), defaults from the schema."""
    props = schema.definition("#/$defs/data_sources/arrays")["properties"]["keys"]["properties"]
    return {k: (data.get("keys") or {}).get(k, p["default"]) for k, p in props.items()}


def array_headers(path: Path, data: dict, locate) -> dict[str, dict]:
    """{x_train: {shape, descr}, ...} for the arrays present (train ones required), from .npy headers alone."""
    names = array_keys(data)
    try:
        headers = _npz_headers(path, names) if path.is_file() else _npy_headers(path, names)
    except (OSError, ValueError, SyntaxError, zipfile.BadZipFile, struct.error) as exc:
        raise data_error(f"cannot read {path}: {exc}", locate, f"give {DATA_SOURCES['arrays'].path_is}",
                         "path") from None
    missing = [names[k] for k in ("x_train", "y_train") if k not in headers]
    if missing:
        present = _present(path)
        hint = did_you_mean(missing[0], present) or f"it has: {', '.join(present) or 'nothing'}"
        raise data_error(f"{path} has no array '{missing[0]}'", locate,
                         f"{hint}; name the arrays with data.keys", "path")
    return headers


def _present(path: Path) -> list[str]:
    if path.is_file():
        with zipfile.ZipFile(path) as z:
            return [n.removesuffix(".npy") for n in z.namelist()]
    return sorted(p.stem for p in path.glob("*.npy"))


def _npz_headers(path: Path, names: dict) -> dict[str, dict]:
    if not zipfile.is_zipfile(path):
        raise ValueError("not an .npz (zip) file")
    out = {}
    with zipfile.ZipFile(path) as z:
        for key, name in names.items():
            if f"{name}.npy" in z.namelist():
                with z.open(f"{name}.npy") as f:
                    out[key] = npy_header(f)
    return out


def _npy_headers(folder: Path, names: dict) -> dict[str, dict]:
    if not folder.is_dir():
        raise FileNotFoundError(f"no file or folder {folder}")
    out = {}
    for key, name in names.items():
        if (folder / f"{name}.npy").is_file():
            with open(folder / f"{name}.npy", "rb") as f:
                out[key] = npy_header(f)
    return out


def npy_header(f) -> dict:
    """The header of a .npy stream: magic, version, header length, then a Python dict literal (NEP 1)."""
    magic = f.read(8)
    if magic[:6] != b"\x93NUMPY":
        raise ValueError("not a .npy array")
    size_format = "<H" if magic[6] == 1 else "<I"
    (length,) = struct.unpack(size_format, f.read(struct.calcsize(size_format)))
    header = ast.literal_eval(f.read(length).decode("latin1"))
    return {"shape": tuple(header["shape"]), "descr": header["descr"]}


# --- the model against its data ---------------------------------------------------------------------------------

def check_model_against_data(document: dict, graph: Graph, locate, check_input_shape) -> DataFacts:
    """The model's input shape and class count must be the data's: an error at the model's line, before training.

    `check_input_shape(given, data_shape, what, locate)` is the language's shape rule (runner.language.spec).
    """
    facts = data_facts(document, locate)
    if facts.shape is not None and None not in facts.shape:
        check_input_shape(document["model"].get("input_shape"), facts.shape, facts.what, locate)
    check_classes(output_units(graph), facts, locate)
    return facts


def output_units(graph: Graph):
    """(units, node) of the model's one output where a Dense (maybe followed by an activation) gives its width."""
    if len(graph.outputs) != 1:
        return None
    node = graph.node(graph.outputs[0])
    while node.type in _SAME_WIDTH and len(node.inputs) == 1 and node.inputs[0] in {n.name for n in graph.nodes}:
        node = graph.node(node.inputs[0])
    units = node.args.get("units") if node.type == "Dense" else None
    return (units, node) if isinstance(units, int) else None


def check_classes(found, facts: DataFacts, locate, graph: Graph | None = None) -> None:
    """The output layer's width against the data's class count."""
    if found is None or facts.num_classes is None or found[0] == facts.num_classes:
        return
    units, node = found
    where = locate(tuple(node.origin) + ("units",)) if not node.via else locate(tuple(node.origin))
    raise XrunError(f"the output layer has {units} units but {facts.what} have {facts.num_classes} classes "
                    f"({_names(facts.class_names)})", where=where,
                    path=dotted(tuple(node.origin)) + ".units", hint=f"set units: {facts.num_classes}")


def _names(names: tuple[str, ...]) -> str:
    shown = ", ".join(names[:10])
    return shown + (f", ... {len(names) - 10} more" if len(names) > 10 else "")
