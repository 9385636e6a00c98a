"""What training a built model costs, counted from its layers: FLOPs per image, and bytes at a batch size.

Forward FLOPs per image come from each layer's shapes (a multiply-add is 2 FLOPs); a training step costs about
three forwards (the forward, the gradient with respect to the inputs and the one with respect to the weights).
Memory is the state that lives through training (weights, gradients, optimizer slots) plus what one step holds:
the input batch, the activations the backward pass reads, the two gradients in flight at the widest layer, and the
buffers TensorFlow's CPU kernels for a convolution's gradients allocate. The machine's side (its FLOP/s, memory bandwidth, per-step overhead) is measured in runner.training.peak.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

TRAIN_FACTOR = 3  # forward + d/d(inputs) + d/d(weights)


def _size(shape) -> int:
    return math.prod(d for d in shape if d is not None)


def _elements(tensors) -> int:
    """Elements per image of a layer's input or output: one tensor, or the sum of a merge's several."""
    import keras

    return sum(_size(t.shape[1:]) for t in keras.tree.flatten(tensors))


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


def compute_dtype(model) -> str:
    """The dtype the model's layers compute in (bfloat16 or float16 under mixed precision)."""
    return model.layers[0].dtype_policy.compute_dtype if model.layers else "float32"


# --- memory ------------------------------------------------------------------------------------------------

# Copies of a layer's output (per image) that live from its forward until its backward. Every layer's output is
# read by its own gradient or the next layer's (ReLU's gradient reads its output, a conv's or matmul's its input,
# max-pooling's both); Dropout also keeps its mask, as large as its output; a reshape aliases its input.
KEPT = {"Flatten": 0, "Reshape": 0, "InputLayer": 0, "Dropout": 2}
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}
WORKING_SET = (30 << 20) // 4  # float32 elements: TensorFlow's CPU conv-gradient kernels' im2col target


@dataclass(frozen=True)
class Memory:
    """Predicted peak bytes of training, by part, each counted whole: the parts of one step are taken to be live
    at once (the measurement in bench/predict_cost.py says how near that comes)."""

    weights: int
    gradients: int
    optimizer_slots: int
    activations: int
    gradients_in_flight: int
    input_batch: int
    conv_workspace: int

    @property
    def total(self) -> int:
        return sum(asdict(self).values())

    def as_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def _variable_bytes(variables) -> int:
    return sum(_size(v.shape) * DTYPE_BYTES.get(str(v.dtype), 4) for v in variables)


def activation_bytes(model, batch: int) -> int:
    """The layer outputs the backward pass reads, at `batch` images."""
    per_image = sum(KEPT.get(type(layer).__name__, 1) * _elements(layer.output) for layer in model.layers)
    return batch * per_image * DTYPE_BYTES[compute_dtype(model)]


def gradients_in_flight(model, batch: int) -> int:
    """The backward pass holds a layer's output gradient and its input gradient at once: the widest such pair."""
    pairs = [_elements(layer.input) + _elements(layer.output) for layer in model.layers
             if KEPT.get(type(layer).__name__) != 0]
    return batch * max(pairs, default=0) * DTYPE_BYTES[compute_dtype(model)]


def input_bytes(model, batch: int) -> int:
    """One batch of float32 inputs and one-hot (or index) targets, as the pipeline hands them to the step."""
    return batch * 4 * (_elements(model.inputs) + _elements(model.outputs))


def optimizer_slots(optimizer) -> int:
    """Slot variables the optimizer keeps per trained weight (Adam 2, SGD with momentum 1, plain SGD 0), read
    from the optimizer itself: a copy of it is built on one probe variable and its per-weight variables counted."""
    import keras

    probe = keras.Variable(keras.ops.zeros((7,)), name="probe")
    copy = type(optimizer).from_config(optimizer.get_config())
    copy.build([probe])
    return sum(_size(v.shape) for v in copy.variables if tuple(v.shape) == (7,)) // 7


def conv_workspace(model, on_gpu: bool = False) -> int:
    """The largest im2col buffers of TensorFlow's CPU kernels for a convolution's gradients: whole images'
    patches, as many as fit a 30 MiB working set (tensorflow/core/kernels/conv_grad_*_ops.cc), allocated whatever
    the batch; the kernel gradient's and the input gradient's run at once (none for a conv on the model's input).
    On a GPU cuDNN chooses its own workspace, which is not counted."""
    inputs = {id(t) for t in model.inputs}
    sizes = [_im2col_bytes(layer) * (1 if id(layer.input) in inputs else 2) for layer in model.layers
             if type(layer).__name__ == "Conv2D"]
    return 0 if on_gpu else max(sizes, default=0)


def _im2col_bytes(layer) -> int:
    out_image = _size(layer.output.shape[1:-1])
    patch = _size(layer.kernel_size) * layer.input.shape[-1]
    per_image = out_image * patch + out_image * layer.filters + patch * layer.filters
    return 4 * math.ceil(WORKING_SET / per_image) * out_image * patch


def training_memory(model, batch: int, slots: int, on_gpu: bool = False) -> Memory:
    """Predicted peak bytes of training `model` at `batch` images with an optimizer of `slots` slots per weight."""
    trainable = _variable_bytes(model.trainable_weights)
    return Memory(weights=_variable_bytes(model.weights), gradients=trainable, optimizer_slots=slots * trainable,
                  activations=activation_bytes(model, batch), gradients_in_flight=gradients_in_flight(model, batch),
                  input_batch=input_bytes(model, batch), conv_workspace=conv_workspace(model, on_gpu))


# --- time ----------------------------------------------------------------------------------------------------

# Bytes moved per byte of a kept activation in one step: written by the forward, read by the backward, and its
# gradient written and read. Per trained weight: the gradient read, the weight read and written, each slot too.
ACTIVATION_PASSES = 4
UPDATE_PASSES = 3


def step_seconds(model, batch: int, slots: int, machine: dict) -> dict:
    """Predicted seconds of one training step, by part: the FLOPs at the machine's measured conv rate, the
    activations' and the update's bytes at its measured bandwidth, and fit's measured per-step overhead."""
    trainable = _variable_bytes(model.trainable_weights)
    moved = ACTIVATION_PASSES * activation_bytes(model, batch) + (UPDATE_PASSES + 2 * slots) * trainable
    parts = {"arithmetic": batch * training_flops_per_image(model) / machine["flops"],
             "memory_traffic": moved / machine["bandwidth"], "overhead": machine["step_overhead"]}
    return {**parts, "total": sum(parts.values())}
