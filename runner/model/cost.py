"""What training a built model costs, counted from its layers: FLOPs per image, and bytes at a batch size.

Forward FLOPs per image come from each layer's shapes (a multiply-add is 2 FLOPs); a training step costs about
three forwards (the forward, the gradient with respect to the inputs and the one with respect to the weights).
Memory is the state that lives through training (weights, gradients, optimizer slots) plus what one step holds:
the input batch, the activations the backward pass reads, the two gradients in flight at the widest layer, the
buffers TensorFlow's own CPU kernels for a convolution's gradients allocate (none under oneDNN's), and the
temporaries the optimizer's update of the largest weight holds. The step's time is measured, layer by layer, in
runner.training.step_time.
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

# Temporaries of a weight's size one update holds at its peak, by (optimizer, slots): TensorFlow's allocator peak
# of one apply() on a 16 MiB variable, less the variable, slots and gradient (bench/predict_cost.py --update):
# each element-wise step of the update formula (Adadelta's accumulators, square roots and quotient) is a tensor.
UPDATE_TEMPORARIES = {("Adadelta", 2): 4, ("Adam", 2): 2, ("RMSprop", 1): 3, ("SGD", 0): 1, ("SGD", 1): 2}
MOST_TEMPORARIES = 4  # an optimizer not measured: the most of those measured


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
    update_temporaries: int

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


def update_temporaries(optimizer, slots: int | None = None) -> int:
    """Temporaries of a weight's size the update of `optimizer` (with `slots`, when already counted) holds at
    once (UPDATE_TEMPORARIES)."""
    slots = optimizer_slots(optimizer) if slots is None else slots
    return UPDATE_TEMPORARIES.get((type(optimizer).__name__, slots), MOST_TEMPORARIES)


def conv_workspace(model, kernels: str = "tensorflow") -> int:
    """The largest buffers a convolution's gradients allocate from TensorFlow's allocator, by the kernels in use
    (KERNELS): "tensorflow", its own CPU kernels; "onednn", oneDNN's; "gpu", cuDNN's."""
    return KERNELS[kernels](model)


def _im2col_workspace(model) -> int:
    """TensorFlow's own CPU kernels: im2col buffers of whole images' patches, as many as fit a 30 MiB working set
    (tensorflow/core/kernels/conv_grad_*_ops.cc), allocated whatever the batch; the kernel gradient's and the
    input gradient's run at once (none for a conv on the model's input)."""
    inputs = {id(t) for t in model.inputs}
    sizes = [_im2col_bytes(layer) * (1 if id(layer.input) in inputs else 2) for layer in model.layers
             if type(layer).__name__ == "Conv2D"]
    return max(sizes, default=0)


def _im2col_bytes(layer) -> int:
    out_image = _size(layer.output.shape[1:-1])
    patch = _size(layer.kernel_size) * layer.input.shape[-1]
    per_image = out_image * patch + out_image * layer.filters + patch * layer.filters
    return 4 * math.ceil(WORKING_SET / per_image) * out_image * patch


# A convolution's gradient buffers by kernels. oneDNN's (xrun's default on x86-64) take next to nothing from
# TensorFlow's allocator: at batch 128 its peak over a conv's two gradients was their results plus 0-0.2 MiB for
# kernels up to 1 MiB and 3.4-3.6 MiB for kernels of 12-25 MiB (bench/predict_cost.py --conv), against the 17-58
# MiB of im2col buffers of TensorFlow's own kernels. On a GPU cuDNN chooses its own workspace, not counted.
KERNELS = {"tensorflow": _im2col_workspace, "onednn": lambda model: 0, "gpu": lambda model: 0}


def training_memory(model, batch: int, slots: int, temporaries: int = 0, kernels: str = "tensorflow") -> Memory:
    """Predicted peak bytes of training `model` at `batch` images with an optimizer of `slots` slots per weight
    whose update holds `temporaries` copies of the largest weight, its convolutions run by `kernels`."""
    trainable = _variable_bytes(model.trainable_weights)
    largest = max((_variable_bytes([v]) for v in model.trainable_weights), default=0)
    return Memory(weights=_variable_bytes(model.weights), gradients=trainable, optimizer_slots=slots * trainable,
                  activations=activation_bytes(model, batch), gradients_in_flight=gradients_in_flight(model, batch),
                  input_batch=input_bytes(model, batch), conv_workspace=conv_workspace(model, kernels),
                  update_temporaries=temporaries * largest)
