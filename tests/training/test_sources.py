"""Own-data sources: image folders, arrays and CSV lists, checked against the model, errors at the `data:` line."""

from __future__ import annotations

import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import DATA_DIR, artifact_text, client, experiment, only_run, store_uri, train, xrun

from runner.errors import XrunError
from runner.language import data_facts
from runner.language.spec import load_spec

MODEL = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 3, "activation": "softmax"}]}


def write(folder: Path, data: dict, model: dict = MODEL, name: str = "own.yaml") -> Path:
    """An experiment whose `data:` mapping is on line 3, column 1, key by key in block style."""
    doc = experiment(data=data, model=model, training={"epochs": 1, "batch_size": 8, "seed": 3})
    doc.pop("data")
    head = {"name": doc.pop("name"), "description": doc.pop("description")}
    text = yaml.safe_dump(head, sort_keys=False) + yaml.safe_dump({"data": data}, sort_keys=False)
    path = Path(folder) / name
    path.write_text(text + yaml.safe_dump(doc, sort_keys=False))
    return path


def images(folder: Path, counts: dict, size=(8, 8), mode="L", ext=".png", seed=0) -> Path:
    """Class folders of random images: {class: count}; pixel values depend on the class (learnable)."""
    rng = np.random.default_rng(seed)
    for k, (name, n) in enumerate(counts.items()):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            if mode == "RGB":  # class k is bright in channel k (mod 3)
                mean = np.full(3, 60.0)
                mean[k % 3] += 120
                pixels = np.clip(rng.normal(mean, 20, (*size, 3)), 0, 255).astype(np.uint8)
            else:
                pixels = np.clip(rng.normal(60 + 70 * k, 20, size), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode).save(folder / name / f"{i:03d}{ext}")
    return folder


def load(path: Path, seed: int = 3):
    from runner.training import sources

    return sources.load(load_spec(path), DATA_DIR, seed)


def error_of(fn, *args) -> str:
    with pytest.raises(XrunError) as info:
        fn(*args)
    return info.value.format()


def folder_data(path="pics", **more) -> dict:
    return {"source": "image_folder", "path": path, "color_mode": "grayscale", **more}


# --- the language: schema, facts, the model against its data (no data loaded) ----------------------------------

def test_a_misspelt_source_key_gets_did_you_mean(tmp_path):
    path = write(tmp_path, folder_data(image_sise=[8, 8]))
    assert error_of(load_spec, path) == (f"{path}:7:3: data.image_sise: unknown key 'image_sise'; "
                                         "did you mean 'image_size'?")


def test_an_unknown_source_is_named(tmp_path):
    path = write(tmp_path, {"source": "image_foldr", "path": "pics"})
    assert error_of(load_spec, path) == (f"{path}:4:11: data.source: unknown data source 'image_foldr'; "
                                         "did you mean 'image_folder'?")


def test_a_224x224x3_1000_class_model_on_mnist_is_an_error_at_its_lines(tmp_path):
    model = {"input_shape": [224, 224, 3], "layers": [{"type": "Flatten"}, {"type": "Dense", "units": 1000}]}
    path = write(tmp_path, {"dataset": "mnist"}, model)
    text = path.read_text().splitlines()
    line = next(i for i, t in enumerate(text, 1) if "input_shape" in t)
    assert error_of(load_spec, path) == (
        f"{path}:{line + 1}:3: model.input_shape: the model takes [224, 224, 3] but the data's examples are "
        "[28, 28, 1] (mnist images); leave model.input_shape out (it follows the data), or write [28, 28, 1]")
    path = write(tmp_path, {"dataset": "mnist"}, {"layers": model["layers"]})
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "units: 1000" in t)
    assert error_of(load_spec, path) == (
        f"{path}:{line}:12: model.layers[1].units: the output layer has 1000 units but mnist images have 10 "
        "classes (0, 1, 2, 3, 4, 5, 6, 7, 8, 9); set units: 10")


