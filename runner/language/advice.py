"""Legal choices that are most likely mistakes: one-line warnings, printed as `xrun: warning: ...`, never refused."""

from __future__ import annotations

import sys

from runner.errors import XrunError
from runner.language import schema
from runner.language.graph import Graph
from runner.language.source import dotted

# Layers after the output layer that leave its values as they are when the model predicts.
_PASS_THROUGH = {"Dropout", "GaussianDropout", "AlphaDropout", "ActivityRegularization"}
# What the last layer gives a probability loss (one taking `from_logits`): the activations that give
# probabilities over the classes, or, for a Binary* loss, one probability per unit.
_PROBABILITIES = {"softmax"}
_BINARY_PROBABILITIES = {"sigmoid"}


def model_warnings(document: dict, graph: Graph, locate) -> list[XrunError]:
    """What the experiment says that is legal but likely wrong, each at its YAML line."""
    return [w for w in (_logits_into_probability_loss(document, graph, locate),) if w is not None]


def print_warnings(warnings, file=None) -> None:
    """Each warning as one line on stderr, in xrun's `xrun: ...` form."""
    for warning in warnings:
        print(f"xrun: warning: {warning.line()}", file=file or sys.stderr, flush=True)


def probability_losses() -> set[str]:
    """The losses that take probabilities unless told `from_logits: true`: those whose schema has `from_logits`."""
    return {name for name, sub in schema.definition("#/$defs/losses").items()
            if "from_logits" in sub.get("properties", {})}


def _logits_into_probability_loss(document: dict, graph: Graph, locate) -> XrunError | None:
    """A last layer without softmax under a loss that takes probabilities: the model then learns little (issue 22)."""
    loss = document["loss"] if isinstance(document["loss"], dict) else {"type": document["loss"]}
    node = output_layer(graph)
    if loss["type"] not in probability_losses() or loss.get("from_logits") or node is None:
        return None
    activation = node.args.get("activation")
    wanted = _BINARY_PROBABILITIES if loss["type"].startswith("Binary") else _PROBABILITIES
    if node.type == "Softmax" or (isinstance(activation, str) and activation in wanted):
        return None
    if node.type not in ("Dense", "Activation") or isinstance(activation, dict):
        return None  # a layer whose outputs only Keras knows (a KerasLayer, an Application): say nothing
    path = tuple(node.origin)
    gives = f"activation '{activation}'" if activation else "no activation"
    shown = dotted(path) + (f" (in {node.via})" if node.via else "")
    return XrunError(f"the last layer has {gives}, so it gives scores, not probabilities, but {loss['type']} "
                     "takes probabilities", where=locate(path), path=shown,
                     hint=f"give it activation: {min(wanted)}, or write loss: {{type: {loss['type']}, from_logits: true}}")


def output_layer(graph: Graph):
    """The layer that gives the model's one output, looking past those that leave its values as they are."""
    if len(graph.outputs) != 1:
        return None
    names = {n.name for n in graph.nodes}
    node = graph.node(graph.outputs[0])
    while node.type in _PASS_THROUGH and len(node.inputs) == 1 and node.inputs[0] in names:
        node = graph.node(node.inputs[0])
    return node
