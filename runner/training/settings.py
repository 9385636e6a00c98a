"""How a run uses the machine (precision, XLA, steps per execution, seeds, determinism), and TensorFlow imported quietly."""

from __future__ import annotations

import os
import platform
import secrets
import sys
from contextlib import contextmanager

from runner.language.config import Settings  # decided here, defined with the Config it is part of
from runner.language.sections import Training


def import_tensorflow():
    """TensorFlow, imported with its C++ start-up notices (CUDA probing, oneDNN, CPU features) silenced.

    Those lines are written to file descriptor 2 before any Python logging exists, so the only way to keep them
    out of a user's terminal is to point that descriptor elsewhere for the import. Python errors still raise.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull, _onednn_switched_on():
            os.dup2(devnull.fileno(), 2)
            import tensorflow
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return tensorflow


# TensorFlow's switch for its oneDNN kernels. Unset, TensorFlow turns them on by itself only on CPUs with
# AVX512_VNNI, AVX512_BF16 or AMX; on a 2-core AMD EPYC with AVX2 alone they trained model1 1.39x and model8 1.1x
# faster than TensorFlow's own kernels, op determinism on (bench/levers.py, bench/results.levers.json), so xrun
# turns them on for every x86-64 CPU. A value the user set is theirs and kept.
ONEDNN_SWITCH = "TF_ENABLE_ONEDNN_OPTS"
ONEDNN_MACHINES = frozenset({"x86_64", "amd64"})


@contextmanager
def _onednn_switched_on():
    """oneDNN on for this process's TensorFlow, the environment left as the user had it afterwards (a script or
    notebook xrun starts, or the bench's Keras script, gets TensorFlow's own choice)."""
    if ONEDNN_SWITCH in os.environ or platform.machine().lower() not in ONEDNN_MACHINES:
        yield
        return
    os.environ[ONEDNN_SWITCH] = "1"
    try:
        yield
        onednn_enabled()  # TensorFlow reads the switch once, on first use: now, while it is set
    finally:
        os.environ.pop(ONEDNN_SWITCH, None)


def onednn_enabled() -> bool:
    """Whether this process's TensorFlow runs its oneDNN kernels (recorded with each run); False where TensorFlow
    does not say (its private module is pinned to exist in the versions xrun supports)."""
    import_tensorflow()  # through xrun, so that asking never imports TensorFlow without the switch
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return False
    return bool(_pywrap_util_port.IsMklEnabled())


def settings_for(training: Training) -> Settings:
    """The `auto`s of the training section decided for this machine."""
    tf = import_tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    seed = training.seed
    return Settings(
        precision=_precision(training.precision, gpus),
        # XLA on a float32 CPU made the step slower, not faster: 0.34x for model1, 0.70x for model8 against
        # oneDNN's kernels (bench/levers.py, bench/results.levers.json), so `auto` keeps it for GPUs.
        jit_compile=bool(gpus) if training.jit_compile == "auto" else training.jit_compile,
        steps_per_execution=_steps_per_execution(training.steps_per_execution, gpus),
        device=_device_name(gpus),
        seed=seed if seed is not None else secrets.randbelow(2**31),
        seed_given=seed is not None,
        # Every run has a seed (given, or drawn and recorded in resolved.yaml), and on the CPU it repeats exactly
        # only with op determinism, which costs no measurable time there. Drawn seeds get it too, so the resolved
        # YAML reproduces the run. GPU kernels may lack deterministic versions, so GPU runs are left as they are.
        deterministic=not gpus,
        onednn=onednn_enabled())


def _precision(asked: str, gpus: list) -> str:
    if asked != "auto":
        return asked
    if not gpus:
        # A CPU with bfloat16 dot products (AVX512_BF16, AMX) trains every seed-004 model 1.3-2x faster under
        # mixed_bfloat16 (bench/README.md); without them bfloat16 is emulated and only slower.
        return "mixed_bfloat16" if cpu_has_bfloat16() else "float32"
    tf = import_tensorflow()
    # Tensor cores (compute capability 7.0+) make float16 fast; elsewhere it only costs accuracy.
    capable = [g for g in gpus if tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0))
               >= (7, 0)]
    return "mixed_float16" if capable else "float32"


# CPU feature flags (as Linux's /proc/cpuinfo names them) that mean bfloat16 arithmetic in hardware.
BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_has_bfloat16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU multiplies bfloat16 natively; False where that cannot be read (not Linux)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":  # every processor lists the same: the first says it
            return bool(BFLOAT16_FLAGS & set(value.split()))
    return False


def _steps_per_execution(asked, gpus: list) -> int:
    # On a GPU, small models are limited by Python round-trips per step; on the CPU the step itself dominates:
    # 8 steps per call gained 1.10x (model1) and 1.03x (model8), inside the noise of a shared 2-core CPU
    # (bench/results.levers.json), not enough to give up per-batch callbacks.
    return asked if asked != "auto" else (32 if gpus else 1)


def _device_name(gpus: list) -> str:
    if gpus:
        tf = import_tensorflow()
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"{len(gpus)}x GPU {details.get('device_name', '')}".strip()
    return f"CPU {platform.processor() or platform.machine()}"


@contextmanager
def applied(settings: Settings):
    """Precision, seeds and op determinism for this run; the process-wide switches are put back afterwards,
    so a later run (or test) in the same process starts from the same state."""
    import keras
    from tensorflow.python.framework import config as tf_config

    policy, deterministic = keras.mixed_precision.global_policy(), tf_config.is_op_determinism_enabled()
    keras.mixed_precision.set_global_policy(settings.precision)
    keras.utils.set_random_seed(settings.seed)
    _set_op_determinism(settings.deterministic)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(policy)
        _set_op_determinism(deterministic)


def _set_op_determinism(on: bool) -> None:
    tf = import_tensorflow()
    from tensorflow.python.framework import config as tf_config

    if on:
        tf.config.experimental.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()  # TensorFlow has no public switch back off