def test_folder_facts_give_the_input_shape_and_classes_without_decoding(tmp_path):
    images(tmp_path / "pics", {"cat": 2, "dog": 2, "emu": 1}, size=(6, 9))
    spec = load_spec(write(tmp_path, folder_data()))
    facts = data_facts.data_facts(spec.document, spec.locate)
    assert (facts.shape, facts.class_names) == ((6, 9, 1), ("cat", "dog", "emu"))
    sized = load_spec(write(tmp_path, folder_data(image_size=[4, 5], color_mode="rgb")))
    assert data_facts.data_facts(sized.document, sized.locate).shape == (4, 5, 3)


def test_the_npy_header_is_read_in_plain_python_as_numpy_writes_it(tmp_path):
    for arr in (np.zeros((5, 28, 28), np.uint8), np.ones((3, 4), np.float32), np.arange(7, dtype=">i8")):
        buffer = io.BytesIO()
        np.save(buffer, arr)
        buffer.seek(0)
        assert data_facts.npy_header(buffer) == {"shape": arr.shape, "descr": np.lib.format.dtype_to_descr(arr.dtype)}


def test_an_npz_model_check_reads_only_headers(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=np.zeros((4, 5, 6, 3), np.uint8), y_train=np.eye(4, dtype=np.float32))
    path = write(tmp_path, {"source": "arrays", "path": "d.npz"}, MODEL)
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "units: 3" in t)
    assert error_of(load_spec, path) == (
        f"{path}:{line}:12: model.layers[1].units: the output layer has 3 units but the arrays in d.npz have 4 "
        "classes (0, 1, 2, 3); set units: 4")


# --- data errors a person can act on: one line at the data: key, naming the file ---------------------------------

def test_a_missing_folder(tmp_path):
    path = write(tmp_path, folder_data("nowhere"))
    assert error_of(load, path) == (f"{path}:5:3: data.path: no folder {tmp_path / 'nowhere'}; give data.path as a "
                                    "folder of class folders (or of train/ val/ test/ folders)")


def test_a_validation_split_folder_gets_did_you_mean_val(tmp_path):
    images(tmp_path / "pics" / "train", {"a": 1, "b": 1})
    images(tmp_path / "pics" / "validation", {"a": 1, "b": 1})
    path = write(tmp_path, folder_data())
    assert error_of(load, path) == (f"{path}:5:3: data.path: {tmp_path / 'pics' / 'validation'} is not a split "
                                    "folder: expected train, val, test; rename it (did you mean 'val'?)")


def test_an_empty_class_folder(tmp_path):
    images(tmp_path / "pics", {"a": 2, "b": 2})
    (tmp_path / "pics" / "c").mkdir()
    path = write(tmp_path, folder_data())
    assert error_of(load, path) == (f"{path}:5:3: data.path: class folder {tmp_path / 'pics' / 'c'} has no images "
                                    "(.bmp, .gif, .jpeg, .jpg, .png); add images to it, or remove the folder")


def test_a_corrupt_image_fails_by_default_and_is_counted_when_skipped(tmp_path):
    images(tmp_path / "pics", {"a": 3, "b": 3, "c": 3})
    bad = tmp_path / "pics" / "b" / "001.png"
    bad.write_bytes(bad.read_bytes()[:40])  # cut off mid-file
    path = write(tmp_path, folder_data())
    message = error_of(load, path)
    assert message.startswith(f"{path}:5:3: data.path: cannot read image {bad}: ")
    assert message.endswith("; fix or remove the file, or set data.on_bad_file: skip")
    data = load(write(tmp_path, folder_data(on_bad_file="skip")))
    assert data.skipped == (str(bad),)
    assert data.tags()["dataset.skipped_files"] == 1
    assert data.y_val is None and len(data.y_train) + len(data.y_test) == 8  # validation is held out later


