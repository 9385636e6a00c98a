"""A training step's seconds on this machine: each of the model's layers, its optimizer's update and its loss
measured once here (cached beside the machine's figures, runner.training.peak), plus fit's per-step overhead."""

from __future__ import annotations

import hashlib
import json
import math

from runner.training import peak

REPEATS = 3    # timed calls after the first (which traces): the fastest counts
ENOUGH = 0.3   # seconds: a layer this slow is timed once, so a large model's first summary stays short


def step_seconds(model, batch: int, optimizer, loss) -> dict:
    """Predicted seconds of one training step at `batch`, by part: the layers', the update's, the loss's and fit's
    overhead."""
    seconds = part_seconds(model, batch, optimizer, loss)
    parts = {"layers": sum(v for k, v in seconds.items() if k not in ("(update)", "(loss)")),
             "update": seconds["(update)"], "loss": seconds["(loss)"], "overhead": peak.machine()["step_overhead"]}
    return {**parts, "total": sum(parts.values())}


def part_seconds(model, batch: int, optimizer, loss) -> dict[str, float]:
    """Seconds of each layer (by name), of the update ("(update)") and of the loss ("(loss)") on this machine,
    each less the cost of calling a compiled function, which the training step pays once (in fit's overhead)."""
    fed = {id(t) for t in model.inputs}
    probes = {layer.name: layer_probe(layer, batch, fed) for layer in model.layers
              if type(layer).__name__ != "InputLayer"}
    probes |= {"(update)": update_probe(model, optimizer), "(loss)": loss_probe(model, batch, loss)}
    measured = peak.timed({**dict(probes.values()), CALL: _measure_call})
    return {name: max(measured[key] - measured[CALL], 0.0) for name, (key, _) in probes.items()}


CALL = "(call)"  # the cache key of an empty compiled function's call


def _measure_call() -> float:
    tf = peak._tf()
    x = tf.zeros((8,))
    empty = tf.function(lambda x: x)
    return fastest(lambda: empty(x))


def cache_key(*parts) -> str:
    """What a measurement depends on, hashed (a layer's config may be a whole nested model's)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return f"{parts[0]}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def _config(thing) -> dict:
    return {k: v for k, v in thing.get_config().items() if k != "name"}


def fastest(call) -> float:
    """The fastest of up to REPEATS timed calls of `call`, after one that traces it; fewer once ENOUGH is spent."""
    return peak.fastest(call, ENOUGH, REPEATS)


def _draw(tensor, batch: int, seed: int):
    """A batch shaped like `tensor` (a KerasTensor): stateless normal draws, so no seeded random state moves."""
    tf = peak._tf()
    shape = (batch, *tensor.shape[1:])
    if not tf.as_dtype(tensor.dtype).is_floating:
        return tf.zeros(shape, tensor.dtype)
    return tf.cast(tf.random.stateless_normal(shape, seed=(seed, 7)), tensor.dtype)


def layer_probe(layer, batch: int, fed: set) -> tuple[str, object]:
    """(cache key, measure) of `layer`'s forward and backward at `batch`: gradients for its weights and for its
    inputs, except those that are the model's (training never computes them); Dropout and BatchNormalization
    in training mode. Measured on the layer itself, its variables (BatchNormalization's moving statistics,
    Dropout's seed) put back afterwards: a copy would draw its initial weights from the run's seeded state."""
    inputs, _ = _tensors(layer)
    wanted = [id(t) not in fed for t in inputs]
    key = cache_key(type(layer).__name__, _config(layer), [list(t.shape[1:]) for t in inputs],
                    [str(t.dtype) for t in inputs], wanted, batch)
    return key, lambda: _measure_layer(layer, batch, inputs, wanted)


def _tensors(layer) -> tuple[list, list]:
    """The (Keras) tensors `layer` takes and gives in its model: those of its call there, not `layer.input`, which
    for a nested model is its own Input, of any image size."""
    node = layer._inbound_nodes[0]
    return list(node.input_tensors), list(node.output_tensors)


def _measure_layer(layer, batch: int, inputs: list, wanted: list[bool]) -> float:
    import keras

    tf = peak._tf()
    xs = [_draw(t, batch, i) for i, t in enumerate(inputs)]
    upstream = [_draw(t, batch, 100 + i) for i, t in enumerate(_tensors(layer)[1])]

    @tf.function
    def step(xs, upstream):
        with tf.GradientTape() as tape:
            for x, w in zip(xs, wanted):
                if w:
                    tape.watch(x)
            out = layer(xs[0] if len(xs) == 1 else list(xs), training=True)
        sources = [*layer.trainable_variables, *(x for x, w in zip(xs, wanted) if w)]
        return tape.gradient(keras.tree.flatten(out), sources, output_gradients=upstream)

    saved = [v.numpy() for v in layer.variables]
    try:
        return fastest(lambda: step(xs, upstream))
    finally:
        for variable, value in zip(layer.variables, saved):
            variable.assign(value)


def update_probe(model, optimizer) -> tuple[str, object]:
    """(cache key, measure) of one update by a copy of `optimizer` on zero gradients, on new variables of the
    model's trainable shapes (named, so no Keras name counter moves)."""
    shapes = [(tuple(v.shape), str(v.dtype)) for v in model.trainable_variables]
    key = cache_key(type(optimizer).__name__, _config(optimizer), shapes)
    return key, lambda: _measure_update(optimizer, shapes)


def _measure_update(optimizer, shapes: list) -> float:
    import keras

    tf = peak._tf()
    weights = [keras.Variable(tf.zeros(shape, dtype), name=f"xrun_probe_{i}") for i, (shape, dtype) in
               enumerate(shapes)]
    grads = [tf.zeros(shape, dtype) for shape, dtype in shapes]
    copy = type(optimizer).from_config(optimizer.get_config())
    copy.build(weights)
    return fastest(tf.function(lambda: copy.apply(grads, weights)))


def loss_probe(model, batch: int, loss) -> tuple[str, object]:
    """(cache key, measure) of the loss and its gradient on a batch of the model's (first) output."""
    output = model.outputs[0]
    sparse = type(loss).__name__.startswith("Sparse")
    key = cache_key(type(loss).__name__, _config(loss), list(output.shape[1:]), batch)
    return key, lambda: _measure_loss(loss, output, batch, sparse)


def _measure_loss(loss, output, batch: int, sparse: bool) -> float:
    tf = peak._tf()
    predicted = tf.nn.softmax(tf.cast(_draw(output, batch, 200), "float32"))
    truth = tf.zeros((batch,), "int32") if sparse else tf.one_hot(tf.zeros((batch,), "int32"), math.prod(
        output.shape[1:]))
    truth = truth if sparse else tf.reshape(truth, predicted.shape)

    @tf.function
    def step(truth, predicted):
        with tf.GradientTape() as tape:
            tape.watch(predicted)
            value = loss(truth, predicted)
        return tape.gradient(value, predicted)

    return fastest(lambda: step(truth, predicted))
