"""xrun: declarative deep-learning experiments, from one YAML file to a trained model and an MLflow run."""

__version__ = "0.1.0"
