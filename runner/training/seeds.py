"""The state of a model's random number generators (dropout's and the like), which a .keras file does not keep,
as text a resumed run puts back."""

from __future__ import annotations

import json

import keras


def states_text(model: keras.Model, epoch: int) -> str:
    """Every seed generator's state after `epoch`, in the model's variable order."""
    states = [[int(x) for x in keras.ops.convert_to_numpy(v.value)] for v in _generators(model)]
    return json.dumps({"epoch": epoch, "states": states}, separators=(",", ":"))


def restore(model: keras.Model, text: str | None, epoch: int) -> bool:
    """Put back the states `states_text` wrote after `epoch`; False (nothing changed) if they are for another
    epoch or another model (a run checkpointed before xrun kept them, or killed between the two writes)."""
    saved = json.loads(text) if text else {}
    generators = _generators(model)
    if saved.get("epoch") != epoch or len(saved.get("states", ())) != len(generators):
        return False
    for variable, state in zip(generators, saved["states"]):
        variable.assign(keras.ops.convert_to_tensor(state, dtype=variable.dtype))
    return True


def _generators(model: keras.Model) -> list:
    # Their paths are numbered by how many models the process built; their order is the model's own.
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]
