"""A model's parameter count from its graph and input shape alone, by the arithmetic Keras's layers follow, so
`xrun list` needs no TensorFlow; None where a layer's count is not plain arithmetic (KerasLayer: any Keras class).

The defaults below are Keras's own (the schema leaves them to Keras); tests/test_catalogue.py checks every count
against Keras's `count_params()` for every shipped experiment and for each layer kind.
"""

from __future__ import annotations

import math
from typing import Callable

from runner.language.graph import INPUT, Graph, Node

Shape = tuple  # one example's shape (no batch axis)
# (node's arguments, its input shapes) -> (its output shape, its parameter count)
Rule = Callable[[dict, list[Shape]], tuple[Shape, int]]


class Unknown(Exception):
    """A layer whose count is not arithmetic here."""


class DoesNotFit(Exception):
    """A kernel or pool larger than the feature map it slides over: the model does not build."""

    def __init__(self, message: str):
        super().__init__(message)
        self.node: Node | None = None  # the layer, filled in by count_params


def count_params(graph: Graph, input_shape: list[int] | tuple) -> int | None:
    """Every weight of the model (trainable or not, as Keras's count_params()), or None when not known here;
    DoesNotFit (with its node) for a window larger than its input."""
    shapes = {INPUT: tuple(input_shape)}
    total = 0
    for node in graph.nodes:
        try:
            shapes[node.name], count = _layer(node, [shapes[r] for r in node.inputs])
        except DoesNotFit as exc:
            exc.node = node
            raise
        except (Unknown, KeyError, IndexError, TypeError, ValueError, ZeroDivisionError):
            return None  # not ours to say: the layer's own build (summary, run) says what is wrong, if anything
        total += count
    return total


