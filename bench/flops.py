"""Training FLOPs of a built Keras model, counted per layer, and the machine's own limit measured on the same cores.

Forward FLOPs per image are counted from each layer's shapes (a multiply-add is 2 FLOPs); a training step costs
about three forwards (the forward, the gradient with respect to the inputs and the one with respect to the weights).
The peak is measured, not looked up: a large matmul, and a forward-and-backward pass of the model's own largest
convolution, in float32 and in the dtype the model computes in (bfloat16 under mixed precision), timed in the same
process as the training they are compared with.
"""

from __future__ import annotations

import math
import time

TRAIN_FACTOR = 3  # forward + d/d(inputs) + d/d(weights)


def _size(shape) -> int:
    return math.prod(d for d in shape if d is not None)


def _conv(layer) -> int:
    k = _size(layer.kernel_size) * layer.input.shape[-1] // max(getattr(layer, "groups", 1), 1)
    return 2 * k * _size(layer.output.shape[1:])


def _dense(layer) -> int:
    return 2 * layer.input.shape[-1] * _size(layer.output.shape[1:])


def _depthwise(layer) -> int:
    return 2 * _size(layer.kernel_size) * _size(layer.output.shape[1:])


def _separable(layer) -> int:
    depthwise = 2 * _size(layer.kernel_size) * _size(layer.input.shape[1:-1]) * layer.input.shape[-1]
    pointwise = 2 * layer.input.shape[-1] * _size(layer.output.shape[1:])
    return depthwise + pointwise


def _pool(layer) -> int:
    return _size(layer.pool_size) * _size(layer.output.shape[1:])


def _elementwise(per_element: int):
    return lambda layer: per_element * _size(layer.output.shape[1:])


# Forward FLOPs per image, by layer class; layers not listed (Flatten, Dropout at inference cost, reshapes) are free.
COUNTERS = {
    "Conv2D": _conv, "Dense": _dense, "DepthwiseConv2D": _depthwise, "SeparableConv2D": _separable,
    "MaxPooling2D": _pool, "AveragePooling2D": _pool,
    "BatchNormalization": _elementwise(4), "Activation": _elementwise(1), "Add": _elementwise(1),
    "ReLU": _elementwise(1), "Softmax": _elementwise(5),
}


def forward_flops(model) -> dict[str, int]:
    """Forward FLOPs per image for each layer of `model` that does arithmetic (name -> FLOPs)."""
    return {layer.name: COUNTERS[type(layer).__name__](layer) for layer in model.layers
            if type(layer).__name__ in COUNTERS}


def training_flops_per_image(model) -> int:
    return TRAIN_FACTOR * sum(forward_flops(model).values())


def largest_conv(model):
    """The Conv2D with the most forward FLOPs: the shape whose speed bounds the model's."""
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    return max(convs, key=_conv) if convs else None


def _best_rate(step, flops: float, seconds: float = 2.0) -> float:
    """FLOP/s of the fastest of repeated calls of `step` over about `seconds` (after one warm-up call)."""
    step()
    best, deadline = math.inf, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - started)
    return flops / best


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


def compute_dtype(model) -> str:
    """The dtype the model's layers compute in (bfloat16 or float16 under mixed precision)."""
    return model.layers[0].dtype_policy.compute_dtype if model.layers else "float32"


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
