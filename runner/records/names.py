"""The names xrun's records use, each written once: tag keys, artifact paths, run names and store locations."""

# Run tags (and Optuna trial attributes) that xrun writes and reads back.
VARIANT = "xrun.variant"                 # what a sweep child varied, e.g. "training.batch_size=64"
SWEEP = "xrun.sweep"                     # "parent" on a sweep's parent run
STUDY = "xrun.study"                     # the Optuna study of a sweep
TRIAL = "xrun.trial"                     # the trial number of a sweep child
METRIC = "xrun.metric"                   # the metric a sweep optimises
PRUNED = "xrun.pruned"                   # "true" on a trial the pruner stopped
PRUNED_AT_EPOCH = "xrun.pruned_at_epoch"  # the epoch after which the pruner stopped it
ERROR = "xrun.error"                     # one line saying why a trial failed
END_REASON = "xrun.end_reason"           # why a run ended the way it did
STOPPED_AT = "xrun.stopped_at"           # training.stop_at reached: "val_accuracy >= 0.995 at epoch 4"
VALIDATION = "xrun.validation"           # what the run validated on
MODEL_URI = "xrun.model_uri"             # the logged model, once it is complete
CHECKPOINT_EPOCH = "xrun.checkpoint_epoch"  # the epoch the saved checkpoint has completed
RANDOM_STATE = "xrun.random_state"       # the model's seed generators after that epoch (json)
HOST = "xrun.host"                       # where the run's process lives ...
PID = "xrun.pid"                         # ... its process id ...
PROCESS_START = "xrun.process_start"     # ... and when that process started (pids are reused)
HEARTBEAT = "xrun.heartbeat"             # seconds since the epoch, refreshed while the run is alive
VERSION = "xrun.version"                 # the xrun that made the run
RESUMED_FROM_EPOCH = "xrun.resumed_from_epoch"  # on a resumed run: the epoch its checkpoint had completed
RESUME_CHANGES = "xrun.resume_changes"   # on a resumed run: how the resume changed the config ("none")
RESUME_CLAIM = "xrun.resume_claim"       # on a run being resumed: "host pid process-start time" of its resumer
EVALUATION_OF = "xrun.evaluation_of"     # on an evaluation run: the training run whose model it evaluated
EVALUATION_DATA = "xrun.evaluation.data"  # ... and the data it evaluated on
LR_FIND = "xrun.lr_find"                 # "true" on a learning-rate range test's run (`xrun lr-find`)
LR_FIND_SUGGESTION = "xrun.lr_find.suggestion"  # ... the rate it suggests ...
LR_FIND_SET = "xrun.lr_find.set"         # ... as the --set that gives it to the experiment ...
LR_FIND_DIVERGED = "xrun.lr_find.diverged"  # ... and whether the ramp stopped where the loss diverged
TTA = "xrun.tta"                         # test-time augmentation's views, e.g. "identity, flip_h, shift_x-3, shift_x+3"
TTA_METRIC = "{metric}_tta"              # a score on the views' averaged probabilities: test_accuracy_tta, accuracy_tta
CV = "xrun.cv"                           # "parent" on a cross-validation's parent run
CV_FOLDS = "xrun.cv.folds"               # on the parent and each fold's run: how many folds
CV_FOLD = "xrun.cv.fold"                 # on a fold's run: the fold it validated on (0..folds-1)
CV_STAT = "{metric}_{stat}"              # the parent's metrics: test_accuracy_mean, _std, _min, _max over the folds
EXPERIMENT_FILE = "experiment.file"      # the YAML file the run (or sweep) came from
# MLflow's own tags for a run's Source and Created by columns, which MLflow sets only on runs it starts itself.
SOURCE_NAME = "mlflow.source.name"       # the experiment file, or the xrun command that made the run
SOURCE_TYPE = "mlflow.source.type"       # LOCAL: a program on this machine
USER = "mlflow.user"                     # who ran it
RUN_NAME = "mlflow.runName"              # the run's name: setting it renames the run

# Tags of a sweep's parent run (besides SWEEP, STUDY and METRIC).
SWEEP_KEY = "xrun.sweep_key"             # what makes two sweeps the same one
STUDY_STORAGE = "xrun.study_storage"     # the Optuna database, its password redacted
SEARCH_METHOD = "xrun.method"            # grid, random, tpe, cmaes
DIRECTION = "xrun.direction"             # minimize or maximize the metric
PRUNER = "xrun.pruner"                   # the pruner's type
TRIALS = "xrun.trials"                   # how many trials the sweep runs
BEST = "xrun.best"                       # "no trial completed" when there is no best trial to report

# Attributes of an Optuna study and its trials.
PARENT_RUN_ID = "xrun.parent_run_id"     # the study's MLflow parent run
SURPLUS = "xrun.surplus"                 # a trial started past the sweep's target, not counted
TRIAL_RUN_ID = "mlflow_run_id"           # a trial's MLflow run