def test_mixed_sizes_without_image_size(tmp_path):
    images(tmp_path / "pics", {"a": 1, "b": 1, "c": 1})
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(tmp_path / "pics" / "b" / "big.png")
    path = write(tmp_path, folder_data())
    assert error_of(load, path) == (
        f"{path}:5:3: data.path: images differ in size: {tmp_path / 'pics/a/000.png'} is 8x8, "
        f"{tmp_path / 'pics/b/big.png'} is 5x7; set data.image_size: [height, width] to resize them all")


def test_arrays_x_and_y_lengths_must_match(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=np.zeros((5, 4, 4), np.uint8), y_train=np.zeros(4, np.int64))
    path = write(tmp_path, {"source": "arrays", "path": "d.npz"})
    assert error_of(load, path) == (f"{path}:5:3: data.path: d.npz: x_train has 5 examples but y_train 4; give one "
                                    "label per image")


def test_arrays_labels_out_of_range_of_the_class_names(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=np.zeros((6, 4, 4), np.uint8), y_train=np.array([0, 1, 2, 3, 0, 1]))
    path = write(tmp_path, {"source": "arrays", "path": "d.npz", "class_names": ["a", "b", "c"]})
    assert error_of(load, path) == (f"{path}:6:3: data.class_names: d.npz: label 3 is out of range for 3 class "
                                    "names; give 4 data.class_names, or fix the labels")


def test_arrays_a_missing_key_gets_did_you_mean(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=np.zeros((6, 4, 4), np.uint8), y_trian=np.zeros(6, np.int64))
    path = write(tmp_path, {"source": "arrays", "path": "d.npz"})
    assert error_of(load, path) == (f"{path}:5:3: data.path: {tmp_path / 'd.npz'} has no array 'y_train'; "
                                    "did you mean 'y_trian'?; name the arrays with data.keys")


def test_rgb_data_for_a_one_channel_model(tmp_path):
    images(tmp_path / "pics", {"a": 2, "b": 2, "c": 2}, mode="RGB")
    model = {"input_shape": [8, 8, 1], **MODEL}
    path = write(tmp_path, {"source": "image_folder", "path": "pics"}, model)
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "input_shape" in t)
    assert error_of(load_spec, path) == (
        f"{path}:{line + 1}:3: model.input_shape: the model takes [8, 8, 1] but the data's examples are [8, 8, 3] (the "
        "images in pics); leave model.input_shape out (it follows the data), or write [8, 8, 3]")
    from runner.model.compiler import build_model
    from runner.training import sources

    spec = load_spec(write(tmp_path, {"source": "image_folder", "path": "pics"}))
    model = build_model(load_spec(write(tmp_path, folder_data(), name="gray.yaml")))
    assert error_of(sources.check_model, model, sources.load(spec, None, 1), spec) == (
        f"{spec.path}:3:1: data: the model takes 8x8x1 inputs but pics examples are 8x8x3; "
        "set data.color_mode: grayscale, or change model.input_shape")


def test_a_csv_naming_a_missing_file(tmp_path):
    images(tmp_path / "pics", {"a": 2, "b": 2, "c": 2})
    (tmp_path / "list.csv").write_text("path,label\npics/a/000.png,a\npics/a/nope.png,a\npics/b/000.png,b\n"
                                       "pics/c/000.png,c\n")
    path = write(tmp_path, {"source": "csv", "path": "list.csv", "color_mode": "grayscale"})
    assert error_of(load, path) == (f"{path}:5:3: data.path: {tmp_path / 'pics/a/nope.png'} (listed in list.csv) "
                                    "does not exist; fix the paths (they are relative to the CSV), or set "
                                    "data.on_bad_file: skip")


# --- what the sources give -------------------------------------------------------------------------------------

def test_split_folders_class_names_sizes_and_a_fingerprint_of_names_and_sizes(tmp_path):
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        images(tmp_path / "pics" / split, {"cat": n, "dog": n, "emu": n})
    path = write(tmp_path, folder_data())
    data = load(path)
    assert (data.class_names, data.shape) == (("cat", "dog", "emu"), (8, 8, 1))
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (12, 6, 9)
    assert data.x_train[:2].shape == (2, 8, 8, 1) and data.x_train[:2].dtype == np.uint8
    # Ordered by file name, then class: 000.png of cat, dog, emu, then 001.png ...
    assert list(data.y_train[:6]) == [0, 1, 2, 0, 1, 2]
    assert load(path).fingerprint == data.fingerprint
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "pics" / "train" / "emu" / "new.png")
    assert load(path).fingerprint != data.fingerprint


