"""Compile a checked experiment into a Keras model: a pure function, spec in, `keras.Model` out."""

from __future__ import annotations

import keras

from . import registry
from .data import DATASETS
from .errors import XrunError
from .graph import INPUT, Graph, Node
from .source import dotted
from .spec import Spec


def build_model(spec: Spec) -> keras.Model:
    """Sequential where the YAML is a plain stack, functional where it is a graph.

    Shapes are checked as each layer is connected, so a layer that cannot take its input is reported at its
    YAML line before anything trains.
    """
    graph = spec.graph
    shape = tuple(input_shape(spec.document))
    layers = {n.name: make_layer(n, spec, output=n.name in graph.outputs) for n in graph.nodes}
    if is_stack(graph):
        return _sequential(spec, shape, layers)
    return _functional(spec, shape, layers)


def input_shape(document: dict) -> list[int]:
    return document["model"].get("input_shape") or list(DATASETS[document["data"]["dataset"]]["shape"])


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
    cls = _layer_class(node, args, spec)
    try:
        return cls(name=node.name, **args)
    except (ValueError, TypeError) as exc:
        raise _node_error(node, spec, f"{node.type} rejects its arguments: {_first_line(exc)}",
                          "check the argument names and values against the Keras documentation") from None


def _same(value):
    return value


def _layer_class(node: Node, args: dict, spec: Spec) -> type:
    if node.type != "KerasLayer":
        return registry.LAYERS[node.type]
    class_name = args.pop("class_name")
    args.update(args.pop("config", {}) or {})
    return registry.lookup(registry.KERAS_LAYERS, class_name, "layer",
                           where=spec.locate(node.origin + ("class_name",)), path=_shown(node, "class_name"))


def _sequential(spec: Spec, shape: tuple, layers: dict) -> keras.Model:
    model = keras.Sequential(name=spec.name)
    model.add(keras.Input(shape=shape, name=INPUT))
    before = (None, *shape)
    for node in spec.graph.nodes:
        try:
            model.add(layers[node.name])
        except (ValueError, TypeError) as exc:
            raise _shape_error(node, spec, [before], exc) from None
        before = tuple(layers[node.name].output.shape)
    return model


def _functional(spec: Spec, shape: tuple, layers: dict) -> keras.Model:
    tensors = {INPUT: keras.Input(shape=shape, name=INPUT)}
    for node in spec.graph.nodes:
        inputs = [tensors[r] for r in node.inputs]
        try:
            tensors[node.name] = layers[node.name](inputs if len(inputs) > 1 else inputs[0])
        except (ValueError, TypeError) as exc:
            raise _shape_error(node, spec, [tuple(t.shape) for t in inputs], exc) from None
    outputs = [tensors[o] for o in spec.graph.outputs]
    return keras.Model(tensors[INPUT], outputs if len(outputs) > 1 else outputs[0], name=spec.name)


def _shape_error(node: Node, spec: Spec, shapes: list, exc: Exception) -> XrunError:
    shown = " and ".join(_shape_text(s) for s in shapes)
    return _node_error(node, spec, f"{node.type} cannot take input of shape {shown}: {_first_line(exc)}",
                       "change this layer or the ones before it (xrun summary shows every shape)")


def _shape_text(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _node_error(node: Node, spec: Spec, message: str, hint: str) -> XrunError:
    return XrunError(message, where=spec.locate(node.origin + ("type",)), path=_shown(node), hint=hint)


def _shown(node: Node, key: str | None = None) -> str:
    path = node.origin + ((key,) if key else ())
    return dotted(path) + (f" (in {node.via})" if node.via else "")


def _first_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[:300].rstrip(".") + ("..." if len(text) > 300 else "")
