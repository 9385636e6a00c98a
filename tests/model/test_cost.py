"""runner/model/cost.py: training memory and FLOPs of a built model, by hand-counted bytes and FLOPs."""

import math

import pytest

keras = pytest.importorskip("keras")

from runner.model import cost  # noqa: E402


def tiny(dropout: bool = False):
    """28x28x1 -> Conv2D(4, 3) relu (26x26x4) -> MaxPool 2 (13x13x4) -> Flatten (676) -> Dense(10) softmax."""
    layers = [keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
              *([keras.layers.Dropout(0.5)] if dropout else []), keras.layers.Dense(10, activation="softmax")]
    return keras.Sequential([keras.Input((28, 28, 1)), *layers])


def test_memory_of_a_tiny_model_is_counted_byte_by_byte():
    memory = cost.training_memory(tiny(), batch=8, slots=2)
    params = (3 * 3 * 1 * 4 + 4) + (13 * 13 * 4 * 10 + 10)  # 6810
    assert memory.weights == memory.gradients == 4 * params == 27_240
    assert memory.optimizer_slots == 2 * 4 * params == 54_480
    # Kept for the backward: the conv's output, the pool's, the dense layer's; Flatten aliases the pool's.
    assert memory.activations == 8 * 4 * (26 * 26 * 4 + 13 * 13 * 4 + 10) == 108_480
    # The widest (input, output) pair of gradients: the conv's 784 in and 2704 out.
    assert memory.gradients_in_flight == 8 * 4 * (784 + 2704) == 111_616
    assert memory.input_batch == 8 * 4 * (784 + 10) == 25_408
    # The conv's weight gradient: im2col patches (676 positions x 9) of ceil(30 MiB / 4 / (676*9 + 676*4 + 9*4))
    # images; a conv on the model's input needs no input gradient, so one buffer.
    assert memory.conv_workspace == 4 * math.ceil((30 << 20) / 4 / 8824) * 676 * 9 == 21_707_712
    assert memory.update_temporaries == 0  # none asked for
    assert memory.total == 27_240 * 2 + 54_480 + 108_480 + 111_616 + 25_408 + 21_707_712
    assert memory.as_dict()["total"] == memory.total


def test_under_onednn_no_conv_workspace_and_the_update_holds_copies_of_the_largest_weight():
    memory = cost.training_memory(tiny(), batch=8, slots=2, temporaries=4, kernels="onednn")
    assert memory.conv_workspace == 0
    assert memory.update_temporaries == 4 * (676 * 10 * 4) == 108_160  # the Dense kernel: 676 x 10 float32
    assert memory.total == 27_240 * 2 + 54_480 + 108_480 + 111_616 + 25_408 + 108_160


def test_dropout_keeps_its_mask_and_a_gpu_has_no_cpu_workspace():
    plain, dropped = tiny(), tiny(dropout=True)
    extra = cost.activation_bytes(dropped, 8) - cost.activation_bytes(plain, 8)
    assert extra == 2 * 8 * 4 * 676  # the dropout's output and its mask
    assert cost.training_memory(plain, 8, 0, kernels="gpu").conv_workspace == 0


def test_a_conv_after_another_needs_both_gradient_buffers():
    model = keras.Sequential([keras.Input((10, 10, 2)), keras.layers.Conv2D(3, 3), keras.layers.Conv2D(5, 3)])
    # Second conv: 6x6 positions, patches 3*3*3 = 27: a unit is 36*27 + 36*5 + 27*5 = 1287 elements.
    second = 4 * math.ceil((30 << 20) / 4 / 1287) * 36 * 27
    assert cost.conv_workspace(model) == 2 * second


@pytest.mark.parametrize(("optimizer", "slots"), [
    (lambda: keras.optimizers.SGD(), 0), (lambda: keras.optimizers.SGD(momentum=0.9), 1),
    (lambda: keras.optimizers.Adam(), 2), (lambda: keras.optimizers.Adam(amsgrad=True), 3),
    (lambda: keras.optimizers.Adadelta(), 2), (lambda: keras.optimizers.RMSprop(), 1),
])
def test_optimizer_slots_are_read_from_the_optimizer(optimizer, slots):
    assert cost.optimizer_slots(optimizer()) == slots


@pytest.mark.parametrize(("optimizer", "temporaries"), [
    (lambda: keras.optimizers.SGD(), 1), (lambda: keras.optimizers.SGD(momentum=0.9), 2),
    (lambda: keras.optimizers.Adam(), 2), (lambda: keras.optimizers.Adadelta(), 4),
    (lambda: keras.optimizers.RMSprop(), 3), (lambda: keras.optimizers.Adamax(), cost.MOST_TEMPORARIES),
])
def test_update_temporaries_by_optimizer_and_slots(optimizer, temporaries):
    assert cost.update_temporaries(optimizer()) == temporaries


def test_training_flops_are_three_forwards():
    flops = 3 * (2 * 9 * 4 * 676 + 4 * 676 + 2 * 676 * 10)  # conv, pool (4 per output), dense; per image
    assert cost.training_flops_per_image(tiny()) == flops == 194_688