def test_decoded_pixels_equal_the_files_for_png_bmp_gif_and_jpeg_sizes(tmp_path):
    exts = {"a": ".png", "b": ".bmp", "c": ".gif"}
    for k, ext in exts.items():
        images(tmp_path / "pics", {k: 2}, ext=ext, seed=ord(k))
    images(tmp_path / "pics", {"a": 2}, ext=".jpg", seed=1)
    data = load(write(tmp_path, folder_data(validation="none", test_split=0.25)))
    for i, p in enumerate(data.x_train.paths):
        expected = np.asarray(Image.open(p).convert("L"))[..., None]
        if not p.endswith(".jpg"):  # lossless formats: exactly the stored pixels
            np.testing.assert_array_equal(data.x_train[i:i + 1][0], expected)
        else:
            assert np.abs(data.x_train[i:i + 1][0].astype(int) - expected).max() <= 2


def test_resize_and_crop_to_aspect_ratio(tmp_path):
    images(tmp_path / "pics", {"a": 2, "b": 2, "c": 2}, size=(10, 20), mode="RGB")
    data = load(write(tmp_path, folder_data(image_size=[5, 5], color_mode="rgb", crop_to_aspect_ratio=True)))
    assert data.shape == (5, 5, 3) and data.x_train[:1].shape == (1, 5, 5, 3)


def test_arrays_one_hot_float_and_channel_axis(tmp_path):
    x = np.random.default_rng(0).random((10, 4, 4), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2, 0, 1, 2, 0]]
    for name, arr in (("x_train", x), ("y_train", y)):
        np.save(tmp_path / f"{name}.npy", arr)
    data = load(write(tmp_path, {"source": "arrays", "path": ".", "test_split": 0.2}))
    # test_split 0.2 of each class (4, 3 and 3 examples), at least one of each: 1 + 1 + 1
    assert (data.shape, data.class_names, len(data.y_train), len(data.y_test)) == ((4, 4, 1), ("0", "1", "2"), 7, 3)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int32
    digest = hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()[:16]
    assert data.fingerprint == digest


