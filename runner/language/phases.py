"""`training.phases` (fine-tuning in phases): checked against the model's layer names and the run's epochs, and
which layers each phase freezes."""

from __future__ import annotations

from runner.errors import XrunError, did_you_mean
from runner.language.graph import Graph
from runner.language.source import Path_, dotted

PHASES = ("training", "phases")


def check(document: dict, locate, graph: Graph) -> None:
    """Each phase names layers the model has, freezes them in one way, and changes only a fixed rate."""
    phases = document["training"].get("phases")
    if not phases:
        return
    _refuse_trainable_flags(graph, locate)
    names = [*(n.name for n in graph.nodes), *graph.aliases]
    for i, phase in enumerate(phases):
        here = PHASES + (i,)
        if "freeze" in phase and "train_from" in phase:
            raise XrunError("a phase freezes the layers it names (freeze) or those before one (train_from), not both",
                            where=locate(here + ("train_from",), key=True), path=dotted(here),
                            hint="keep freeze: [...] or train_from: NAME")
        for j, name in enumerate(phase.get("freeze") or ()):
            _check_name(name, here + ("freeze", j), names, locate)
        if "train_from" in phase:
            _check_name(phase["train_from"], here + ("train_from",), names, locate)
        if "learning_rate" in phase and _scheduled(document["optimizer"]):
            raise XrunError("a phase's learning_rate replaces a fixed rate, and optimizer.learning_rate is a schedule",
                            where=locate(here + ("learning_rate",), key=True), path=dotted(here + ("learning_rate",)),
                            hint="drop the phase's learning_rate (the schedule runs on across phases), or give "
                                 "optimizer.learning_rate a number")


def _check_name(name: str, path: Path_, names: list[str], locate) -> None:
    if name not in names:
        raise XrunError(f"the model has no layer or block use '{name}'", where=locate(path), path=dotted(path),
                        hint=did_you_mean(name, names) or "name a layer (its name:) or a block use of the model; "
                                                          "`xrun summary FILE` lists the layers")


def _scheduled(optimizer) -> bool:
    return isinstance(optimizer, dict) and isinstance(optimizer.get("learning_rate"), dict)


def _refuse_trainable_flags(graph: Graph, locate) -> None:
    """With phases, the phases alone say what trains: a layer's own `trainable: false` would silently win."""
    for node in graph.nodes:
        if node.args.get("trainable") is False:
            path = node.origin + ("trainable",)
            raise XrunError("training.phases decide which layers train, so a layer cannot say trainable: false",
                            where=locate(path, key=True), path=dotted(path) + (f" (in {node.via})" if node.via else ""),
                            hint=f"drop it and name '{node.name}' in the phases' freeze: [...] instead")


def warnings(document: dict, locate) -> list[XrunError]:
    """training.epochs stays the run's count (schedules, resumes and `--set training.epochs=1` use it): one that
    differs from the phases' sum is legal, ending the run within them or going on in the last, but worth a line."""
    training = document["training"]
    phases, epochs = training.get("phases"), training["epochs"]
    total = sum(phase["epochs"] for phase in phases or ())
    if not phases or total == epochs:
        return []
    said = (f"more than these {epochs}: the run ends in phase {_phase_of(phases, epochs - 1) + 1} of {len(phases)}"
            if epochs < total else f"fewer than these {epochs}: the last phase trains {epochs - total} more")
    path = ("training", "epochs")
    return [XrunError(f"the phases add up to {total} epochs, {said}", where=locate(path),
                      path=dotted(path), hint=f"set training.epochs: {total} to train the phases as written")]


def _phase_of(phases: list, epoch: int) -> int:
    ends = [sum(phase["epochs"] for phase in phases[:i + 1]) for i in range(len(phases))]
    return next(i for i, end in enumerate(ends) if epoch < end)


def frozen_layers(graph: Graph, phase) -> frozenset[str]:
    """The layers (the graph's names, in which Keras names them) that a phase (a sections.Phase) freezes."""
    order = [n.name for n in graph.nodes]
    if phase.train_from is not None:
        return frozenset(order[:order.index(members(graph, phase.train_from)[0])])
    return frozenset(m for name in phase.freeze or () for m in members(graph, name))


def members(graph: Graph, name: str) -> list[str]:
    """A layer's own name, or the layers of a block use, in the model's order (their names begin with its name)."""
    if any(n.name == name for n in graph.nodes):
        return [name]
    return [n.name for n in graph.nodes if n.name.startswith(f"{name}_")]


def phase_at(phases, epoch: int) -> int:
    """The index of the phase that trains `epoch` (counted from 0, across phases); the last one past their end."""
    end = 0
    for index, phase in enumerate(phases):
        end += phase.epochs
        if epoch < end:
            return index
    return len(phases) - 1
