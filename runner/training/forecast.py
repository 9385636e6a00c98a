"""Before training: the step's peak memory and time on this machine, and a refusal where the memory does not fit;
during it: the GFLOP/s achieved and their share of the machine's measured rate."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import keras

from runner.errors import XrunError
from runner.model import cost
from runner.training import build, peak, step_time


def forecast(config, model) -> dict:
    """The prediction `xrun summary` shows: memory by part, step seconds by part, against this machine."""
    machine, batch = peak.machine(), config.training.batch_size
    optimizer = _optimizer(config)
    step = step_time.step_seconds(model, batch, optimizer, build.loss(config.loss))
    return {"batch_size": batch, "optimizer": config.optimizer.type, "optimizer_slots": cost.optimizer_slots(optimizer),
            "training_flops_per_image": cost.training_flops_per_image(model),
            "memory": memory(model, batch, optimizer).as_dict(),
            "available_memory": available_memory(), "step_seconds": step, "machine": machine}


def _optimizer(config):
    return build.optimizer(config.optimizer, 1, config.training.epochs)


def memory(model, batch: int, optimizer) -> cost.Memory:
    """The predicted peak bytes of training `model` with `optimizer` here, with the convolution kernels in use."""
    slots = cost.optimizer_slots(optimizer)
    return cost.training_memory(model, batch, slots, cost.update_temporaries(optimizer, slots), kernels())


def kernels() -> str:
    """Which kernels run this process's convolutions (a key of cost.KERNELS)."""
    from runner.training.settings import onednn_enabled

    return "gpu" if _on_gpu() else "onednn" if onednn_enabled() else "tensorflow"


def check_fits(config, model) -> None:
    """Refuse, at training.batch_size's line, a training whose predicted memory exceeds what is available."""
    batch = config.training.batch_size
    predicted = memory(model, batch, _optimizer(config)).as_dict()
    need, have = predicted["total"], available_memory()
    if have is None or need <= have:
        return
    fixed = need - _per_batch(predicted)
    fits = batch * (have - fixed) // (need - fixed) if have > fixed else 0
    raise XrunError(f"training at batch_size {batch} needs about {_mib(need)} ({_parts(predicted)}) but "
                    f"{_mib(have)} is available", where=config.locate(("training", "batch_size")),
                    path="training.batch_size",
                    hint=f"lower training.batch_size (about {fits} fits)" if fits else "a smaller model, or a "
                    "machine with more memory")


_PER_BATCH = ("activations", "gradients_in_flight", "input_batch")  # what a smaller batch shrinks


def _per_batch(memory: dict) -> int:
    return sum(memory[k] for k in _PER_BATCH)


def _parts(memory: dict) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {_mib(v)}" for k, v in memory.items() if k != "total" and v)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def available_memory() -> int | None:
    """Bytes training may still use: the first GPU's free memory when there is one, else the RAM available to
    this process (MemAvailable, or the cgroup's limit less its use when that is smaller)."""
    gpu = _gpu_free()
    if gpu is not None:
        return gpu
    meminfo = Path("/proc/meminfo")
    if not meminfo.exists():
        return None
    found = re.search(r"^MemAvailable:\s+(\d+) kB", meminfo.read_text(), re.M)
    ram = int(found.group(1)) * 1024 if found else None
    limit = _cgroup_room()
    return min(x for x in (ram, limit) if x is not None) if (ram or limit) else None


def _cgroup_room() -> int | None:
    top, used = Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")
    try:
        limit = top.read_text().strip()
        return None if limit == "max" else int(limit) - int(used.read_text())
    except (OSError, ValueError):
        return None


def _on_gpu() -> bool:
    return bool(peak._tf().config.list_physical_devices("GPU"))


def _gpu_free() -> int | None:
    if not _on_gpu() or not shutil.which("nvidia-smi"):
        return None
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits", "-i", "0"],
                         capture_output=True, text=True, check=False).stdout.strip()
    return int(out) * 2**20 if out.isdigit() else None


class Utilisation(keras.callbacks.Callback):
    """When training ends: the GFLOP/s achieved (training FLOPs per step x steps / the steps' wall time, the first
    step, which traces, left out) and their share of this machine's measured conv rate, handed to `log`."""

    def __init__(self, images_per_call: int, log):
        super().__init__()
        self.images_per_call, self.log = images_per_call, log  # a batch callback per step (per execution)
        self.calls, self.seconds, self.started = 0, 0.0, 0.0

    def on_train_batch_begin(self, batch, logs=None):
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.calls += 1
        if self.calls > 1:
            self.seconds += time.perf_counter() - self.started

    def on_train_end(self, logs=None):
        if self.seconds > 0:
            per_call = self.images_per_call * cost.training_flops_per_image(self.model)
            rate = per_call * (self.calls - 1) / self.seconds
            self.log(rate / 1e9, rate / peak.machine()["flops"])
