"""The names xrun's records use, each written once: run tag keys and artifact paths (plain strings, no MLflow)."""

# Run tags (and Optuna trial attributes) that xrun writes and reads back.
VARIANT = "xrun.variant"                 # what a sweep child varied, e.g. "training.batch_size=64"
SWEEP = "xrun.sweep"                     # "parent" on a sweep's parent run
STUDY = "xrun.study"                     # the Optuna study of a sweep
TRIAL = "xrun.trial"                     # the trial number of a sweep child
METRIC = "xrun.metric"                   # the metric a sweep optimises
PRUNED = "xrun.pruned"                   # "true" on a trial the pruner stopped
ERROR = "xrun.error"                     # one line saying why a trial failed
END_REASON = "xrun.end_reason"           # why a run ended the way it did
VALIDATION = "xrun.validation"           # what the run validated on
MODEL_URI = "xrun.model_uri"             # the logged model, once it is complete
CHECKPOINT_EPOCH = "xrun.checkpoint_epoch"  # the epoch the saved checkpoint has completed
HOST = "xrun.host"                       # where the run's process lives ...
PID = "xrun.pid"                         # ... its process id ...
PROCESS_START = "xrun.process_start"     # ... and when that process started (pids are reused)
HEARTBEAT = "xrun.heartbeat"             # seconds since the epoch, refreshed while the run is alive

# Artifact paths inside a run.
CHECKPOINT = "checkpoints/last.keras"    # the model with its optimizer state, for --resume
RESOLVED_CONFIG = "config/resolved.yaml"  # the config as it ran (the seed actually used included)
ERROR_FILE = "error.txt"                 # the traceback of a FAILED run
