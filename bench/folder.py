"""Image-folder input: xrun's `source: image_folder` pipeline against keras.utils.image_dataset_from_directory.

    .venv/bin/python bench/folder.py                       # 4,000 64x64 RGB JPEGs, 6 epochs; ~6 min on 2 cores
    .venv/bin/python bench/folder.py --images 500 --size 32 --epochs 2 --memory-images 0   # smoke run

1. Throughput: the same folder, the same small conv net, the same batch size; images per second in each epoch
   (epoch 1 decodes the files; later epochs read xrun's memory cache, or Keras's dataset with `.cache()` as its
   guide recommends, and without). One process; the sides alternate epoch by epoch, so each sees similar load.
   The same model object type on every side (with a Rescaling layer: compute is equal, the numbers do not matter).
2. Peak memory: a folder whose decoded images are several times the memory a cache would take, one epoch
   streamed with `cache: none` and `cache: disk`, each in a fresh process (peak RSS from getrusage).
Timings are reported, never asserted; the JSON goes to --out (default bench/out/folder.json).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def make_folder(root: Path, n: int, size: int, classes: int = 4, seed: int = 0) -> Path:
    """n JPEG images in `classes` class folders; class k is brighter in channel k % 3 (so the net can learn)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n):
        k = i % classes
        mean = np.full(3, 80.0)
        mean[k % 3] += 90
        pixels = np.clip(rng.normal(mean, 40, (size, size, 3)), 0, 255).astype(np.uint8)
        folder = root / f"class{k}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=90)
    return root


def experiment(root: Path, size: int, cache: str, batch: int) -> Path:
    text = f"""name: bench_folder
data: {{source: image_folder, path: {root}, image_size: [{size}, {size}], cache: {cache}, validation: none,
        test_split: 0.05}}
model:
  layers:
    - {{type: Conv2D, filters: 16, kernel_size: 3, strides: 2, activation: relu}}
    - {{type: Conv2D, filters: 32, kernel_size: 3, strides: 2, activation: relu}}
    - {{type: GlobalAveragePooling2D}}
    - {{type: Dense, units: 4, activation: softmax}}
optimizer: {{type: Adam, learning_rate: 0.003}}
loss: SparseCategoricalCrossentropy
training: {{epochs: 1, batch_size: {batch}, seed: 0}}
tracking: {{experiment: bench, log_model: false, log_images: false}}
"""
    path = root.parent / f"bench_{cache}.yaml"
    path.write_text(text)
    return path


def model(size: int):
    import keras

    return keras.Sequential([keras.Input((size, size, 3)), keras.layers.Rescaling(1 / 255.0),
                             keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
                             keras.layers.Conv2D(32, 3, strides=2, activation="relu"),
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4, activation="softmax")])


def xrun_dataset(root: Path, size: int, cache: str, batch: int):
    """xrun's training stream, built as `xrun run` builds it (sources.load, pipeline.split, train_dataset)."""
    from runner.language.spec import load_spec
    from runner.training import pipeline, sources

    spec = load_spec(experiment(root, size, cache, batch))
    data = sources.load(spec, None, 0)
    splits = pipeline.split(data, spec.data)
    ds = pipeline.train_dataset(splits.x_train, splits.y_train, batch_size=batch, shuffle=True, seed=0,
                                augmentation=None, one_hot_classes=None)
    return ds, pipeline.steps_per_epoch(len(splits.y_train), batch), len(splits.y_train)


def keras_dataset(root: Path, size: int, batch: int, cached: bool):
    import keras
    import tensorflow as tf

    ds = keras.utils.image_dataset_from_directory(root, image_size=(size, size), batch_size=batch, shuffle=True,
                                                  seed=0, verbose=False)
    ds = ds.cache() if cached else ds
    return ds.prefetch(tf.data.AUTOTUNE)


def throughput(root: Path, size: int, batch: int, epochs: int) -> dict:
    """Images per second per epoch for each side; the sides alternate epoch by epoch on the shared machine."""
    import keras

    from runner.training.settings import import_tensorflow

    import_tensorflow()
    xs, spe, n = xrun_dataset(root, size, "memory", batch)
    files = sum(1 for _ in root.rglob("*.jpg"))
    sides = {"xrun cache: memory": (xs, spe), "keras .cache()": (keras_dataset(root, size, batch, True), None),
             "keras (no cache)": (keras_dataset(root, size, batch, False), None)}
    models = {}
    for name in sides:
        keras.utils.set_random_seed(0)
        models[name] = model(size)
        models[name].compile("adam", "sparse_categorical_crossentropy", jit_compile=False)
    out = {name: [] for name in sides}
    for _ in range(epochs):
        for name, (ds, steps) in sides.items():
            started = time.perf_counter()
            history = models[name].fit(ds, epochs=1, steps_per_epoch=steps, verbose=0)
            seconds = time.perf_counter() - started
            count = n if steps else files
            out[name].append({"seconds": seconds, "images_per_second": count / seconds,
                              "loss": float(history.history["loss"][-1])})
    return out


def peak_memory(root: Path, size: int, batch: int, cache: str) -> dict:
    """One streamed epoch in a fresh process: its peak RSS and time."""
    code = f"""
import resource, sys, time
sys.path.insert(0, {str(REPO)!r})
sys.path.insert(0, {str(Path(__file__).parent)!r})
import folder
from runner.training.settings import import_tensorflow
import_tensorflow()
ds, spe, n = folder.xrun_dataset(folder.Path({str(root)!r}), {size}, {cache!r}, {batch})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
for _ in ds.take(spe):
    pass
print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - t, n)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before_kb, rss_kb, seconds, n = done.stdout.split()[-4:]
    return {"cache": cache, "peak_rss_mib": int(rss_kb) / 1024, "rss_before_epoch_mib": int(before_kb) / 1024,
            "seconds": float(seconds), "images": int(n), "images_per_second": int(n) / float(seconds)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--memory-images", type=int, default=12000, help="images (224x224) for the memory test")
    parser.add_argument("--out", default=str(REPO / "bench" / "out" / "folder.json"))
    args = parser.parse_args(argv)
    result = {"args": vars(args), "load_before": list(np.round(__import__("os").getloadavg(), 2))}
    with tempfile.TemporaryDirectory(prefix="xrun-bench-folder-") as tmp:
        root = make_folder(Path(tmp) / "images", args.images, args.size)
        result["throughput"] = throughput(root, args.size, args.batch, args.epochs)
        if args.memory_images:
            big = make_folder(Path(tmp) / "big", args.memory_images, 224)
            result["decoded_mib"] = args.memory_images * 224 * 224 * 3 * 0.95 / 2**20
            result["memory"] = [peak_memory(big, 224, args.batch, c) for c in ("none", "disk", "memory")]
    result["load_after"] = list(np.round(__import__("os").getloadavg(), 2))
    later = {name: [e["images_per_second"] for e in epochs[1:]] for name, epochs in result["throughput"].items()}
    result["median_images_per_second_after_epoch_1"] = {k: float(np.median(v)) for k, v in later.items() if v}
    xrun, keras = later["xrun cache: memory"], later["keras .cache()"]
    # Epoch by epoch (neighbouring epochs see nearly the same load), then the median.
    result["ratio_xrun_to_keras_cache_median"] = float(np.median(np.array(xrun) / np.array(keras))) if xrun else None
    first = {name: epochs[0]["images_per_second"] for name, epochs in result["throughput"].items()}
    result["epoch_1_images_per_second"] = first
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in result if k not in ("throughput",)}, indent=1))
    return 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
