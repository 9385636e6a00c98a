"""Compile a checked experiment into a Keras model: a pure function, spec in, `keras.Model` out."""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import re

import keras
from keras.src.backend.common import global_state  # Keras's list of variables still to be made (_shapes_only)

from runner.errors import XrunError, did_you_mean
from runner.language.graph import INPUT, Graph, Node
from runner.language.source import dotted
from runner.language.spec import Spec
from runner.model import registry
from runner.model.applications import build_application
from runner.text import one_line, shape_tuple


def build_model(spec: Spec) -> keras.Model:
    """Sequential where the YAML is a plain stack, functional where it is a graph.

    Shapes are checked as each layer is connected, so a layer that cannot take its input is reported at its
    YAML line before anything trains.
    """
    graph = spec.graph
    shape = tuple(input_shape(spec))
    layers = {n.name: make_layer(n, spec, output=n.name in graph.outputs) for n in graph.nodes}
    check_size(spec, shape, layers)
    model = _sequential(spec, shape, layers) if is_stack(graph) else _functional(spec, shape, layers)
    check_outputs(spec, model)
    return model


def check_outputs(spec: Spec, model: keras.Model) -> None:
    """Each output must be [batch, classes], as the labels are: a Dense head on feature maps (no Flatten before
    it) builds, and fails only once training compares it with the labels."""
    for name, tensor in zip(spec.graph.outputs, model.outputs):
        shape = tuple(tensor.shape)
        if len(shape) != 2:
            raise _node_error(spec.graph.node(name), spec,
                              f"the model's output is {shape_tuple(shape)}, {len(shape)}D, but the labels are "
                              "(batch, classes)", "put a Flatten or GlobalAveragePooling2D layer before this one")


# Weights may take at most this share of the machine's memory: training needs room for gradients, optimizer
# slots and activations on top.
MEMORY_SHARE = 0.5


def check_size(spec: Spec, shape: tuple, layers: dict) -> None:
    """Refuse, before allocating anything, a model whose float32 weights would not fit in memory."""
    total, largest = 0, (0, None)
    for node, count in _weight_counts(spec.graph, shape, layers):
        total += count
        largest = max(largest, (count, node), key=lambda pair: pair[0])
    limit = _memory_bytes() * MEMORY_SHARE
    if total * 4 > limit and largest[1] is not None:
        raise _node_error(largest[1], spec,
                          f"the model would have {total:,} parameters ({_gib(total * 4)} of float32 weights; "
                          f"this layer alone {largest[0]:,}), more than this machine's memory allows "
                          f"({_gib(limit)})", "make this layer smaller, or pool/stride before it")


def _weight_counts(graph: Graph, shape: tuple, layers: dict):
    """(node, parameter count) per layer, from shapes alone: nothing is built or allocated."""
    shapes = {INPUT: (None, *shape)}
    for node in graph.nodes:
        inputs = [shapes[r] for r in node.inputs]
        given = inputs if len(inputs) > 1 else inputs[0]
        try:
            out = tuple(layers[node.name].compute_output_shape(given))
        except Exception:  # noqa: BLE001 - a shape the layer cannot take: the real build reports it at the right line
            return
        if not all(d is None or isinstance(d, int) for d in out):
            return  # a layer with several outputs: leave it to the real build
        shapes[node.name] = out
        yield node, _estimate(layers[node.name], given)


def _estimate(layer: keras.layers.Layer, in_shape) -> int:
    """The layer's parameter count, whatever its kind: a copy of it built with variables that have shapes but no
    values (a 16 GiB SeparableConv2D is counted, not allocated)."""
    if layer.built:  # a whole model used as a layer, say: its weights exist already
        return layer.count_params()
    try:
        with _shapes_only():
            copy = type(layer).from_config(layer.get_config())
            copy.build(in_shape)
            return sum(math.prod(w.shape) for w in copy.weights)
    except Exception:  # noqa: BLE001 - a layer that cannot build this way: the real build allocates (and reports) it
        return 0


@contextlib.contextmanager
def _shapes_only():
    """Variables made here get their shapes and never their values.

    In a StatelessScope Keras defers making a variable's value to the end of the outermost scope; told not to
    then, it keeps the variables on a list for the next scope that ends, so they are taken off that list here.
    """
    pending = global_state.get_global_attribute("uninitialized_variables", [], set_to_default=True)
    before = len(pending)
    try:
        with keras.StatelessScope(initialize_variables=False):
            yield
    finally:
        del pending[before:]


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 16 << 30


def _gib(n: float) -> str:
    return f"{n / (1 << 30):,.1f} GiB"


