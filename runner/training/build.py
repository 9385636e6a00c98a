"""Build the Keras optimizer (with its schedule), loss and callbacks that an experiment's YAML names."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import keras

from runner.errors import XrunError
from runner.language.schema import with_defaults
from runner.language.sections import Named, Optimizer, named, optimizer_of, plain
from runner.model import registry
from runner.text import one_line
from runner.training.callbacks import CALLBACKS


def optimizer(section: Optimizer | Mapping | str, steps_per_epoch: int, epochs: int) -> keras.optimizers.Optimizer:
    """The optimizer (and schedule) the section names; a name or mapping from code gets the schema's defaults
    (a Config's section has them already)."""
    if not isinstance(section, Optimizer):
        section = optimizer_of(with_defaults({"type": section} if isinstance(section, str) else section,
                                             "#/$defs/optimizer"))
    args = dict(section.arguments)
    if section.schedule is not None:
        args["learning_rate"] = schedule(section.schedule, steps_per_epoch, epochs)
    elif "learning_rate" in args:
        args["learning_rate"] = float(args["learning_rate"])  # Keras refuses an int learning rate
    return _construct(registry.OPTIMIZERS[section.type], args, "optimizer")


def schedule(section: Named, steps_per_epoch: int, epochs: int):
    """A Keras LearningRateSchedule; the YAML counts in epochs, Keras in optimizer steps."""
    args = _SCHEDULE_STEPS[section.type](plain(section.arguments), steps_per_epoch, epochs)
    return _construct(registry.SCHEDULES[section.type], args, "optimizer.learning_rate")


def _exponential_steps(args: dict, spe: int, epochs: int) -> dict:
    args["decay_steps"] = max(1, round(args.pop("decay_epochs") * spe))
    return args


def _cosine_steps(args: dict, spe: int, epochs: int) -> dict:
    warmup = round(args.pop("warmup_epochs", 0) * spe)
    if warmup and "warmup_target" not in args:
        # Keras would skip the warm-up silently (it only warms up towards a target) yet still shorten the decay.
        raise XrunError("warmup_epochs needs warmup_target, the rate the warm-up climbs to",
                        path="optimizer.learning_rate.warmup_target",
                        hint="add warmup_target (e.g. 10x initial_learning_rate), or drop warmup_epochs")
    args["decay_steps"] = max(1, epochs * spe - warmup)
    if warmup:
        args["warmup_steps"] = warmup
    return args


def _piecewise_steps(args: dict, spe: int, epochs: int) -> dict:
    # Keras uses values[i] while step <= boundaries[i]; the boundary epoch's first step must already take the new
    # value, so the last step of the epoch before is the boundary.
    return {"boundaries": [round(b * spe) - 1 for b in args["boundaries_epochs"]], "values": args["values"]}


_SCHEDULE_STEPS = {"ExponentialDecay": _exponential_steps, "CosineDecay": _cosine_steps,
                   "PiecewiseConstantDecay": _piecewise_steps}


def loss(section: Named | Mapping | str) -> keras.losses.Loss:
    section = section if isinstance(section, Named) else named(section)
    return _construct(registry.LOSSES[section.type], plain(section.arguments), "loss")


def wants_one_hot(section: Named | Mapping | str) -> bool:
    section = section if isinstance(section, Named) else named(section)
    return section.type not in registry.SPARSE_LOSSES


def callbacks(sections: Sequence[Named | Mapping], run_dir: Path) -> list[keras.callbacks.Callback]:
    """The YAML's callbacks; xrun chooses the files they write, inside the run's artifact folder."""
    sections = [s if isinstance(s, Named) else named(with_defaults(s, "#/$defs/callback")) for s in sections]
    listed = [CALLBACKS[s.type] for s in sections]
    return [_construct(entry.cls, entry.files(plain(s.arguments), run_dir), f"callbacks[{i}]")
            for i, (entry, s) in enumerate(zip(listed, sections))]


def _construct(cls, args: dict, where: str):
    try:
        return cls(**args)
    except (ValueError, TypeError) as exc:
        raise XrunError(f"{cls.__name__} rejects its arguments: {one_line(exc, 300)}",
                        path=where, hint="check the values against the Keras documentation") from None
