"""The `xrun` command line: parse arguments, call the library, turn an XrunError into one message and exit code 2.

TensorFlow is imported only by the commands that build or train a model, so `xrun validate` and `--help` are quick.
"""

from __future__ import annotations

import json
import sys

import click

from runner.errors import SIGTERM_MESSAGE, InterruptedWhenComplete, XrunError
from runner.records import names
from runner.trained import formats as export_formats


def import_tensorflow():
    """TensorFlow, quietly; its module (which reads the schema) is imported only by the commands that need it."""
    from runner.training import settings

    return settings.import_tensorflow()


# Options shared by several commands: one definition, one help text each.
set_option = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Override a YAML value, e.g. --set training.epochs=3 (repeatable; typed by the schema).")
tracking_uri_option = click.option("--tracking-uri", metavar="URI",
                                   help="MLflow store or server (default: $MLFLOW_TRACKING_URI, else sqlite under "
                                        "./mlruns).")


def _existing_data_dir(ctx, param, value):
    """A --data-dir / $XRUN_DATA_DIR that is not a folder is an error before any run starts, never passed over."""
    if value:
        from runner.training.data import data_folder  # NumPy, not TensorFlow

        data_folder(value)
    return value


data_dir_option = click.option("--data-dir", envvar="XRUN_DATA_DIR", metavar="DIR", callback=_existing_data_dir,
                               help="Folder with the dataset files (also $XRUN_DATA_DIR).")
TABLE_FORMATS = click.Choice(["table", "csv", "json", "markdown"])


def format_option(choices: click.Choice = TABLE_FORMATS, what: str = "the output"):
    return click.option("--format", "fmt", type=choices, default=choices.choices[0], show_default=True,
                        help=f"Format of {what}.")


