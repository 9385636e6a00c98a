"""Build the Keras optimizer (with its schedule), loss and callbacks that an experiment's YAML names."""

from __future__ import annotations

from pathlib import Path

import keras

from runner.errors import XrunError
from runner.language.schema import with_defaults
from runner.model import registry


def optimizer(spec: dict | str, steps_per_epoch: int, epochs: int) -> keras.optimizers.Optimizer:
    """The optimizer (and schedule) `spec` names, with the schema's defaults for what it leaves out."""
    spec = {"type": spec} if isinstance(spec, str) else spec  # a bare name, as for the loss
    spec = with_defaults(spec, "#/$defs/optimizer")  # load_spec has filled them; a caller from code may not have
    args = {k: v for k, v in spec.items() if k != "type"}
    if isinstance(args.get("learning_rate"), dict):
        args["learning_rate"] = schedule(args["learning_rate"], steps_per_epoch, epochs)
    elif "learning_rate" in args:
        args["learning_rate"] = float(args["learning_rate"])  # Keras refuses an int learning rate
    return _construct(registry.OPTIMIZERS[spec["type"]], args, "optimizer")


def schedule(spec: dict, steps_per_epoch: int, epochs: int):
    """A Keras LearningRateSchedule; the YAML counts in epochs, Keras in optimizer steps."""
    args = {k: v for k, v in spec.items() if k != "type"}
    args = _SCHEDULE_STEPS[spec["type"]](args, steps_per_epoch, epochs)
    return _construct(registry.SCHEDULES[spec["type"]], args, "optimizer.learning_rate")


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


def loss(spec) -> keras.losses.Loss:
    spec = {"type": spec} if isinstance(spec, str) else spec
    args = {k: v for k, v in spec.items() if k != "type"}
    return _construct(registry.LOSSES[spec["type"]], args, "loss")


def loss_name(spec) -> str:
    return spec if isinstance(spec, str) else spec["type"]


def wants_one_hot(loss_spec) -> bool:
    return loss_name(loss_spec) not in registry.SPARSE_LOSSES


def callbacks(specs: list[dict], run_dir: Path) -> list[keras.callbacks.Callback]:
    """The YAML's callbacks; xrun chooses the files they write, inside the run's artifact folder."""
    specs = [with_defaults(s, "#/$defs/callback") for s in specs]
    return [_construct(registry.CALLBACKS[s["type"]], _with_files(s, run_dir), f"callbacks[{i}]")
            for i, s in enumerate(specs)]


def _with_files(spec: dict, run_dir: Path) -> dict:
    args = {k: v for k, v in spec.items() if k != "type"}
    if spec["type"] == "ModelCheckpoint":
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        weights_only = args["save_weights_only"]
        args["filepath"] = str(run_dir / "checkpoints" / ("best.weights.h5" if weights_only else "best.keras"))
    if spec["type"] == "CSVLogger":
        args["filename"] = str(run_dir / "history.csv")
    return args


def _construct(cls, args: dict, where: str):
    try:
        return cls(**args)
    except (ValueError, TypeError) as exc:
        raise XrunError(f"{cls.__name__} rejects its arguments: {' '.join(str(exc).split())[:300]}",
                        path=where, hint="check the values against the Keras documentation") from None
