"""`xrun evaluate RUN` without --data scores the run's own test split for every source: the numbers the run
recorded (issue 23); `--data` takes an .npz, a CSV and an experiment YAML too."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import experiment, only_run, store_uri, train, xrun
from PIL import Image

DENSE = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 16, "activation": "relu"},
                    {"type": "Dense", "units": 3, "activation": "softmax"}]}


@pytest.fixture(scope="module")
def own(tmp_path_factory) -> Path:
    """The same 90 class-sorted 8x8 images as an .npz, a folder of class folders and a CSV list."""
    folder = tmp_path_factory.mktemp("own")
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 30).astype(np.uint8)
    x = (rng.integers(0, 60, (len(y), 8, 8)) + y[:, None, None] * 60).astype(np.uint8)
    np.savez(folder / "own.npz", x_train=x, y_train=y)
    rows = ["path,label"]
    for i, (image, label) in enumerate(zip(x, y)):
        path = folder / "pics" / str(label) / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
        rows.append(f"pics/{label}/{i:03d}.png,{label}")
    (folder / "own.csv").write_text("\n".join(rows) + "\n")
    return folder


def trained(folder: Path, name: str, data: dict):
    doc = experiment(data=data, model=DENSE, training={"epochs": 2, "batch_size": 8, "seed": 5})
    doc["loss"], doc["tracking"]["log_model"] = "SparseCategoricalCrossentropy", True
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    (folder / name).mkdir()
    train(path, uri=store_uri(folder / name))
    return path, store_uri(folder / name), only_run(store_uri(folder / name))


@pytest.mark.slow
@pytest.mark.parametrize("name, data", [
    ("arrays", {"source": "arrays", "path": "own.npz"}),
    ("folder", {"source": "image_folder", "path": "pics", "color_mode": "grayscale"}),
    ("listed", {"source": "csv", "path": "own.csv", "color_mode": "grayscale"}),
])
def test_evaluate_without_data_gives_the_run_s_recorded_test_scores(own, name, data):
    path, uri, run = trained(own, name, data)
    code, out, err = xrun("evaluate", run.info.run_id, "--tracking-uri", uri, "--no-log", "--format", "json")
    assert code == 0, err
    scores = __import__("json").loads(out)
    assert scores["images"] == 18  # test_split 0.2 of each class's 30: 6 + 6 + 6
    assert scores["accuracy"] == pytest.approx(run.data.metrics["test_accuracy"], abs=1e-7)  # Keras's is float32
    assert scores["loss"] == pytest.approx(run.data.metrics["test_loss"], abs=1e-5)
    code, out, err = xrun("evaluate", run.info.run_id, "--tracking-uri", uri, "--no-log", "--format", "json",
                          "--data", str(path))  # the experiment YAML's data section: the same split
    assert code == 0, err
    assert __import__("json").loads(out)["accuracy"] == pytest.approx(run.data.metrics["test_accuracy"], abs=1e-7)


def test_a_run_s_image_reading_comes_back_from_its_params():
    from runner.trained.data import run_image_options

    params = {"data.color_mode": "grayscale", "data.image_size": "[28, 28]", "data.crop_to_aspect_ratio": "false",
              "data.path": "pics", "data.interpolation": "bilinear"}
    assert run_image_options(params) == {"image_size": [28, 28], "color_mode": "grayscale",
                                         "crop_to_aspect_ratio": False, "interpolation": "bilinear"}
