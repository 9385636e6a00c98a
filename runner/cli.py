"""The `xrun` command line: parse arguments, call the library, turn an XrunError into one message and exit code 2.

TensorFlow is imported only by the commands that build or train a model, so `xrun validate` and `--help` are quick.
"""

from __future__ import annotations

import json
import sys

import click

from .errors import XrunError
from .runtime import import_tensorflow

SET_HELP = "Override a YAML value, e.g. --set training.epochs=3 (repeatable; typed by the schema)."


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
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def validate(files, overrides):
    """Check experiment FILES: YAML syntax, the schema, names, blocks and layer references.

    Shapes are checked by `summary` and `run`, which build the model.
    """
    from .spec import load_spec

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
        raise SystemExit(XrunError.exit_code)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=True))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def summary(file, overrides, fmt):
    """Build the model of FILE and show each layer's name, type, inputs, output shape and parameters."""
    from .spec import load_spec

    spec = load_spec(file, overrides)
    import_tensorflow()
    from . import report
    from .compiler import build_model

    info = report.model_info(build_model(spec), spec.graph)
    if fmt == "json":
        click.echo(json.dumps(info, indent=2))
    else:
        report.print_model_table(info, title=f"{spec.name}  ({file})")


@cli.command()
@click.argument("file", type=click.Path(dir_okay=True))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--tracking-uri", metavar="URI", help="MLflow store or server (default: $MLFLOW_TRACKING_URI, "
              "else sqlite under ./mlruns).")
@click.option("--data-dir", envvar="XRUN_DATA_DIR", metavar="DIR", help="Folder with the dataset files "
              "(also $XRUN_DATA_DIR).")
@click.option("--quiet", "-q", is_flag=True, help="No progress display; just the final summary.")
def run(file, overrides, tracking_uri, data_dir, quiet):
    """Train the experiment in FILE and record it in MLflow (`xrun FILE` is short for `xrun run FILE`)."""
    from .spec import load_spec

    spec = load_spec(file, overrides)
    import_tensorflow()
    from . import tracking
    from .train import run_experiment

    result = run_experiment(spec, tracking_uri=tracking_uri, data_dir=data_dir, quiet=quiet)
    click.echo(_run_summary(spec.name, result, tracking.ui_command(result.tracking_uri)))


def _run_summary(name: str, result, ui: str) -> str:
    best = (f"best epoch {result.best_epoch}" + (f" (val_accuracy {result.best_val_accuracy:.4f})"
                                                if result.best_val_accuracy is not None else "")
            if result.best_epoch else "no epoch completed")
    return (f"{name}: test accuracy {result.test_accuracy:.4f}, test loss {result.test_loss:.4f}; {best}; "
            f"{result.epochs_run} epochs in {result.wall_seconds:.1f}s\n"
            f"MLflow run {result.run_id}  (see it: {ui})")


@cli.group()
def data():
    """Datasets: fetch them ahead of time (for machines that will train without network)."""


@data.command()
@click.argument("dataset")
@click.option("--data-dir", envvar="XRUN_DATA_DIR", metavar="DIR", help="Where to put it (default: Keras's cache).")
def pull(dataset, data_dir):
    """Make sure a verified copy of DATASET (mnist, fashion_mnist) is on this machine."""
    from .data import pull as pull_dataset

    click.echo(pull_dataset(dataset, data_dir))


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the CLI and maps the project's error type (and Ctrl-C) to exit codes."""
    try:
        cli.main(args=argv, prog_name="xrun", standalone_mode=False)
    except XrunError as exc:
        click.echo(exc.format(), err=True)
        return XrunError.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
