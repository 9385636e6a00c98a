"""Fine-tuning in phases: one fit whose epochs switch the frozen layers and the learning rate at each phase's start,
with one optimizer for every phase."""

from __future__ import annotations

import math
from pathlib import Path

import keras

from runner.language import phases as plan
from runner.language.config import Config
from runner.language.graph import Graph

PHASE_METRIC = "phase"                        # 1, 2, ... logged with every epoch
TRAINABLE_METRIC = "trainable_params"         # the weights that epoch trained


class Phases(keras.callbacks.Callback):
    """At the first epoch of a phase (or the first a resumed run trains), freezes and unfreezes its layers, sets
    its rate and has Keras trace the training step again (the weights it updates changed); logs the phase."""

    def __init__(self, model: keras.Model, graph: Graph, phases: tuple, base_rate: float | None):
        super().__init__()
        self.graph, self.phases, self.base_rate = graph, phases, base_rate
        self.frozen = [plan.frozen_layers(graph, phase) for phase in phases]
        self.current: int | None = None
        self.target = model

    def on_epoch_begin(self, epoch, logs=None):
        index = plan.phase_at(self.phases, epoch)
        if index != self.current:
            self.enter(index)
            self.target.make_train_function(force=True)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:  # first among the callbacks: those after it (MLflow, CSVLogger) see these
            logs[PHASE_METRIC] = self.current + 1
            logs[TRAINABLE_METRIC] = trainable_count(self.target)

    def enter(self, index: int) -> None:
        """The phase's trainable layers and rate; BatchNormalization an earlier phase froze stays frozen unless the
        phase trains it (a frozen Keras 3 BatchNormalization runs in inference mode: its statistics stay)."""
        phase, frozen = self.phases[index], self.frozen[index]
        for node in self.graph.nodes:
            set_trainable(self.target.get_layer(node.name), node.name not in frozen)
        if phase.batch_norm == "frozen":
            for name in set().union(*self.frozen[:index]) - frozen:
                for layer in batch_norms(self.target.get_layer(name)):
                    layer.trainable = False
        rate = phase.learning_rate if phase.learning_rate is not None else self.base_rate
        if rate is not None:  # None: a schedule, which runs on across phases
            self.target.optimizer.learning_rate = rate
        self.current = index


def schedule(model: keras.Model, config: Config) -> list:
    """`training.phases` as the callback that switches them ([] without phases), the compiled model's optimizer
    built over every weight some phase trains, so one optimizer state serves (and is saved for) every phase."""
    phases = config.training.phases
    if not phases:
        return []
    base = None if config.optimizer.schedule else float(model.optimizer.learning_rate)  # as compiled: the YAML's
    callback = Phases(model, config.graph, phases, base)
    always = set.intersection(*(set(f) for f in callback.frozen))  # frozen in every phase: never trained
    for node in config.graph.nodes:
        set_trainable(model.get_layer(node.name), node.name not in always)
    model.optimizer.build(model.trainable_variables)
    callback.enter(0)
    return [callback]


def restore(model: keras.Model, checkpoint: Path) -> None:
    """Weights and optimizer state of a checkpoint into the model `schedule` prepared: loaded in place, since a
    model loaded from the file would build its optimizer over the saved phase's weights only."""
    model.load_weights(checkpoint)


def set_trainable(layer, value: bool) -> None:
    """A layer and every layer inside it: Keras passes `trainable` on to a network's layers only when the network's
    own flag changes, so a BatchNormalization frozen inside a trained network would stay frozen."""
    layer.trainable = value
    for inner in getattr(layer, "layers", ()):
        set_trainable(inner, value)


def batch_norms(layer) -> list:
    """The BatchNormalization layers in a layer: itself, or those of a network it holds (an Application)."""
    if isinstance(layer, keras.layers.BatchNormalization):
        return [layer]
    return [bn for inner in getattr(layer, "layers", ()) for bn in batch_norms(inner)]


def trainable_count(model: keras.Model) -> int:
    return sum(math.prod(w.shape) for w in model.trainable_weights)