def input_shape(spec: Spec) -> list[int]:
    """`model.input_shape`, else one example's shape as the data section gives it (an error if the data is missing)."""
    if spec.input_shape:
        return list(spec.input_shape)
    shape = spec.data_facts().shape
    if shape is None or None in shape:  # only the files can say: read them (an error if they are missing)
        shape = spec.data_facts(strict=True).shape
    return list(shape)


def is_stack(graph: Graph) -> bool:
    """True when every layer takes exactly the one listed before it."""
    previous = INPUT
    for node in graph.nodes:
        if node.inputs != [previous]:
            return False
        previous = node.name
    return graph.outputs == [previous]


def make_layer(node: Node, spec: Spec, output: bool = False) -> keras.layers.Layer:
    args = {k: registry.ARG_BUILDERS.get(k, _same)(v) for k, v in node.args.items()}
    if output:
        args["dtype"] = "float32"  # the output (softmax) stays float32 under mixed precision
    if node.type == "Application":  # a whole network, built by a function
        return build_application(node, spec, args)
    cls = _layer_class(node, args, spec)
    try:
        return cls(name=node.name, **args)
    except (ValueError, TypeError) as exc:
        raise _node_error(node, spec, f"{cls.__name__} rejects its arguments: {_first_line(exc)}",
                          "check the argument names and values against the Keras documentation") from None


def _same(value):
    return value


def _layer_class(node: Node, args: dict, spec: Spec) -> type:
    if node.type != "KerasLayer":
        return registry.LAYERS[node.type]
    class_name = args.pop("class_name")
    config = args.pop("config", {}) or {}
    cls = registry.lookup(registry.KERAS_LAYERS, class_name, "layer",
                          where=spec.locate(node.origin + ("class_name",)), path=_shown(node, "class_name"))
    _check_config(node, cls, config, spec)
    args.update(config)
    return cls


def _check_config(node: Node, cls: type, config: dict, spec: Spec) -> None:
    """Name a misspelt constructor argument at its YAML key (Keras would only say 'unrecognized')."""
    allowed = init_arguments(cls)
    for key in config:
        where = {"where": spec.locate(node.origin + ("config", key), key=True), "path": _shown(node, f"config.{key}")}
        if key in ("name", "inputs", "type"):
            raise XrunError(f"'{key}' does not belong in config", **where,
                            hint=f"write {key}: beside class_name, as for any layer")
        if key not in allowed:
            hint = did_you_mean(key, allowed) or "its arguments: " + ", ".join(sorted(allowed - _BASE_ARGS))
            raise XrunError(f"{cls.__name__} has no argument '{key}'", **where, hint=hint)


_BASE_ARGS = {"name", "dtype", "trainable", "autocast", "activity_regularizer"}


