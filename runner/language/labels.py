"""Multi-label data in the language: a CSV cell's set of labels, and the choices that do not fit a set of labels per
image (a softmax output, a loss over one class, class balancing) refused at their YAML line."""

from __future__ import annotations

from runner.errors import XrunError
from runner.language.advice import output_layer
from runner.language.graph import Graph
from runner.language.source import dotted

# The losses that score each label on its own (a sigmoid per unit); every other loss takes one class per image.
MULTI_LABEL_LOSSES = ("BinaryCrossentropy", "BinaryFocalCrossentropy")
# What a multi-label run logs each epoch besides the YAML's metrics (runner.training.metrics builds them).
EPOCH_METRICS = ("f1_micro", "f1_macro", "auc")


def split_labels(cell: str, separator: str) -> tuple[str, ...]:
    """The labels of one CSV cell (`cat;dog`), stripped, each once, in the order written; empty: none."""
    return tuple(dict.fromkeys(p.strip() for p in cell.split(separator) if p.strip()))


def check(document: dict, graph: Graph, multi_label: bool, locate) -> None:
    """With multi-label data, the model must give each label its own probability and training must not balance
    classes (an image belongs to several); each mismatch is an error at its line."""
    if not multi_label:
        return
    for rule in (_loss, _softmax, _class_weight, _sampling, _class_recall):
        problem = rule(document, graph, locate)
        if problem is not None:
            raise problem


def warnings(document: dict, graph: Graph, facts, locate) -> list[XrunError]:
    """Single-label data with more than two classes under a per-label loss: legal (one yes/no per class), but the
    probabilities need not sum to one, and most likely the data was meant to be multi-label, or the loss
    categorical."""
    loss = _loss_type(document)
    if facts.multi_label or loss not in MULTI_LABEL_LOSSES or (facts.num_classes or 0) <= 2:
        return []
    return [XrunError(f"{loss} scores each of the {facts.num_classes} classes on its own, but each image of "
                      f"{facts.what} has one class", where=locate(_loss_path(document)), path="loss",
                      hint="use loss: CategoricalCrossentropy with a softmax output, or, where an image has several "
                           "labels, list them in a CSV with data.multi_label: true")]


def _loss_type(document: dict) -> str:
    return document["loss"] if isinstance(document["loss"], str) else document["loss"]["type"]


def _loss_path(document: dict) -> tuple:
    return ("loss",) if isinstance(document["loss"], str) else ("loss", "type")


def _loss(document: dict, graph: Graph, locate) -> XrunError | None:
    loss = _loss_type(document)
    if loss in MULTI_LABEL_LOSSES:
        return None
    return XrunError(f"the data is multi-label (data.multi_label: true), but {loss} takes one class per image",
                     where=locate(_loss_path(document)), path=dotted(_loss_path(document)),
                     hint="use loss: BinaryCrossentropy (one yes/no per label) with a sigmoid output layer")


def _softmax(document: dict, graph: Graph, locate) -> XrunError | None:
    node = output_layer(graph)
    if node is None:
        return None
    activation = node.args.get("activation")
    if node.type != "Softmax" and activation != "softmax":
        return None
    path = tuple(node.origin) + (() if node.type == "Softmax" or node.via else ("activation",))
    shown = dotted(path) + (f" (in {node.via})" if node.via else "")
    return XrunError("the last layer's softmax makes the labels compete (their probabilities sum to 1), but the data "
                     "is multi-label (data.multi_label: true): an image may have several", where=locate(path),
                     path=shown, hint="give it activation: sigmoid, one independent probability per label")


def _class_weight(document: dict, graph: Graph, locate) -> XrunError | None:
    if document["training"].get("class_weight") is None:
        return None
    path = ("training", "class_weight")
    return XrunError("class_weight weighs each image by its one class, but multi-label images have several",
                     where=locate(path, key=True), path=dotted(path),
                     hint="drop it; for rare labels use loss: {type: BinaryFocalCrossentropy, "
                          "apply_class_balancing: true}")


def _sampling(document: dict, graph: Graph, locate) -> XrunError | None:
    if document["training"].get("sampling") != "balanced":
        return None
    path = ("training", "sampling")
    return XrunError("sampling: balanced draws images class by class, but multi-label images have several classes",
                     where=locate(path), path=dotted(path),
                     hint="use sampling: uniform; for rare labels use loss: BinaryFocalCrossentropy")


def _class_recall(document: dict, graph: Graph, locate) -> XrunError | None:
    listed = document.get("metrics") or []
    if "class_recall" not in listed:
        return None
    path = ("metrics", listed.index("class_recall"))
    return XrunError("class_recall counts an image as right when its likeliest class is its one class; multi-label "
                     "images have several", where=locate(path), path=dotted(path),
                     hint="drop it: a multi-label run logs f1_micro, f1_macro and auc each epoch, and each label's "
                          "F1 and AUC on the test split")
