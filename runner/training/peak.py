"""This machine's training speed, measured once and cached: a convolution's training FLOP/s and fit's per-step
overhead, and beside them the seconds of each layer, update and loss measured here (runner.training.step_time).

The figures depend on the CPU (model, flags, cores), the GPU if any, TensorFlow's version and whether its oneDNN
kernels are on, so the cache in
~/.cache/xrun/machine.json (or $XRUN_CACHE_DIR) is keyed by those; a second call reads it instead of measuring.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import statistics
import time
from pathlib import Path

CONV_SHAPE = (64, 14, 14, 32, 64, 3)  # batch, height, width, in, out channels, kernel: a mid-sized MNIST conv


def cache_file() -> Path:
    return Path(os.environ.get("XRUN_CACHE_DIR") or Path.home() / ".cache" / "xrun") / "machine.json"


def _cpu() -> tuple[str, str]:
    """The CPU's model name and flags, as /proc/cpuinfo gives them (the processor name elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor(), ""
    found = {k: re.search(rf"^{k}\s*:\s*(.*)$", text, re.M) for k in ("model name", "flags")}
    return tuple(m.group(1).strip() if m else "" for m in found.values())


def machine_key() -> str:
    """What the figures depend on: CPU model, flags, usable cores, GPUs, TensorFlow's version and kernels."""
    from runner.training.settings import onednn_enabled

    tf = _tf()
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    parts = [*_cpu(), str(len(os.sched_getaffinity(0))), ",".join(gpus), tf.__version__, f"onednn={onednn_enabled()}"]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


TIMINGS = "timings"  # beside a machine's figures: seconds of the layers, updates and losses measured on it


def machine(measure=None) -> dict:
    """This machine's figures (see `measure`), from the cache when it has them for this machine."""
    key = machine_key()
    entry = _read(cache_file()).get(key, {})
    if "flops" not in entry:
        figures = {**(measure or measure_machine)(), "cpu": _cpu()[0]}
        entry = _change(key, lambda old: {**old, **figures})
    return {k: v for k, v in entry.items() if k != TIMINGS}


# A timing taken while other work had this much more of the machine (1-minute load average) than now is taken
# again, and the quicker kept: a layer first measured on a busy machine is not slow for ever.
QUIETER_BY = 1.0


def timed(measures: dict, load: float | None = None) -> dict[str, float]:
    """Seconds for each key of `measures` (key -> a function measuring them): the cached ones read, the others (and
    those cached on a busier machine than now) measured, each once, and cached together in one write."""
    key, load = machine_key(), os.getloadavg()[0] if load is None else load
    known = _read(cache_file()).get(key, {}).get(TIMINGS, {})
    stale = [k for k in measures if k not in known or known[k]["load"] > load + QUIETER_BY]
    fresh = {k: {"seconds": min(measures[k](), known.get(k, {}).get("seconds", math.inf)), "load": load}
             for k in stale}
    if fresh:
        _change(key, lambda old: {**old, TIMINGS: {**old.get(TIMINGS, {}), **fresh}})
    return {k: {**known, **fresh}[k]["seconds"] for k in measures}


def _change(key: str, change) -> dict:
    """This machine's entry changed by `change`, written whole; the file is read again first, so what another
    process wrote meanwhile is kept."""
    path = cache_file()
    cached = _read(path)
    cached[key] = change(cached.get(key, {}))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(cached, indent=1, sort_keys=True) + "\n")
    os.replace(partial, path)  # whole: another process measuring at once never reads half a file
    return cached[key]


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # none yet, or unreadable: measured again
        return {}


def measure_machine() -> dict:
    """`flops` (a conv's forward and backward, FLOP/s: the rate a run's GFLOP/s are compared with) and
    `step_overhead` (seconds per step of fit on a model with almost no arithmetic). A few seconds in all."""
    return {"flops": conv_rate(), "step_overhead": fit_overhead()}


def _tf():
    from runner.training.settings import import_tensorflow

    return import_tensorflow()


def fastest(call, seconds: float, at_most: int | None = None) -> float:
    """The fastest of timed calls of `call`, after one that warms it up (traces it): calls until `seconds` are
    spent in them, and no more than `at_most`."""
    call()
    best, spent, calls = math.inf, 0.0, 0
    while spent < seconds and (at_most is None or calls < at_most):
        started = time.perf_counter()
        call()
        took = time.perf_counter() - started
        best, spent, calls = min(best, took), spent + took, calls + 1
    return best


def conv_rate(seconds: float = 1.0) -> float:
    """FLOP/s of a 3x3 conv's training step (forward, input and kernel gradients) at CONV_SHAPE, float32."""
    tf = _tf()
    n, h, w, cin, cout, k = CONV_SHAPE
    # Stateless draws: measuring in a run's process must not move its seeded random state.
    x = tf.Variable(tf.random.stateless_normal((n, h, w, cin), seed=(1, 2)))
    kernel = tf.Variable(tf.random.stateless_normal((k, k, cin, cout), seed=(3, 4)))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(tf.nn.conv2d(x, kernel, strides=1, padding="SAME"))
        return tape.gradient(total, [x, kernel])

    flops = 3 * 2 * k * k * cin * cout * h * w * n
    return flops / fastest(lambda: [g.numpy() for g in step()], seconds)


def fit_overhead(steps: int = 30) -> float:
    """Seconds per step of fit() through xrun's pipeline on a model that does almost no arithmetic (Flatten and
    a 10-unit Dense on 8 MNIST-sized images)."""
    import keras
    import numpy as np

    from runner.training import pipeline

    # Named, and zeros: neither Keras's layer-name counters nor its seed generator move (a run's model is named
    # and seeded as it would be without this).
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(name="xrun_probe_flatten"),
                              keras.layers.Dense(10, kernel_initializer="zeros", name="xrun_probe_dense",
                                                 dtype="float32")], name="xrun_probe")
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    data = pipeline.train_dataset(rng.integers(0, 255, (64, 28, 28), dtype="uint8"), rng.integers(0, 10, 64),
                                  batch_size=8, shuffle=False, seed=0, augmentation=None, one_hot_classes=10)
    clock = StepClock()
    model.fit(data, epochs=2, steps_per_epoch=steps, verbose=0, callbacks=[clock], shuffle=False)
    return statistics.median(clock.seconds)


def StepClock():  # noqa: N802  (a class made on demand, so that this module imports without Keras)
    """A Keras callback keeping each training step's wall time after the first epoch (which traces)."""
    import keras

    class _StepClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds, self.epoch, self.started = [], 0, 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_begin(self, batch, logs=None):
            self.started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch > 0:
                self.seconds.append(time.perf_counter() - self.started)

    return _StepClock()
