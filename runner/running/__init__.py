"""Running an experiment: a new run (run.py) and the continuation of one (resume.py)."""