def test_export_refuses_a_folder_that_is_not_empty_and_writes_keras_npz_keys(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("mine")
    code, out, err = xrun("data", "export", "mnist", tmp_path / "busy", "--limit", "3")
    assert (code, err.strip()) == (2, f"{tmp_path / 'busy'}: {tmp_path / 'busy'} already exists and is not empty; "
                                      "export into a new folder, or remove it first")
    code, out, err = xrun("data", "export", "mnist", tmp_path / "n", "--format", "npz", "--limit", "3")
    assert (code, out.strip()) == (0, f"wrote 3 train, 3 test images to {tmp_path / 'n' / 'mnist.npz'}")
    with zipfile.ZipFile(tmp_path / "n" / "mnist.npz") as z:
        assert sorted(z.namelist()) == ["x_test.npy", "x_train.npy", "y_test.npy", "y_train.npy"]


# --- training on them (the acceptance tests) ---------------------------------------------------------------------

CNN = {"layers": [{"type": "Conv2D", "filters": 8, "kernel_size": 3, "activation": "relu"},
                  {"type": "MaxPooling2D", "pool_size": 2}, {"type": "Flatten"},
                  {"type": "Dense", "units": 10, "activation": "softmax"}]}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """2,000 MNIST training and 2,000 test digits as PNG class folders, an .npz and a CSV list."""
    folder = tmp_path_factory.mktemp("exported")
    assert xrun("data", "export", "mnist", folder / "digits", "--limit", "2000", "--data-dir", DATA_DIR)[0] == 0
    assert xrun("data", "export", "mnist", folder, "--format", "npz", "--limit", "2000", "--data-dir",
                DATA_DIR)[0] == 0
    rows = ["path,label,split"] + [f"{p.relative_to(folder)},{p.parent.name},{p.parts[-3]}"
                                   for p in sorted((folder / "digits").rglob("*.png"))]
    (folder / "digits.csv").write_text("\n".join(rows) + "\n")
    return folder


def run_on(folder: Path, data: dict, name: str):
    doc = experiment(data={"validation": "split", **data}, model=CNN,
                     training={"epochs": 2, "batch_size": 64, "seed": 7})
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    (folder / name).mkdir()
    return train(path, uri=store_uri(folder / name))


@pytest.mark.slow
def test_folder_arrays_and_csv_train_as_the_builtin_source_on_the_same_images(exported):
    builtin = run_on(exported, {"dataset": "mnist", "limit": 2000}, "builtin")
    folder = run_on(exported, {"source": "image_folder", "path": "digits", "color_mode": "grayscale"}, "folder")
    arrays = run_on(exported, {"source": "arrays", "path": "mnist.npz"}, "arrays")
    listed = run_on(exported, {"source": "csv", "path": "digits.csv", "color_mode": "grayscale"}, "csv")
    assert builtin.test_accuracy > 0.8
    for result in (folder, arrays, listed):
        assert abs(result.test_accuracy - builtin.test_accuracy) <= 0.01
    # The folder and the CSV (both ordered by file name) and the npz hold the builtin's images in its order: the
    # same stratified validation split, and the very same run.
    assert folder.test_accuracy == arrays.test_accuracy == listed.test_accuracy == builtin.test_accuracy
    learnt = [{k: v for k, v in r.history.items() if k not in ("epoch_seconds", "images_per_second")}
              for r in (folder, arrays, listed, builtin)]
    assert learnt[0] == learnt[1] == learnt[2] == learnt[3]
    counts = {name: artifact_text(store_uri(exported / name), only_run(store_uri(exported / name)).info.run_id,
                                  "data/class_counts.csv") for name in ("builtin", "folder", "arrays", "csv")}
    assert len(set(counts.values())) == 1
    assert counts["folder"].splitlines()[-1] == "total,1801,199,2000"  # 0.1 of each class, rounded
    uri = store_uri(exported / "folder")
    run = only_run(uri)
    assert {k: run.data.tags[k] for k in ("dataset.kind", "dataset.classes", "dataset.shape", "dataset.name")} == {
        "dataset.kind": "image_folder", "dataset.classes": "0,1,2,3,4,5,6,7,8,9", "dataset.shape": "28x28x1",
        "dataset.name": "digits"}
    assert (run.data.params["data.train_examples"], run.data.params["data.test_examples"]) == ("1801", "2000")
    inputs = client(uri).get_run(run.info.run_id).inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [("digits", run.data.tags["dataset.fingerprint"])]
    assert {t.key: t.value for t in inputs[0].tags}["xrun.examples.train"] == "1801"


@pytest.mark.slow
def test_a_32x32_rgb_folder_trains(tmp_path):
    images(tmp_path / "pics", {"red": 40, "green": 40, "blue": 40}, size=(32, 32), mode="RGB")
    doc = experiment(data={"source": "image_folder", "path": "pics", "cache": "disk"},
                     model={"layers": [{"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
                                       {"type": "Flatten"}, {"type": "Dense", "units": 3, "activation": "softmax"}]},
                     training={"epochs": 2, "batch_size": 16, "seed": 1})
    path = tmp_path / "rgb.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = train(path)
    assert result.model.input_shape == (None, 32, 32, 3)
    assert result.test_accuracy > 0.9


@pytest.mark.parametrize("cache", ["memory", "disk", "none"])
def test_every_cache_streams_each_image_once_per_epoch_with_its_label(tmp_path, cache):
    from runner.training import pipeline

    images(tmp_path / "pics", {"a": 5, "b": 5, "c": 5})
    data = load(write(tmp_path, folder_data(cache=cache, validation="none", test_split=0.2)))
    ds = pipeline.train_dataset(data.x_train, data.y_train, batch_size=4, shuffle=True, seed=1, augmentation=None,
                                one_hot_classes=None)
    batches = list(ds.take(2 * 3))  # 12 training images, batches of 4: two epochs
    seen = [(round(float(x.numpy().sum() * 255)), int(y)) for xb, yb in batches for x, y in zip(xb, yb)]
    expected = sorted((int(x.astype(int).sum()), int(y)) for x, y in zip(data.x_train[:], data.y_train))
    for epoch in (seen[:12], seen[12:]):
        assert sorted(epoch) == expected
    assert seen[:12] != seen[12:]  # shuffled again on the second pass


def test_exported_class_folders_sort_in_class_order():
    from runner.training.data_export import folder_names

    assert folder_names(list("0123456789")) == list("0123456789")
    assert folder_names(["T-shirt/top", "Trouser", "Bag"]) == ["0_T-shirt_top", "1_Trouser", "2_Bag"]


def test_a_csv_with_a_split_column_and_numeric_labels(tmp_path):
    images(tmp_path / "pics", {"a": 3, "b": 3, "c": 3})
    rows = [f"pics/{c}/{i:03d}.png,{k},{'test' if i == 2 else 'train'}" for k, c in enumerate("abc") for i in range(3)]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    data = load(write(tmp_path, {"source": "csv", "path": "list.csv", "color_mode": "grayscale",
                                 "validation": "none"}))
    assert (data.class_names, len(data.y_train), list(data.y_test)) == (("0", "1", "2"), 6, [0, 1, 2])


@pytest.mark.slow
def test_tfds_on_mock_data_trains_with_its_class_names_and_splits(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    doc = experiment(data={"source": "tfds", "name": "mnist", "data_dir": "tfds", "validation": "none"},
                     model={"input_shape": [28, 28, 1], **CNN}, training={"epochs": 1, "batch_size": 16, "seed": 2})
    path = tmp_path / "tfds.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with tfds.testing.mock_data(num_examples=48):
        data = load(path)
        assert (data.name, data.class_names, data.shape) == ("mnist", tuple("0123456789"), (28, 28, 1))
        assert (len(data.y_train), len(data.y_test), data.x_train.dtype) == (48, 48, np.uint8)
        result = train(path)
    run = client(result.tracking_uri).get_run(result.run_id)
    assert (run.data.tags["dataset.kind"], run.data.params["data.train_examples"]) == ("tfds", "48")


def test_tfds_not_prepared_is_an_error_not_a_download(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    path = write(tmp_path, {"source": "tfds", "name": "mnist", "data_dir": "empty"},
                 {"input_shape": [28, 28, 1], **CNN})
    message = error_of(load, path)
    assert message.startswith(f"{path}:5:3: data.name: tfds 'mnist' split 'train' cannot be read: ")
    assert message.endswith("; prepare it first (tfds build NAME --data_dir DIR), or check data.splits")
    assert not (tmp_path / "empty" / "downloads").exists()


def test_integer_labels_beyond_the_output_layer_are_found_once_the_arrays_are_read(tmp_path):
    from runner.model.compiler import build_model
    from runner.training import sources

    np.savez(tmp_path / "d.npz", x_train=np.zeros((8, 4, 4), np.uint8), y_train=np.arange(8) % 4,
             x_test=np.zeros((2, 4, 4), np.uint8), y_test=np.array([0, 3]))
    spec = load_spec(write(tmp_path, {"source": "arrays", "path": "d.npz"}))  # int labels: validate cannot know
    data = sources.load(spec, None, 1)
    assert data.class_names == ("0", "1", "2", "3")
    assert error_of(sources.check_model, build_model(spec), data, spec) == (
        f"{spec.path}:3:1: data: the model has 3 outputs but d has 4 classes (0, 1, 2, 3); make the output "
        "layer's units 4")
