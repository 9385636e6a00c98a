"""The pyfunc side of an xrun model (what `mlflow.pyfunc.load_model` and `mlflow models serve` run): pixels as
uint8/integers 0-255 or as floats in [0, 1], anything else refused with what it takes; no progress bars.

This file is copied into every logged model (its code/ folder) and imported there by MLflow, in a Python that may
not have xrun: it imports only NumPy, Keras and MLflow.
"""

from __future__ import annotations

import numpy as np

BATCH = 256  # rows per predict call (Keras's default is 32)


def _load_pyfunc(path, model_config=None):
    import mlflow.keras

    return Pixels(mlflow.keras.load_model(path, load_model_kwargs={"compile": False}))


class Pixels:
    """The model's predict for the data a served request or a pyfunc call carries."""

    def __init__(self, model):
        self.model = model
        self.shape = tuple(model.inputs[0].shape[1:])
        self.raw = str(model.inputs[0].dtype) == "uint8"
        self.unit = _after_scaling(model) if self.raw else None

    def get_raw_model(self):
        return self.model

    def predict(self, data, params=None):
        x = self._images(data)
        if not self.raw:  # the model takes values as training read them (float data): nothing to scale
            return self.model.predict(x.astype(str(self.model.inputs[0].dtype)), batch_size=BATCH, verbose=0)
        if x.dtype.kind in "iu":
            _check(x, 0, 255, "integers are read as pixels 0-255")
            return self.model.predict(x.astype("uint8"), batch_size=BATCH, verbose=0)
        if x.dtype.kind == "f":
            _check(x, 0.0, 1.0, "floats are read as pixels scaled to [0, 1] (pixels / 255)",
                   "send 0-255 pixels as integers (uint8), or divide them by 255")
            return self.unit.predict(x.astype("float32"), batch_size=BATCH, verbose=0)
        raise _refused(f"got {x.dtype} values; {self.takes()}")

    def takes(self) -> str:
        shape = ", ".join(str(d) for d in self.shape)
        return f"the model takes images of shape (N, {shape}): pixels 0-255 as integers, or floats in [0, 1]"

    def _images(self, data) -> np.ndarray:
        """The input as an array of images: a DataFrame's or a list's values; rows of flat pixels reshaped."""
        x = np.asarray(data.to_numpy() if hasattr(data, "to_numpy") else data)
        if x.ndim == 2 and x.shape[1:] != self.shape and x.shape[1] == int(np.prod(self.shape)):
            x = x.reshape((-1, *self.shape))  # a CSV or DataFrame row per image
        if x.shape[1:] != self.shape:
            raise _refused(f"got an input of shape {x.shape}; {self.takes()}")
        return x


def _after_scaling(model):
    """The model from its scaled pixels on (the graph after its Rescaling layer), taking floats in [0, 1]."""
    import keras

    scaling = next(layer for layer in model.layers if isinstance(layer, keras.layers.Rescaling))
    return keras.Model(scaling.output, model.outputs[0])


def _check(x: np.ndarray, low, high, rule: str, fix: str = "") -> None:
    if x.size and not (np.all(np.isfinite(x)) and x.min() >= low and x.max() <= high):
        found = f"values from {x.min()} to {x.max()}" if np.all(np.isfinite(x)) else "values that are not numbers"
        raise _refused(f"{rule}; got {found}" + (f": {fix}" if fix else ""))


def _refused(message: str) -> Exception:
    from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)  # served: HTTP 400 with the message
