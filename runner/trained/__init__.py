"""What a trained model is used for: predict (use.py), evaluate and export, from a run or a model folder."""
