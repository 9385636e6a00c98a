"""The `xrun` command line: parse arguments, call the library, turn an XrunError into one message and exit code 2.

TensorFlow is imported only by the commands that build or train a model, so `xrun validate` and `--help` are quick.
"""

from __future__ import annotations

import json
import sys

import click

from runner.errors import XrunError
from runner.training.settings import import_tensorflow

# Options shared by several commands: one definition, one help text each.
set_option = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Override a YAML value, e.g. --set training.epochs=3 (repeatable; typed by the schema).")
tracking_uri_option = click.option("--tracking-uri", metavar="URI",
                                   help="MLflow store or server (default: $MLFLOW_TRACKING_URI, else sqlite under "
                                        "./mlruns).")
data_dir_option = click.option("--data-dir", envvar="XRUN_DATA_DIR", metavar="DIR",
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
    """


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
@set_option
def validate(files, overrides):
    """Check experiment FILES: YAML syntax, the schema, names, blocks and layer references.

    Shapes, model size and KerasLayer arguments need Keras: `summary` and `run` check those.
    """
    from runner.language.spec import load_spec

    failed = 0
    for file in files:
        try:
            load_spec(file, overrides)
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
    """Build the model of FILE and show each layer's name, type, inputs, output shape and parameters."""
    from runner.language.spec import load_spec

    spec = load_spec(file, overrides)
    import_tensorflow()
    from runner.model import summary as model_summary
    from runner.model.compiler import build_model

    info = model_summary.model_info(build_model(spec), spec.graph)
    if fmt == "json":
        click.echo(json.dumps(info, indent=2))
    else:
        model_summary.print_model_table(info, title=f"{spec.name}  ({file})")


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
@click.option("--resume", metavar="RUN_ID", help="Continue a KILLED or FAILED run from its saved model, into the "
              "same MLflow run.")
@click.option("--parent-run-id", hidden=True, help="Nest the run under this MLflow run (used by sweeps).")
@click.option("--variant", hidden=True, help="The sweep variant this run is (used by sweeps).")
def run(file, overrides, tracking_uri, data_dir, quiet, workers, worker_index, backup_dir, resume, parent_run_id,
        variant):
    """Train the experiment in FILE and record it in MLflow (`xrun FILE` is short for `xrun run FILE`).

    With --workers and --worker-index (or TF_CONFIG), run the same command on each machine: they train as one
    job with tf.distribute's MultiWorkerMirroredStrategy, and only worker 0 records the MLflow run.
    """
    from runner.language.spec import load_spec

    spec = load_spec(file, overrides)
    _join_cluster(workers, worker_index)
    import_tensorflow()
    from runner.records import store
    from runner.run import run_experiment

    result = run_experiment(spec, tracking_uri=tracking_uri, data_dir=data_dir, quiet=quiet, backup_dir=backup_dir,
                            resume=resume,
                            parent_run_id=parent_run_id, run_name=f"{spec.name} [{variant}]" if variant else None,
                            tags={"xrun.variant": variant} if variant else None)
    if not result.run_id:  # a non-chief worker: the chief records the run
        click.echo(f"{spec.name}: worker done, test accuracy {result.test_accuracy:.4f}; worker 0 records the run")
        return
    click.echo(_run_summary(spec.name, result, store.ui_command(result.tracking_uri)))


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
    accuracies (train, val, best val, test), time and status.
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

        Console(width=None if sys.stdout.isatty() else 200).print(cmp.rich_table(table, title))
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
              help="Variants to train at once, each in its own process.")
@click.option("--dry-run", is_flag=True, help="Check and list the variants; train nothing (and load no TensorFlow).")
@tracking_uri_option
@data_dir_option
@format_option(what="the final table")
@click.option("--reclaim", is_flag=True, help="Also retry variants left RUNNING by a machine that stopped.")
def sweep(file, overrides, grid, jobs, dry_run, tracking_uri, data_dir, fmt, reclaim):
    """Train every variant of FILE (its `sweep:` section and --grid) as child runs of one parent MLflow run.

    A failing variant is recorded FAILED and the others go on (the command then exits 1); running the same sweep
    again reuses its parent run, skips the variants that already FINISHED and retries the others. Several
    machines pointed at one tracking server can run the same sweep at once: each claims a variant before
    training it, so none runs twice.
    """
    from pathlib import Path

    from runner import sweep as sw

    if dry_run:
        planned = sw.plan(Path(file), list(overrides), list(grid))
        for i, v in enumerate(planned, 1):
            click.echo(f"{i:3d}  {v.key}")
        click.echo(f"{len(planned)} variants, each checked; nothing trained (dry run)", err=True)
        return
    if jobs == 1:  # with --jobs N each variant trains in a process of its own, which loads TensorFlow itself
        import_tensorflow()
    from runner.records import store

    uri = store.tracking_uri(tracking_uri)
    report = sw.run_sweep(Path(file), list(overrides), list(grid), jobs=jobs, uri=uri, data_dir=data_dir,
                          progress=lambda line: click.echo(line, err=True), reclaim=reclaim)
    _sweep_footer(report, store, fmt, uri)


def _sweep_footer(report, store, fmt, uri) -> None:
    from runner.records import tables as cmp

    for o in report.outcomes:
        if o.status == "FAILED":
            click.echo(f"FAILED: {o.variant.key}: {o.error}", err=True)
    order = {v.key: i for i, v in enumerate(report.all_variants)}
    runs = sorted(cmp.sweep_children(report.parent_id, uri),
                  key=lambda r: order.get(r.tags.get("xrun.variant"), len(order)))
    _print_table(cmp.table(runs, uri=uri), fmt, cmp)
    failed = [o for o in report.outcomes if o.status == "FAILED"]
    elsewhere = [o for o in report.outcomes if o.status == "SKIPPED"]
    finished = len(report.outcomes) - len(failed) - len(elsewhere)
    click.echo(f"sweep parent run {report.parent_id}: {finished} finished, {len(failed)} failed, "
               f"{len(report.skipped)} skipped (finished earlier), {len(elsewhere)} run by other processes  "
               f"(compare: xrun compare {report.parent_id[:8]}; see it: {store.ui_command(uri)})", err=True)
    if failed:
        raise SystemExit(1)


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


@cli.command(name="list")
@click.argument("folder", default="experiments", type=click.Path(file_okay=False))
@tracking_uri_option
@format_option(what="the table")
def list_experiments(folder, tracking_uri, fmt):
    """Every experiment in FOLDER: description, dataset, parameter count, and its finished runs and best test
    accuracy so far (runs named as the experiment, in its MLflow experiment; sweep variants are not counted)."""
    from runner import catalogue
    from runner.records import tables as cmp

    import_tensorflow()
    _print_table(catalogue.entries(folder, tracking_uri), fmt, cmp)


@cli.group()
def data():
    """Datasets: fetch them ahead of time (for machines that will train without network)."""


@data.command()
@click.argument("dataset")
@click.option("--data-dir", envvar="XRUN_DATA_DIR", metavar="DIR", help="Where to put it (default: Keras's cache).")
def pull(dataset, data_dir):
    """Make sure a verified copy of DATASET (mnist, fashion_mnist) is on this machine."""
    from runner.training.data import pull as pull_dataset

    click.echo(pull_dataset(dataset, data_dir))


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
        terminated = str(interrupt) == "SIGTERM"
        click.echo("interrupted by SIGTERM" if terminated else "interrupted", err=True)
        return 143 if terminated else 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