def init_arguments(cls: type) -> set[str]:
    """The keyword arguments a layer class takes: its own and those it hands on to its bases."""
    names = set()
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is not None:
            names |= {n for n, p in inspect.signature(init).parameters.items()
                      if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    return names


def _sequential(spec: Spec, shape: tuple, layers: dict) -> keras.Model:
    model = keras.Sequential(name=spec.name)
    model.add(keras.Input(shape=shape, name=INPUT))
    before = (None, *shape)
    for node in spec.graph.nodes:
        try:
            model.add(layers[node.name])
        except (ValueError, TypeError) as exc:
            raise _shape_error(node, spec, [(node.inputs[0], before)], exc) from None
        before = tuple(layers[node.name].output.shape)
    return model


def _functional(spec: Spec, shape: tuple, layers: dict) -> keras.Model:
    tensors = {INPUT: keras.Input(shape=shape, name=INPUT)}
    for node in spec.graph.nodes:
        inputs = [tensors[r] for r in node.inputs]
        try:
            tensors[node.name] = layers[node.name](inputs if len(inputs) > 1 else inputs[0])
        except (ValueError, TypeError) as exc:
            raise _shape_error(node, spec, [(r, tuple(tensors[r].shape)) for r in node.inputs], exc) from None
    outputs = [tensors[o] for o in spec.graph.outputs]
    return keras.Model(tensors[INPUT], outputs if len(outputs) > 1 else outputs[0], name=spec.name)


def _shape_error(node: Node, spec: Spec, inputs: list[tuple[str, tuple]], exc: Exception) -> XrunError:
    """Why a layer cannot take what it is given, in the YAML's terms where the case is a common one."""
    kind = node.args.get("class_name", node.type) if node.type in registry.BY_CLASS_NAME else node.type
    text = _first_line(exc)
    for explain in (_window_too_big, _wrong_rank, _merge_mismatch, _reshape_size):
        found = explain(kind, node.args, inputs, text)
        if found:
            return _node_error(node, spec, *found)
    many = len(inputs) > 1
    hint = ("if it takes one input, merge its inputs first with Concatenate or Add" if many and
            node.type == "KerasLayer" else "change this layer or the ones before it")
    return _node_error(node, spec, f"{kind} cannot take {'inputs' if many else 'its input'} "
                       f"{_named_shapes(inputs)}: {text}", hint)


def _window_too_big(kind: str, args: dict, inputs: list, text: str):
    """A kernel or pool larger than the feature map it slides over (with padding 'valid')."""
    if kind not in registry.WINDOWS or "zero or negative" not in text:
        return None
    key = registry.WINDOWS[kind]
    size, dilation = _pair(args.get(key, 2)), _pair(args.get("dilation_rate", 1))
    shape = inputs[0][1]
    word = "kernel" if key == "kernel_size" else "pool"
    span = tuple(d * (k - 1) + 1 for k, d in zip(size, dilation))
    dilated = f" (dilated to {span[0]}x{span[1]})" if span != size else ""
    return (f"{kind}'s {size[0]}x{size[1]} {word}{dilated} does not fit its {shape[1]}x{shape[2]} input "
            f"{shape_tuple(shape)}", f"use padding: same, a smaller {key}, or down-sample less before this layer")


def _wrong_rank(kind: str, args: dict, inputs: list, text: str):
    """A layer given a tensor of the wrong number of dimensions: an image layer after Flatten, say."""
    found = re.search(r"expected (?:min_)?ndim=(\d+), found ndim=(\d+)", text)
    if not found:
        return None
    wanted, got = int(found.group(1)), int(found.group(2))
    axes = " (batch, height, width, channels)" if wanted == 4 else ""
    hint = (f"put it before Flatten and Dense layers, or Reshape its input to {wanted}D" if got < wanted else
            "Flatten or pool its input first")
    return f"{kind} needs a {wanted}D input{axes}, got {got}D {shape_tuple(inputs[0][1])}", hint


def _merge_mismatch(kind: str, args: dict, inputs: list, text: str):
    """Merged branches whose shapes disagree."""
    # Dot pairs axes rather than matching shapes: Keras's own message says which.
    if len(inputs) < 2 or kind not in registry.MERGE_LAYERS or kind == "Dot":
        return None
    got = _named_shapes(inputs)
    if kind == "Concatenate":
        axis = args.get("axis", -1)
        which = "the last (channels)" if axis == -1 else f"axis {axis}"
        return (f"Concatenate needs inputs that agree on every axis but {which}, got {got}",
                "make the branches' height and width match (the same padding and strides in each)")
    return (f"{kind} needs inputs of one shape, got {got}",
            "make the branches' filters or units and strides match, or give one a 1x1 Conv2D to match the other")


def _reshape_size(kind: str, args: dict, inputs: list, text: str):
    """A Reshape to a different number of values."""
    if kind != "Reshape" or "total size" not in text:
        return None
    shape = inputs[0][1]
    have = math.prod(d for d in shape[1:] if d is not None)
    target = list(args.get("target_shape", []))
    known = math.prod(d for d in target if d != -1)
    want = f"a multiple of {known}" if -1 in target else str(known)
    return (f"Reshape cannot turn its input {shape_tuple(shape)} ({have:,} values) into target_shape {target} "
            f"({want} values)", "give target_shape the same number of values; -1 for one axis works it out")


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def _named_shapes(inputs: list) -> str:
    if len(inputs) == 1:
        return shape_tuple(inputs[0][1])
    return ", ".join(f"{name} {shape_tuple(shape)}" for name, shape in inputs)



def _node_error(node: Node, spec: Spec, message: str, hint: str) -> XrunError:
    return XrunError(message, where=spec.locate(node.origin + ("type",)), path=_shown(node), hint=hint)


def _shown(node: Node, key: str | None = None) -> str:
    path = node.origin + ((key,) if key else ())
    return dotted(path) + (f" (in {node.via})" if node.via else "")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CALL_PREFIX = re.compile(r"^Exception encountered when calling [\w.]+\(\)\.\s*")


def _first_line(exc: Exception) -> str:
    """Keras's message as one plain line: no terminal colours, no echo of the call's arguments."""
    text = _ANSI.sub("", str(exc)).split("Arguments received by")[0]
    text = _CALL_PREFIX.sub("", one_line(text))
    return text[:300].rstrip(".") + ("..." if len(text) > 300 else "")
