"""How a run's model is saved as an MLflow model: MLflow's Keras flavour (so `mlflow.keras.load_model` gives the
Keras model), with the pyfunc side (what `mlflow models serve` and `mlflow.pyfunc.load_model` run) replaced by
xrun_served, which reads both pixel kinds a user holds, refuses what it would misread, and prints no progress bars.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import mlflow
from mlflow.models import Model

from runner.records import xrun_served

LOADER = xrun_served.__name__.rsplit(".", 1)[-1]  # the module's name where the model's code/ folder is on sys.path
CODE = "code"
FLAVOR = "keras"  # the logged model's flavour, as MLflow's UI and search show it


def log(keras_model, *, name: str, signature, metadata: dict | None, pip_requirements: list[str]):
    """mlflow.keras.log_model, with the pyfunc loader replaced (to the active run); returns MLflow's ModelInfo."""
    return Model.log(artifact_path=None, name=name, flavor=_Flavor, flavor_name=FLAVOR, keras_model=keras_model,
                     signature=signature, metadata=metadata, pip_requirements=pip_requirements)


class _Flavor:
    """What Model.log calls to write the model's folder."""

    @staticmethod
    def save_model(path, mlflow_model, keras_model, signature, **kwargs) -> None:
        # The Keras flavour refuses a signature without inputs, and warns about none: it is set here after.
        logger = logging.getLogger("mlflow.keras.save")
        level, _ = logger.level, logger.setLevel(logging.ERROR)
        try:
            mlflow.keras.save_model(keras_model, path, mlflow_model=mlflow_model, **kwargs)
        finally:
            logger.setLevel(level)
        mlflow_model.signature = signature
        (Path(path) / CODE).mkdir()
        shutil.copy(xrun_served.__file__, Path(path) / CODE / f"{LOADER}.py")
        pyfunc = mlflow_model.flavors["python_function"]
        pyfunc.update(loader_module=LOADER, code=CODE)
        mlflow_model.save(str(Path(path) / "MLmodel"))
