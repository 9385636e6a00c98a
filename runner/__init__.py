"""xrun: declarative deep-learning experiments, from one YAML file to a trained model and an MLflow run.

The public Python API, imported lazily so that `import runner` costs nothing (TensorFlow loads only when a model is
built or trained):

    from runner import load_spec, build_model, run_experiment, RunRequest, XrunError
    spec = load_spec("experiments/model1.yaml", ["training.epochs=1"])
    model = build_model(spec)
    result = run_experiment(spec)  # or run_experiment(RunRequest(spec, tracking_uri=..., quiet=True, ...))
"""

from runner.errors import XrunError

# name -> module that defines it; one place that says what the public API is.
_PUBLIC = {
    "load_spec": "runner.language.spec",
    "Spec": "runner.language.spec",
    "build_model": "runner.model.compiler",
    "run_experiment": "runner.running.run",
    "RunRequest": "runner.running.request",
    "Config": "runner.language.config",
    "Result": "runner.running.run",
}

__all__ = ["XrunError", "__version__", *_PUBLIC]


def __getattr__(name: str):
    if name == "__version__":  # read from the package's metadata when asked: importlib.metadata costs 50 ms
        return _version()
    if name not in _PUBLIC:
        raise AttributeError(f"module 'runner' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_PUBLIC[name]), name)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("xrun")
    except metadata.PackageNotFoundError:  # running from a checkout that was never installed
        return "0+unknown"
