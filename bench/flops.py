"""Training FLOPs of a built Keras model, counted per layer, and the machine's own limit measured on the same cores.

The counting lives in runner/model/cost.py (forward FLOPs per image from each layer's shapes, a multiply-add being
2 FLOPs; a training step about three forwards), re-exported here for the bench scripts.
The peak is measured, not looked up: a large matmul, and a forward-and-backward pass of the model's own largest
convolution, in float32 and in the dtype the model computes in (bfloat16 under mixed precision), timed in the same
process as the training they are compared with.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The counting is the runner's (`xrun summary` predicts from it); bench adds the peaks measured beside a run.
from runner.model.cost import (  # noqa: E402, F401
    COUNTERS,
    TRAIN_FACTOR,
    _conv,
    compute_dtype,
    forward_flops,
    largest_conv,
    training_flops_per_image,
)
from runner.training.peak import fastest  # noqa: E402


def _best_rate(step, flops: float, seconds: float = 2.0) -> float:
    """FLOP/s of the fastest of repeated calls of `step` over about `seconds` (after one warm-up call)."""
    return flops / fastest(step, seconds)


def matmul_peak(n: int = 2048, dtype: str = "float32") -> float:
    """FLOP/s of an n x n matmul in `dtype` on this process's threads."""
    import tensorflow as tf

    a, b = tf.random.normal((n, n), dtype=dtype), tf.random.normal((n, n), dtype=dtype)
    return _best_rate(lambda: tf.linalg.matmul(a, b).numpy(), 2.0 * n ** 3)


def conv_peak(layer, batch: int = 128, dtype: str = "float32") -> float:
    """FLOP/s of a forward-and-backward pass of `layer`'s convolution at `batch` images in `dtype`, as training
    does it."""
    import tensorflow as tf

    # Variables: the gradients of both are wanted, as in training.
    x = tf.Variable(tf.random.normal((batch, *layer.input.shape[1:]), dtype=dtype))
    kernel = tf.Variable(tf.random.normal((*layer.kernel_size, layer.input.shape[-1], layer.filters), dtype=dtype))
    strides, padding = list(layer.strides), layer.padding.upper()

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(tf.nn.conv2d(x, kernel, strides=strides, padding=padding))
        return tape.gradient(total, [x, kernel])

    return _best_rate(lambda: [g.numpy() for g in step()], TRAIN_FACTOR * batch * _conv(layer))


def peaks(model) -> dict[str, float]:
    """The matmul and largest-conv peaks, in float32 and (if it differs) the model's compute dtype:
    `matmul`, `conv`, `matmul_bfloat16`, `conv_bfloat16`."""
    conv, out = largest_conv(model), {}
    for dtype in dict.fromkeys(("float32", compute_dtype(model))):
        suffix = "" if dtype == "float32" else f"_{dtype}"
        out[f"matmul{suffix}"] = matmul_peak(dtype=dtype)
        if conv is not None:
            out[f"conv{suffix}"] = conv_peak(conv, dtype=dtype)
    return out
