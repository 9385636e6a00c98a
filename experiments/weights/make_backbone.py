"""Writes mnist_mobilenet_025.weights.h5 beside this file: the 'pretrained' backbone experiments/finetune_phases.yaml
fine-tunes. MobileNet at width 0.25 (218,544 weights), trained with a Dense(10) head for five epochs on 10,000 MNIST
digits (train[30000:40000]), padded to 32x32 and repeated to 3 channels as the experiment's first layers do; seed 0.

    XRUN_DATA_DIR=/work/shared/datasets .venv/bin/python experiments/weights/make_backbone.py
"""

import os
from pathlib import Path

import keras
import numpy as np

OUT = Path(__file__).resolve().parent / "mnist_mobilenet_025.weights.h5"


def main() -> None:
    keras.utils.set_random_seed(0)
    with np.load(Path(os.environ["XRUN_DATA_DIR"]) / "mnist.npz") as mnist:
        x, y = mnist["x_train"][30000:40000, :, :, None] / 255.0, mnist["y_train"][30000:40000]
    backbone = keras.applications.MobileNet(weights=None, include_top=False, alpha=0.25, pooling="avg",
                                            input_shape=(32, 32, 3))
    inputs = keras.Input((28, 28, 1))
    padded = keras.layers.ZeroPadding2D(2)(inputs)
    features = backbone(keras.layers.Concatenate()([padded, padded, padded]))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(features))
    model.compile(optimizer=keras.optimizers.Adam(0.002), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=5, batch_size=64, verbose=2)
    backbone.save_weights(OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