class _Xrun(click.Group):
    """A group where `xrun FILE ...` means `xrun run FILE ...`."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_Xrun, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="xrun", prog_name="xrun")
def cli():
    """Declarative deep-learning experiments: one YAML file in, a trained Keras model and an MLflow run out.

    \b
      xrun experiments/model1.yaml           train it, log everything to MLflow
      xrun validate experiments/*.yaml       check files against the schema (no TensorFlow)
      xrun summary experiments/model10.yaml  the compiled model: layers, shapes, parameters
      xrun predict RUN_ID digits/            classify images with a run's model (also evaluate, export)
    """


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
@set_option
@click.option("--no-data", is_flag=True, help="Check the files without their data: a data.path that names nothing "
              "is not an error (data kept on another machine, or not made yet).")
def validate(files, overrides, no_data):
    """Check experiment FILES: YAML syntax, the schema, names, blocks, layer references, and the model against its
    data (which must exist, unless --no-data).

    Shapes, model size and KerasLayer arguments need Keras: `summary` and `run` check those.
    """
    from runner.language.advice import print_warnings
    from runner.language.spec import load_spec

    failed = 0
    for file in files:
        try:
            print_warnings(load_spec(file, overrides, data_must_exist=not no_data).warnings)
        except XrunError as exc:
            failed += 1
            click.echo(exc.format(), err=True)
        else:
            click.echo(f"ok  {file}")
    if failed:
        raise click.exceptions.Exit(XrunError.exit_code)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=True))
@set_option
@format_option(click.Choice(["table", "json"]), "the model description")
def summary(file, overrides, fmt):
    """Build the model of FILE and show each layer's name, type, inputs, output shape and parameters, and the
    training's predicted peak memory and step time on this machine (its speed measured once, then cached)."""
    from runner.language.advice import print_warnings
    from runner.language.spec import load_spec

    spec = load_spec(file, overrides, data_must_exist=False)  # the model is shown without its data (ImageNet's)
    print_warnings(spec.warnings)
    import_tensorflow()
    from runner.language.config import resolve
    from runner.model import summary as model_summary
    from runner.model.compiler import build_model
    from runner.training.forecast import forecast
    from runner.training.settings import applied, settings_for

    config = resolve(spec, settings_for(spec.training))
    with applied(config.settings):  # the model as a run builds it (mixed precision where `auto` chooses it)
        model = build_model(spec)
        info = {**model_summary.model_info(model, spec.graph), "training_cost": forecast(config, model)}
    if fmt == "json":
        click.echo(json.dumps(info, indent=2))
    else:
        model_summary.print_model_table(info, title=f"{spec.name}  ({file})")
        model_summary.print_cost(info["training_cost"])


@cli.command()
@click.argument("file", type=click.Path(dir_okay=True))
@set_option
@tracking_uri_option
@data_dir_option
@click.option("--quiet", "-q", is_flag=True, help="No progress display; just the final summary.")
@click.option("--workers", metavar="HOST:PORT,...", help="Train on several machines: every worker's address, "
              "the same list on each (or set TF_CONFIG).")
@click.option("--worker-index", type=int, metavar="I", help="This machine's place in --workers (0 is the chief).")
@click.option("--backup-dir", metavar="DIR", help="Multi-worker: where the job's state is kept so a restarted "
              "worker resumes (default .xrun-backup/NAME).")
@click.option("--resume", metavar="RUN_ID", help="Continue a run (KILLED, FAILED, dead, or FINISHED with more "
              "epochs) from its saved model, into the same MLflow run; 8-character prefixes do. Its own --set values "
              "are kept; new ones go on top.")
@click.option("--allow-changes", is_flag=True, help="With --resume: go ahead although FILE differs from the config "
              "the run was trained with (the changes are recorded on the run; another model is never accepted).")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=1, show_default=True, metavar="N",
              help="Save the model to the run's local journal every N epochs (0: never), so a kill loses little.")
def run(file, overrides, tracking_uri, data_dir, quiet, workers, worker_index, backup_dir, resume, allow_changes,
        checkpoint_every):
    """Train the experiment in FILE and record it in MLflow (`xrun FILE` is short for `xrun run FILE`).

    With --workers and --worker-index (or TF_CONFIG), run the same command on each machine: they train as one
    job with tf.distribute's MultiWorkerMirroredStrategy, and only worker 0 records the MLflow run.
    """
    from runner.language.advice import print_warnings
    from runner.language.spec import load_spec
    from runner.records import journal, local
    from runner.running.request import RunRequest

    uri = local.tracking_uri(tracking_uri)
    spec = None if resume else load_spec(file, overrides)  # a resume's plan reads FILE itself
    print_warnings(spec.warnings if spec else ())
    if journal.waiting(uri):  # what a dead process or a failed store left: first
        from runner.records import logged, store

        if logged.waiting(uri):  # a kept MLflow model is logged through Keras: TensorFlow, quietly
            import_tensorflow()

        _echo_synced(store.sync(uri, only_this=True))
    plan = _resume_plan(file, overrides, resume, uri, allow_changes) if resume else None
    request = RunRequest(plan.spec if plan else spec, tracking_uri=uri, resume=plan, data_dir=data_dir, quiet=quiet,
                         checkpoint_every=checkpoint_every, backup_dir=backup_dir)
    _join_cluster(workers, worker_index)
    import_tensorflow()
    from runner.records import store
    from runner.running.run import run_experiment

    spec = request.spec
    result = run_experiment(request)
    if not result.run_id:  # a non-chief worker: the chief records the run
        click.echo(f"{spec.name}: worker done, test accuracy {result.test_accuracy:.4f}; worker 0 records the run")
        return
    click.echo(_run_summary(spec.name, result, store.ui_command(result.tracking_uri)))


def _resume_plan(file, overrides, run_id: str, uri: str, allow_changes: bool):
    """FILE checked against the run's record, before TensorFlow loads or anything is written."""
    from runner.running.resume import plan

    return plan(file, list(overrides), run_id, uri, allow_changes)


def _echo_synced(delivered: list) -> None:
    for run_id, uri, status in delivered:
        click.echo(f"xrun sync: run {run_id[:8]} ({uri}): {status}", err=True)


@cli.command(name="lr-find")
@click.argument("file", type=click.Path(dir_okay=True))
@set_option
@click.option("--steps", type=click.IntRange(min=20), default=200, show_default=True,
              help="Optimizer steps of the ramp (one batch each); it stops sooner where the loss diverges.")
@click.option("--min", "lowest", type=click.FloatRange(min=0, min_open=True), default=1e-7, show_default=True,
              help="The ramp's first learning rate.")
@click.option("--max", "highest", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="The ramp's last learning rate.")
@tracking_uri_option
@data_dir_option
def lr_find(file, overrides, steps, lowest, highest, tracking_uri, data_dir):
    """Find a learning rate for FILE: the range test (a fresh model trained one batch per rate, the rate rising
    geometrically from --min to --max, stopped where the smoothed loss passes 4x its best), recorded as an MLflow
    run with the loss-against-rate plot. Prints the suggested rate (fastai's `valley`) and its --set. The model is
    not kept."""
    from runner.language.advice import print_warnings
    from runner.language.spec import load_spec

    if lowest >= highest:
        raise XrunError(f"--min {lowest:g} is not below --max {highest:g}", hint="the ramp rises: e.g. --min 1e-7 "
                        "--max 10")
    spec = load_spec(file, overrides)
    print_warnings(spec.warnings)
    import_tensorflow()
    from runner.records import store
    from runner.running.lr_find import find

    found = find(spec, steps=steps, lowest=lowest, highest=highest, tracking_uri=tracking_uri, data_dir=data_dir)
    trace, given = found.trace, "".join(f"--set {o} " for o in overrides)
    stopped = f"stopped at step {trace.steps} (rate {trace.rates[-1]:.3g}): the loss diverged" if trace.diverged \
        else "the loss did not diverge: a higher --max may show where it does"
    click.echo(f"{spec.name}: {trace.steps} steps from {lowest:g} to {trace.rates[-1]:.3g} in {found.seconds:.1f}s; "
               f"{stopped}\nsuggested learning rate {found.suggested:.3g} (valley of the smoothed loss; minimum/10 "
               f"gives {found.minimum_tenth:.3g})\n  xrun {file} {given}--set {found.set_override}\n"
               f"MLflow run {found.run_id}, plot {names.LR_FIND_PLOT}  (see it: "
               f"{store.ui_command(store.tracking_uri(tracking_uri))})")


@cli.command()
@tracking_uri_option
def sync(tracking_uri):
    """Deliver what runs kept locally because the store failed or their process died: their metrics, files,
    model checkpoint and end (a run left RUNNING by a killed process ends KILLED). Exits 1 if any is still kept."""
    from runner.records import logged, store

    if logged.waiting(tracking_uri):  # a kept MLflow model is logged through Keras: TensorFlow, quietly
        import_tensorflow()
    delivered = store.sync(tracking_uri)
    _echo_synced(delivered)
    if not delivered:
        click.echo("xrun sync: nothing to deliver", err=True)
    if any(status.startswith("not delivered") for _, _, status in delivered):
        raise SystemExit(1)


def _join_cluster(workers: str | None, index: int | None) -> None:
    """--workers/--worker-index become TF_CONFIG, which TensorFlow reads when the strategy starts."""
    import os

    from runner.training.distribute import cluster_config

    if workers is None and index is None:
        return
    if workers is None or index is None:
        raise XrunError("--workers and --worker-index go together", hint="e.g. --workers h1:2222,h2:2222 --worker-index 0")
    os.environ["TF_CONFIG"] = cluster_config([w.strip() for w in workers.split(",") if w.strip()], index)


def _run_summary(name: str, result, ui: str) -> str:
    best = (f"best epoch {result.best_epoch}" + (f" (val_accuracy {result.best_val_accuracy:.4f})"
                                                if result.best_val_accuracy is not None else "")
            if result.best_epoch else "no epoch completed")
    return (f"{name}: test accuracy {result.test_accuracy:.4f}, test loss {result.test_loss:.4f}; {best}; "
            f"{result.epochs_run} epochs in {result.wall_seconds:.1f}s\n"
            f"MLflow run {result.run_id}  (see it: {ui})")


@cli.command()
@click.argument("run_ids", nargs=-1)
@click.option("--experiment", "-e", "experiments", multiple=True, help="MLflow experiment name (repeatable).")
@click.option("--latest", "-n", type=click.IntRange(min=1), help="Only the newest N runs.")
@click.option("--where", default="", metavar="FILTER", help="MLflow filter, e.g. \"params.training.batch_size = '64'\".")
@click.option("--sort", "sort_by", metavar="COLUMN", help="Sort by a column (e.g. test_acc, or a param shown).")
@click.option("--desc", is_flag=True, help="Sort descending.")
@click.option("--all-params", is_flag=True, help="Show every param, not only those that differ.")
@format_option(what="the table")
@click.option("--plot", type=click.Path(dir_okay=False), help="Also write the runs' learning curves, overlaid, to a PNG.")
@click.option("--config", "config_diff", is_flag=True, help="With two RUN_IDS: diff their resolved YAML.")
@tracking_uri_option
def compare(run_ids, experiments, latest, where, sort_by, desc, all_params, fmt, plot, config_diff, tracking_uri):
    """Compare runs side by side: RUN_IDS (8-character prefixes do; a sweep's parent means its variants), or the
    runs of --experiment, newest first.

    Shows each run's name and id, the params that differ between the runs, parameter count, epochs, losses and
    accuracies (train, val, best val, test), time and status. To fit the terminal, long values are abbreviated and
    the least telling columns left out (the table says which; --format csv has them all). Loads neither TensorFlow
    nor, on a local store, MLflow (except for --where, --plot and --config).
    """
    from runner.records import tables as cmp

    if config_diff:
        click.echo(_config_diff(run_ids, tracking_uri), nl=False)
        return
    runs = cmp.select(list(run_ids), list(experiments), latest, where, tracking_uri)
    _print_table(cmp.sort_rows(cmp.table(runs, all_params, tracking_uri), sort_by, desc), fmt, cmp)
    if plot:
        _plot_runs(runs, plot, tracking_uri)


def _config_diff(run_ids, tracking_uri) -> str:
    from runner.records import tables as cmp

    return cmp.config_diff(list(run_ids), tracking_uri)


def _print_table(table, fmt, cmp, title: str = "") -> None:
    if fmt == "table":
        from rich.console import Console

        console = Console(width=None if sys.stdout.isatty() else 200)
        console.print(cmp.rich_table(table, title, width=console.width))
    else:
        click.echo({"csv": cmp.to_csv, "json": cmp.to_json, "markdown": cmp.to_markdown}[fmt](table), nl=False)


def _plot_runs(runs, path, tracking_uri) -> None:
    from runner.records import plots
    from runner.records import tables as cmp

    figure = plots.overlay_curves(cmp.curves(runs, tracking_uri), title=f"{len(runs)} runs")
    click.echo(f"wrote {plots.save_png(figure, path)}", err=True)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=True))
@set_option
@click.option("--grid", multiple=True, metavar="KEY=V1,V2", help="Sweep KEY over these values (repeatable; "
              "replaces that key's grid in the YAML).")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes on this machine, each taking trials from the study.")
@click.option("--dry-run", is_flag=True, help="Check and list the grid (or the search space); train nothing "
              "(and load neither TensorFlow nor Optuna).")
@click.option("--storage", envvar="XRUN_STUDY_STORAGE", metavar="URL", help="The Optuna study's database, shared "
              "by every machine on the sweep, e.g. postgresql://user:pw@host/db, or a journal file on a shared "
              "folder, no server: /shared/NAME.journal or journal:///shared/FILE (also $XRUN_STUDY_STORAGE; "
              "default: sqlite beside the MLflow store).")
@click.option("--heartbeat", type=click.IntRange(1), default=names.TRIAL_HEARTBEAT_SECONDS, show_default=True,
              metavar="SECONDS",
              help="How often a worker tells the study its trial is alive.")
@click.option("--grace-period", type=click.IntRange(1), default=names.TRIAL_GRACE_SECONDS, show_default=True,
              metavar="SECONDS",
              help="A trial silent this long is taken as dead (its machine stopped) and retried by a live worker.")
@click.option("--worker", is_flag=True, hidden=True, help="One of --jobs' processes: no table, no reports.")
@tracking_uri_option
@data_dir_option
@format_option(what="the final table")
def sweep(file, overrides, grid, jobs, dry_run, storage, heartbeat, grace_period, worker, tracking_uri, data_dir,
          fmt):
    """Search FILE's `sweep:` section (and --grid) as an Optuna study: each trial is a child run of one parent
    MLflow run.

    The same command on several machines (with one --storage) shares the study: Optuna hands out the trials, and a
    trial whose machine stops is retried by a live one after --grace-period. A failing trial is recorded FAILED and
    the others go on (the command then exits 1); running the sweep again continues its study.
    """
    from pathlib import Path

    from runner import sweep as sw

    if dry_run:
        planned = sw.plan(Path(file), list(overrides), list(grid))
        lines = sw.describe(planned.space)
        click.echo("\n".join(lines))
        what = f"{len(lines)} variants" if planned.space.method == "grid" else "the search space"
        click.echo(f"{what}, checked; nothing trained (dry run)", err=True)
        return
    if worker:
        from runner.sweep.lifeline import die_with_parent
        die_with_parent()
    if jobs == 1:  # with --jobs N each worker is a process of its own, which loads TensorFlow itself
        import_tensorflow()
    from runner.records import store

    uri = store.tracking_uri(tracking_uri)
    report = sw.run_sweep(Path(file), list(overrides), list(grid), uri=uri, storage=storage, jobs=jobs,
                          data_dir=data_dir, progress=lambda line: click.echo(line, err=True),
                          heartbeat=heartbeat, grace=grace_period, wrap_up=not worker)
    if not worker:
        _sweep_footer(report, store, fmt, uri)


def _sweep_footer(report, store, fmt, uri) -> None:
    from runner.records import tables as cmp

    for variant, error in report.failures:
        click.echo(f"FAILED: {variant}: {error}", err=True)
    runs = sorted(cmp.sweep_children(report.parent_id, uri),
                  key=lambda r: (report.order.get(r.tags.get(names.VARIANT), len(report.order)),
                                 int(r.tags.get(names.TRIAL, 0))))
    if runs:
        _print_table(cmp.table(runs, uri=uri), fmt, cmp)
    done = report.done
    click.echo(f"sweep parent run {report.parent_id}: {done.get('COMPLETE', 0)} finished, {done.get('PRUNED', 0)} "
               f"pruned, {done.get('FAIL', 0)} failed ({len(report.trained_here)} trained by this process"
               f"{'' if report.finished else '; trials left: run the sweep again'}); study {report.study_name} in "
               f"{report.storage}  (compare: xrun compare {report.parent_id[:8]}; see it: {store.ui_command(uri)})",
               err=True)
    if report.failures:
        raise SystemExit(1)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--folds", "-k", type=int, default=5, show_default=True, metavar="K",
              help="How many folds: K runs, each validated on one fold and trained on the others.")
@set_option
@click.option("--quiet", "-q", is_flag=True, help="No progress display for the folds' runs.")
@tracking_uri_option
@data_dir_option
@format_option(click.Choice(["table", "json"]), "the folds' statistics")
def cv(file, folds, overrides, quiet, tracking_uri, data_dir, fmt):
    """K-fold cross-validation of FILE: K child runs of one parent MLflow run, fold I validated on (data.validation:
    fold, data.fold: I) and the others trained on.

    The folds are stratified by class and drawn with data.split_seed from the training examples (after data.limit);
    every run is scored on the test set as usual. The parent gets METRIC_mean, METRIC_std (population), METRIC_min
    and METRIC_max of every metric the folds' runs end with (test_accuracy, best_val_accuracy, val_loss, ...).
    """
    from pathlib import Path

    from runner.records import store
    from runner.running import cv as cross

    cross.plan(Path(file), list(overrides), folds)  # a bad file or --folds: one line, before TensorFlow loads
    import_tensorflow()
    uri = store.tracking_uri(tracking_uri)
    report = cross.run_cv(Path(file), list(overrides), folds, uri=uri, data_dir=data_dir, quiet=quiet,
                          say=lambda line: click.echo(line, err=True))
    if fmt == "json":
        click.echo(json.dumps({"parent_run_id": report.parent_id, "folds": report.folds, **report.stats}, indent=2))
    else:
        click.echo(_cv_table(report.stats), nl=False)
    click.echo(f"cv parent run {report.parent_id}: {len(report.folds)} folds (compare: xrun compare "
               f"{report.parent_id[:8]}; see it: {store.ui_command(uri)})", err=True)


def _cv_table(stats: dict) -> str:
    """The main metrics' statistics over the folds, one metric a row (all of them are on the parent run)."""
    shown = ("test_accuracy", "test_loss", "best_val_accuracy", "val_accuracy", "val_loss", "test_accuracy_tta",
             "test_loss_tta", "epochs_run")
    lines = [f"{'metric':<18}  {'mean':>8}  {'std':>8}  {'min':>8}  {'max':>8}"]
    for metric in (m for m in shown if names.CV_STAT.format(metric=m, stat="mean") in stats):
        values = [stats[names.CV_STAT.format(metric=metric, stat=s)] for s in ("mean", "std", "min", "max")]
        lines.append(f"{metric:<18}  " + "  ".join(f"{v:8.4f}" for v in values))
    return "\n".join(lines) + "\n"


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@tracking_uri_option
def ui(host, port, tracking_uri):
    """Start the MLflow web UI on the project's tracking store (Ctrl-C stops it)."""
    from runner.records import store
    from runner.records import ui as mlflow_ui

    uri = store.tracking_uri(tracking_uri)
    mlflow_ui.check_port_free(host, port)
    click.echo(f"MLflow UI for {uri} at http://{host}:{port}  (Ctrl-C stops it)", err=True)
    raise SystemExit(mlflow_ui.serve(uri, host, port))


model_argument = click.argument("model", metavar="MODEL")


@cli.command()
@model_argument
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("--top", "-k", "top_k", type=click.IntRange(min=1), default=3, show_default=True,
              help="How many of the likeliest classes to show per image.")
@click.option("--threshold", "thresholds", multiple=True, metavar="[LABEL=]P",
              help="Multi-label models: the probability at which a label counts as present, for every label (0.3) "
                   "or one (cat=0.3); repeatable; default 0.5. Shows each image's labels instead of the top classes.")
@format_option(click.Choice(["table", "csv", "json"]), "the predictions")
@tracking_uri_option
def predict(model, inputs, top_k, thresholds, fmt, tracking_uri):  # noqa: PLR0913
    """Classify INPUT images with MODEL: PNG or JPEG files, folders of them, or .npy arrays of uint8 images.

    \b
    MODEL is a run id (8 characters will do), a models:/ URI or a .keras file.
    Images go in as they are stored (uint8 pixels 0-255, the training size): the model scales them itself.
    """
    import_tensorflow()
    from runner.records import tables
    from runner.trained import use

    loaded = use.load(model, tracking_uri)
    images = use.read_inputs(list(inputs), use.reader(loaded))
    for note in images.notes:  # e.g. images resized as training resized them
        click.echo(note, err=True)
    if loaded.multi_label or thresholds:  # a set of labels per image: those at or above their thresholds
        rows, labelled = use.label_predictions(loaded, images, thresholds)
        text = json.dumps(labelled, indent=2) + "\n" if fmt == "json" else None
        click.echo(text or (tables.to_csv(rows) if fmt == "csv" else use.text_table(rows)), nl=False)
        return
    found = use.predict(loaded, images, top_k)
    if fmt == "json":
        click.echo(json.dumps(use.prediction_json(found), indent=2))
    else:
        rows = use.prediction_rows(found)
        click.echo(tables.to_csv(rows) if fmt == "csv" else use.text_table(rows), nl=False)


@cli.command()
@model_argument
@click.option("--data", metavar="DATA", help="The test split of an .npz, a CSV list, a folder of train/ test/ folders "
              "or an experiment YAML's data section; a folder with one sub-folder of images per class (all of them); "
              "or mnist / fashion_mnist. Default: the run's own test split, whatever its source.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N images.")
@click.option("--log/--no-log", default=True, show_default=True,
              help="Record the evaluation in MLflow, as a run nested under the training run.")
@click.option("--tta", is_flag=True, help="Also score the class probabilities averaged over each image and its "
              "flips and shifts from the run's augmentation (test-time augmentation): loss_tta, accuracy_tta, ...")
@format_option(click.Choice(["table", "json"]), "the scores")
@tracking_uri_option
@data_dir_option
def evaluate(model, data, limit, log, tta, fmt, tracking_uri, data_dir):
    """Score MODEL on labelled images: loss, accuracy, per-class precision / recall / F1 and the confusion matrix.

    \b
    MODEL is a run id (8 characters will do), a models:/ URI or a .keras file.
    The evaluation is recorded as an MLflow run nested under the training run (the confusion matrix as PNG and
    CSV, per-class scores as CSV), and its metrics are attached to the logged model under the data's name.
    """
    import_tensorflow()
    from runner.trained import evaluate as ev
    from runner.trained import use

    loaded = use.load(model, tracking_uri)
    augmentation = ev.run_augmentation(loaded) if tta else None
    data_set = ev.labelled_data(loaded, data, limit, data_dir, tracking_uri)
    for note in data_set.notes:
        click.echo(note, err=True)
    result = ev.evaluate(loaded, data_set)
    tta_result = ev.evaluate_tta(loaded, data_set, augmentation) if tta else None
    if fmt == "json":
        click.echo(json.dumps({"model": loaded.label, "data": data_set.name, "images": len(data_set.labels),
                               **ev.metrics(result), **(ev.tta_metrics(tta_result[1]) if tta else {}),
                               "per_class": result.per_class, "confusion_matrix": result.matrix.tolist()}, indent=2))
    else:
        click.echo(ev.report(loaded, data_set, result) + (ev.tta_line(*tta_result) if tta else ""), nl=False)
    if log and loaded.logged is not None and loaded.logged.run_id:
        run_id = ev.record(loaded, data_set, result, tracking_uri, tta_result)
        click.echo(f"recorded as MLflow run {run_id}, nested under training run {loaded.logged.run_id}", err=True)
    elif log:
        click.echo(f"not recorded in MLflow: {loaded.source} has no training run", err=True)


@cli.command(name="export")
@model_argument
@click.option("--format", "fmt", type=click.Choice(list(export_formats.FORMATS)), required=True,
              help=export_formats.help_text())
@click.option("--quantize", type=click.Choice(["float16", "int8"]),
              help="TFLite only: float16 weights, or int8 weights and activations (calibrated on training images).")
@click.option("--output", "-o", type=click.Path(), help="Where to write it (default: NAME[-QUANT].tflite/.onnx, or "
              "NAME_savedmodel/), with a PATH.json beside it: class names, input, output, the check.")
@click.option("--force", is_flag=True, help="Replace an existing output.")
@click.option("--check-images", type=click.IntRange(min=1), default=200, show_default=True,
              help="Test images the export is checked on against Keras.")
@click.option("--data", metavar="DATA", help="Check on these images (what `evaluate --data` takes); default: the "
              "run's own test split.")
@click.option("--max-drop", type=click.FloatRange(0, 1), default=0.02, show_default=True,
              help="Refuse an export whose accuracy on the check images is lower than Keras's by more than this.")
@tracking_uri_option
@data_dir_option
def export_model(model, fmt, quantize, output, force, check_images, data, max_drop, tracking_uri,
                 data_dir):
    """Export MODEL as a SavedModel, TFLite or ONNX file that takes raw uint8 images and returns probabilities.

    \b
    MODEL is a run id (8 characters will do), a models:/ URI or a .keras file.
    The export is run on --check-images test images before it is put in place: its outputs must match Keras's
    within a tolerance (1e-4; 2e-2 for float16), and its accuracy change is measured and printed.
    """
    import_tensorflow()
    from pathlib import Path

    from runner.trained import evaluate as ev
    from runner.trained import export as ex
    from runner.trained import use

    loaded = use.load(model, tracking_uri)
    check_data = ev.labelled_data(loaded, data, check_images, data_dir, tracking_uri)
    done = ex.export(loaded, fmt, check_data, quantize=quantize, output=Path(output) if output else None,
                     force=force, max_drop=max_drop, data_dir=data_dir)
    c = done.check
    click.echo(f"wrote {done.path} ({done.bytes / 1024:,.1f} KiB) and {done.description}\n"
               f"checked on {c.images} images of {check_data.name}: max |difference| from Keras {c.max_difference:.2e}"
               f"{f' (allowed {c.tolerance:.0e})' if c.tolerance is not None else ''}, same top class on "
               f"{c.agreement:.2%}; accuracy {c.keras_accuracy:.4f} (Keras) -> {c.exported_accuracy:.4f} "
               f"({c.exported_accuracy - c.keras_accuracy:+.4f})")


@cli.command(name="list")
@click.argument("folder", default="experiments", type=click.Path(file_okay=False))
@tracking_uri_option
@format_option(what="the table")
def list_experiments(folder, tracking_uri, fmt):
    """Every experiment in FOLDER: description, dataset, parameter count, and its finished runs and best test
    accuracy so far (runs named as the experiment, in its MLflow experiment, that trained its own epochs and data;
    runs with fewer epochs, less data or --set changes are counted as partial_runs; sweep variants are not counted).
    Loads neither TensorFlow nor (on a local store) MLflow."""
    from runner.records import catalogue
    from runner.records import tables as cmp

    _print_table(catalogue.entries(folder, tracking_uri), fmt, cmp)


@cli.group()
def data():
    """Datasets: fetch them ahead of time (for machines that will train without network)."""


@data.command()
@click.argument("dataset")
@click.option("--data-dir", envvar="XRUN_DATA_DIR", metavar="DIR", help="Where to put it (default: Keras's cache).")
@click.option("--force", is_flag=True, help="Replace a file there that is not the verified dataset.")
def pull(dataset, data_dir, force):
    """Make sure a verified copy of DATASET (mnist, fashion_mnist) is on this machine; prints where it is."""
    from runner.training.data import pull as pull_dataset

    pulled = pull_dataset(dataset, data_dir, force=force)
    if pulled.replaced:
        click.echo(f"replaced {pulled.replaced} with the verified {dataset} dataset", err=True)
    click.echo(pulled.path)


@data.command(name="export")
@click.argument("dataset")
@click.argument("dest", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["folder", "npz"]), default="folder", show_default=True,
              help="PNG files in DEST/train/<class>/ and DEST/test/<class>/, or one DEST/<DATASET>.npz "
                   "(DEST itself when it ends in .npz).")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Only the first N images of each split.")
@data_dir_option
def export(dataset, dest, fmt, limit, data_dir):
    """Write built-in DATASET out as files, for `source: image_folder` or `source: arrays`; never overwrites."""
    from runner.training.data_export import export_dataset

    written, counts = export_dataset(dataset, dest, fmt, limit, data_dir)
    click.echo(f"wrote {', '.join(f'{n:,} {split}' for split, n in counts.items())} images to {written}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the CLI and maps the project's error type (and Ctrl-C) to exit codes."""
    try:
        # Without standalone mode click returns an Exit's code instead of exiting: pass it on.
        code = cli.main(args=argv, prog_name="xrun", standalone_mode=False)
        if isinstance(code, int):
            return code
    except XrunError as exc:
        click.echo(exc.format(), err=True)
        return XrunError.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt) as exc:
        # Schedulers read 143 as "stopped by SIGTERM" and 130 as Ctrl-C; click wraps the interrupt in Abort.
        interrupt = exc if isinstance(exc, KeyboardInterrupt) else exc.__context__
        terminated = str(interrupt) == SIGTERM_MESSAGE
        after = " after the run was complete (it ended FINISHED; nothing was lost)" \
            if isinstance(interrupt, InterruptedWhenComplete) else ""
        click.echo(("interrupted by SIGTERM" if terminated else "interrupted") + after, err=True)
        return 143 if terminated else 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