def _layer(node: Node, inputs: list[Shape]) -> tuple[Shape, int]:
    rule = RULES.get(node.type)
    if rule is None:
        raise Unknown(node.type)
    return rule(node.args, inputs)


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _spatial(size: int | None, window: int, stride: int, padding: str, dilation: int = 1) -> int | None:
    if size is None:
        return None
    if padding.lower() == "same":
        return -(-size // stride)
    span = dilation * (window - 1) + 1
    return (size - span) // stride + 1


def _window_out(args: dict, shape: Shape, window: tuple, stride: tuple, channels: int, word: str = "kernel") -> Shape:
    dilation = _pair(args.get("dilation_rate") or 1)
    padding = args.get("padding") or "valid"
    if len(shape) != 3:
        raise Unknown("not an image")
    h, w = (_spatial(shape[i], window[i], stride[i], padding, dilation[i]) for i in (0, 1))
    if any(d is not None and d < 1 for d in (h, w)):
        raise DoesNotFit(f"{window[0]}x{window[1]} {word} does not fit its {shape[0]}x{shape[1]} input")
    return (h, w, channels)


def _conv(args: dict, inputs: list[Shape]) -> tuple[Shape, int]:
    shape, filters = inputs[0], args["filters"]
    kernel = _pair(args["kernel_size"])
    weights = math.prod(kernel) * (shape[-1] // (args.get("groups") or 1)) * filters
    out = _window_out(args, shape, kernel, _pair(args.get("strides") or 1), filters)
    return out, weights + _bias(args, filters)


def _separable(args: dict, inputs: list[Shape]) -> tuple[Shape, int]:
    shape, filters = inputs[0], args["filters"]
    kernel, multiplier = _pair(args["kernel_size"]), args.get("depth_multiplier") or 1
    weights = math.prod(kernel) * shape[-1] * multiplier + shape[-1] * multiplier * filters
    out = _window_out(args, shape, kernel, _pair(args.get("strides") or 1), filters)
    return out, weights + _bias(args, filters)


def _depthwise(args: dict, inputs: list[Shape]) -> tuple[Shape, int]:
    shape, kernel = inputs[0], _pair(args["kernel_size"])
    channels = shape[-1] * (args.get("depth_multiplier") or 1)
    out = _window_out(args, shape, kernel, _pair(args.get("strides") or 1), channels)
    return out, math.prod(kernel) * channels + _bias(args, channels)


def _transpose(args: dict, inputs: list[Shape]) -> tuple[Shape, int]:
    shape, filters = inputs[0], args["filters"]
    kernel, stride = _pair(args["kernel_size"]), _pair(args.get("strides") or 1)
    dilation, same = _pair(args.get("dilation_rate") or 1), (args.get("padding") or "valid").lower() == "same"
    size = [None if n is None else n * s + (0 if same else max(d * (k - 1) + 1 - s, 0))
            for n, k, s, d in zip(shape[:2], kernel, stride, dilation)]
    return (*size, filters), math.prod(kernel) * shape[-1] * filters + _bias(args, filters)


def _bias(args: dict, n: int) -> int:
    return n if args.get("use_bias", True) else 0


def _pooling(args: dict, inputs: list[Shape]) -> tuple[Shape, int]:
    shape = inputs[0]
    window = _pair(args.get("pool_size") or 2)
    stride = _pair(args.get("strides") or window)
    return _window_out({"padding": args.get("padding")}, shape, window, stride, shape[-1], "pool"), 0


def _global_pooling(args: dict, inputs: list[Shape]) -> tuple[Shape, int]:
    channels = inputs[0][-1]
    return ((1, 1, channels) if args.get("keepdims") else (channels,)), 0


def _axis_size(args: dict, shape: Shape) -> int:
    axis = args.get("axis", -1)
    if not isinstance(axis, int):
        raise Unknown("several axes")
    return shape[axis if axis < 0 else axis - 1]  # Keras counts the batch axis as 0


def _batch_norm(args: dict, inputs: list[Shape]) -> tuple[Shape, int]:
    n = _axis_size(args, inputs[0])
    return inputs[0], n * (2 + args.get("center", True) + args.get("scale", True))  # + moving mean and variance


def _layer_norm(args: dict, inputs: list[Shape]) -> tuple[Shape, int]:
    n = _axis_size(args, inputs[0])
    return inputs[0], n * (args.get("center", True) + args.get("scale", True))


def _same(args: dict, inputs: list[Shape]) -> tuple[Shape, int]:
    return inputs[0], 0


def _flatten(args: dict, inputs: list[Shape]) -> tuple[Shape, int]:
    return (math.prod(inputs[0]),), 0


def _reshape(args: dict, inputs: list[Shape]) -> tuple[Shape, int]:
    target = list(args["target_shape"])
    if -1 in target:
        known = math.prod(d for d in target if d != -1)
        target[target.index(-1)] = math.prod(inputs[0]) // known
    return tuple(target), 0


def _zero_padding(args: dict, inputs: list[Shape]) -> tuple[Shape, int]:
    padding = args.get("padding", 1)  # n, [rows, columns] or [[top, bottom], [left, right]]
    rows, cols = ((p, p) if isinstance(p, int) else tuple(p) for p in _pair(padding))
    h, w, c = inputs[0]
    return (None if h is None else h + sum(rows), None if w is None else w + sum(cols), c), 0


def _dense(args: dict, inputs: list[Shape]) -> tuple[Shape, int]:
    shape, units = inputs[0], args["units"]
    return (*shape[:-1], units), shape[-1] * units + _bias(args, units)


def _prelu(args: dict, inputs: list[Shape]) -> tuple[Shape, int]:
    shared = args.get("shared_axes") or []
    shared = [shared] if isinstance(shared, int) else shared
    return inputs[0], math.prod(1 if i + 1 in shared else d for i, d in enumerate(inputs[0]))


def _concatenate(args: dict, inputs: list[Shape]) -> tuple[Shape, int]:
    axis = args.get("axis", -1)
    axis = axis if axis < 0 else axis - 1
    out = list(inputs[0])
    out[axis] = sum(s[axis] for s in inputs)
    return tuple(out), 0


RULES: dict[str, Rule] = {
    "Conv2D": _conv, "SeparableConv2D": _separable, "DepthwiseConv2D": _depthwise, "Conv2DTranspose": _transpose,
    "MaxPooling2D": _pooling, "AveragePooling2D": _pooling, "GlobalAveragePooling2D": _global_pooling,
    "GlobalMaxPooling2D": _global_pooling, "BatchNormalization": _batch_norm, "LayerNormalization": _layer_norm,
    "Dropout": _same, "SpatialDropout2D": _same, "GaussianNoise": _same, "Rescaling": _same, "Activation": _same,
    "ELU": _same, "ReLU": _same, "LeakyReLU": _same, "Softmax": _same, "Flatten": _flatten, "Reshape": _reshape,
    "ZeroPadding2D": _zero_padding, "Dense": _dense, "PReLU": _prelu, "Concatenate": _concatenate,
    "Add": _same, "Multiply": _same, "Average": _same, "Maximum": _same,
}