# The tags of a run's MLflow dataset input.
DATA_SOURCE = "xrun.data.source"         # the kind of data source (mnist, folder, ...)
EXAMPLES = "xrun.examples.{split}"       # how many examples a split has, e.g. xrun.examples.train

# Stores from before Optuna handed out a sweep's trials kept claim runs, marked with this tag; tables hide them.
CLAIM_OF = "xrun.claim_of"

# Run metrics xrun logs besides the epochs' (training.stop_at and the test scores are elsewhere).
GFLOPS = "gflops"                        # training FLOPs per step x steps / the steps' wall time, in GFLOP/s
PEAK_SHARE = "peak_share"                # ... as a share of this machine's measured conv rate (runner/training/peak)

# Artifact paths inside a run.
CHECKPOINTS = "checkpoints"              # the folder of a run's saved models
CHECKPOINT = f"{CHECKPOINTS}/last.keras"  # the model with its optimizer state, for --resume
CONFIG = "config/{name}"                 # the experiment file as written, by its file name
BASE_CONFIG = "config/bases/{name}"      # each file it extends
RESOLVED_CONFIG = "config/resolved.yaml"  # the config as it ran (the seed actually used included)
RESOLVED_BEFORE_EPOCH = "config/resolved.before-epoch-{epoch}.yaml"  # a resumed run's config before the resume
OVERRIDES = "config/overrides.txt"       # the --set overrides, one a line
CLASS_COUNTS = "data/class_counts.csv"   # examples of each class in each split (train, val, test)
SKIPPED_FILES = "data/skipped_files.txt"  # the unreadable files data.on_bad_file: skip left out, one a line
MODEL_SUMMARY_TEXT = "model_summary.txt"  # the model's layer table
MODEL_SUMMARY_JSON = "model_summary.json"  # the same, as data
ERROR_FILE = "error.txt"                 # the traceback of a FAILED run
LEARNING_CURVES_PLOT = "plots/learning_curves.png"
CONFUSION_MATRIX_PLOT = "plots/confusion_matrix.png"
CONFUSION_MATRIX_CSV = "plots/confusion_matrix.csv"
TEST_PER_LABEL = "test_per_label.csv"   # a multi-label run's test scores per label: precision, recall, F1, AUC
MISCLASSIFIED_PLOT = "plots/misclassified.png"
AUGMENTED_SAMPLES_PLOT = "plots/augmented_samples.png"
LR_FIND_PLOT = "plots/lr_find.png"       # a range test's loss against the rate
LR_FIND_CSV = "lr_find.csv"              # ... and its steps: rate, loss, smoothed loss
EVALUATION_MATRIX_PLOT = "evaluation/confusion_matrix.png"  # an evaluation run's files
EVALUATION_MATRIX_CSV = "evaluation/confusion_matrix.csv"
EVALUATION_PER_CLASS = "evaluation/per_class.csv"
SWEEP_SPACE = "sweep/space.txt"          # a sweep parent's search space, one dimension a line
SWEEP_BEST = "sweep/best_trial.json"     # ... its best trial ...
OPTIMIZATION_HISTORY_PLOT = "plots/optimization_history.png"  # ... and Optuna's reports
PARAM_IMPORTANCES_PLOT = "plots/param_importances.png"
PARAM_IMPORTANCES_TEXT = "plots/param_importances.txt"  # why there is no importances plot

# Run names.
SWEEP_RUN_NAME = "{name} sweep"          # a sweep's parent run, by the experiment's name
TRIAL_RUN_NAME = "{name} [{variant}]"    # a sweep child, by the experiment's name and its short variant name
PRUNED_RUN_NAME = "{name} [pruned at {epoch}]"  # ... renamed once the pruner stopped it (MLflow shows it FINISHED)
EVALUATION_RUN_NAME = "{name} evaluation"  # an evaluation run, by the evaluated run's name
LR_FIND_RUN_NAME = "{name} lr-find"      # a learning-rate range test, by the experiment's name
CV_RUN_NAME = "{name} cv"                # a cross-validation's parent run, by the experiment's name
FOLD_RUN_NAME = "{name} [fold {fold}]"   # one fold's run under it

# Where the records are kept when no --tracking-uri or $MLFLOW_TRACKING_URI says otherwise.
STORE_DIR = "mlruns"                     # relative to the working directory
STORE_DB = "mlflow.db"                   # MLflow's SQLite database in STORE_DIR
STUDY_DB = "optuna.db"                   # the sweeps' Optuna database beside the MLflow one
SQLITE_PREFIX = "sqlite:///"             # a SQLite URI is this and the database's path
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"

# Heartbeats: a run's own, in its tags, and a sweep trial's, in the Optuna database (Optuna's own mechanism).
RUN_HEARTBEAT_SECONDS = 60               # a running run's HEARTBEAT tag is at most this old (plus one store write)
TRIAL_HEARTBEAT_SECONDS = 30             # a sweep worker's default `--heartbeat` for its Optuna trials
TRIAL_GRACE_SECONDS = 120                # a trial silent this long is taken for dead and retried (`--grace-period`)
