"""Time to accuracy: how long `xrun experiments/fast_mnist.yaml` takes, from the command to the result, to reach
99.5 % MNIST test accuracy, over several seeds.

    python bench/time_to_accuracy.py                 # seeds 0 1 2 -> bench/results.tta.json
    python bench/time_to_accuracy.py --seeds 3 4 --target 0.995 --budget 60 --experiment experiments/fast_mnist.yaml
    python bench/time_to_accuracy.py --smoke         # 512 images, 1 epoch: exercises the code, the numbers mean nothing
    python bench/time_to_accuracy.py --tracking-uri sqlite:///tta.db   # keep the runs (default: a throw-away store)

Each seed is one `xrun run FILE --set training.seed=S` in its own process, the seeds one after another so each has
the cores to itself, timed from just before the process starts until it exits: Python and TensorFlow start-up,
loading the data, every epoch, the test score and the MLflow logging (the trained model included) all count. The
runs go to one SQLite store made before the first one, as a user's store exists after their first run.

The experiment scores the test set after every epoch (`data.validation: test`) and each epoch's metrics reach MLflow
with a wall-clock timestamp as the epoch ends, so the time to the target is the timestamp of the first
`val_accuracy` >= target minus the start. The experiment's `training.stop_at` ends the run at that epoch (the test
score, logging and the saved model still follow): a seed meets the bar when its final test accuracy is >= the target
and the whole command took <= the budget. Each run's CPU seconds (all its threads) are recorded beside its wall
time: on a machine shared with other users the wall time measures the load as much as the run, the CPU time much
less. The exit status is 0 whatever the numbers, 1 if a run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from harness import load_average, machine_info, median, spread, xrun_command  # noqa: E402  (bench/harness.py)

SMOKE = ["data.limit=512", "training.epochs=1"]


def prepared_store(folder: Path, experiment: Path, uri: str | None = None) -> str:
    """`uri`, or a SQLite store in `folder`, with the experiment already in it, as after a user's first run."""
    from runner.language.spec import load_spec
    from runner.records import store

    name = load_spec(experiment).document["tracking"]["experiment"]
    if uri is None:
        uri = f"sqlite:///{folder}/mlflow.db"
        store.creating_client(uri).create_experiment(name, artifact_location=(folder / "artifacts").as_uri())
    elif store.creating_client(uri).get_experiment_by_name(name) is None:
        store.creating_client(uri).create_experiment(name)
    return uri


def run_seed(experiment: Path, seed: int, uri: str, overrides: list[str], data: str | None) -> dict:
    """One timed `xrun run`, and what its MLflow run says of each epoch."""
    sets = [arg for value in [f"training.seed={seed}", *overrides] for arg in ("--set", value)]
    command = [*xrun_command(), "run", str(experiment), "-q", "--tracking-uri", uri, *sets,
               *(["--data-dir", data] if data else [])]
    load, cpu = load_average(), _children_cpu_seconds()
    started = time.time()
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                          capture_output=True, text=True)
    wall, cpu = time.time() - started, _children_cpu_seconds() - cpu
    if done.returncode != 0:
        raise RuntimeError(f"seed {seed}: xrun exited {done.returncode}: {done.stderr[-2000:]}")
    run_id = re.search(r"MLflow run ([0-9a-f]{32})", done.stdout).group(1)
    return {"seed": seed, "run_id": run_id, "wall_seconds": wall, "cpu_seconds": cpu, "load_average_before": load,
            "load_average_after": load_average(), **_epochs(uri, run_id, started)}


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # of the ended child processes: the runs, one at a time
    return usage.ru_utime + usage.ru_stime


def _epochs(uri: str, run_id: str, started: float) -> dict:
    from runner.records import store

    client = store.client(uri)
    run = client.get_run(run_id)
    history = {key: sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
               for key in ("val_accuracy", "epoch_seconds")}
    return {"test_accuracy": run.data.metrics["test_accuracy"], "epochs": int(run.data.metrics["epochs_run"]),
            "precision": run.data.tags.get("precision"), "device": run.data.tags.get("device"),
            "val_accuracy": [m.value for m in history["val_accuracy"]],
            "epoch_seconds": [m.value for m in history["epoch_seconds"]],
            # seconds from the command's start to the end of each epoch (its metrics' timestamp)
            "seconds_at_epoch_end": [m.timestamp / 1000 - started for m in history["val_accuracy"]]}


def summary(runs: list[dict], target: float, budget: float) -> dict:
    for run in runs:
        reached = [i for i, value in enumerate(run["val_accuracy"]) if value >= target]
        run["target_epoch"] = reached[0] + 1 if reached else None
        run["time_to_target_seconds"] = run["seconds_at_epoch_end"][reached[0]] if reached else None
        run["met"] = run["test_accuracy"] >= target and run["wall_seconds"] <= budget
    to_target = [r["time_to_target_seconds"] for r in runs if r["time_to_target_seconds"] is not None]
    walls, finals = [r["wall_seconds"] for r in runs], [r["test_accuracy"] for r in runs]
    return {"target": target, "budget_seconds": budget, "all_met": all(r["met"] for r in runs),
            "reached_target": len(to_target), "seeds": len(runs),
            "median_time_to_target_seconds": median(to_target) if to_target else None,
            "time_to_target_spread": spread(to_target, "{:.1f}"),
            "median_wall_seconds": median(walls), "wall_spread": spread(walls, "{:.1f}"),
            "median_cpu_seconds": median([r["cpu_seconds"] for r in runs]),
            "final_accuracy_spread": spread(finals, "{:.4f}")}


def table(runs: list[dict], target: float) -> str:
    lines = [f"| seed | time to {100 * target:g} % | at epoch | final test accuracy | command to result | CPU time | "
             "load average |", "|---:|---:|---:|---:|---:|---:|---|"]
    for r in runs:
        reached = (f"{r['time_to_target_seconds']:.1f} s", str(r["target_epoch"])) if r["target_epoch"] else (
            "not reached", "")
        lines.append(f"| {r['seed']} | {reached[0]} | {reached[1]} | {100 * r['test_accuracy']:.2f} % "
                     f"| {r['wall_seconds']:.1f} s ({r['epochs']} epochs) | {r['cpu_seconds']:.0f} s "
                     f"| {r['load_average_before'][0]:.1f} -> {r['load_average_after'][0]:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", type=Path, default=ROOT / "experiments" / "fast_mnist.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--target", type=float, default=0.995)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds from the command to the result")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--smoke", action="store_true", help=f"tiny runs ({' '.join(SMOKE)})")
    parser.add_argument("--data-dir", default=os.environ.get("XRUN_DATA_DIR"))
    parser.add_argument("--tracking-uri", help="keep the runs in this MLflow store (default: a throw-away SQLite one)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    out = args.out or ROOT / "bench" / ("results.tta.smoke.json" if args.smoke else "results.tta.json")
    overrides = [*(SMOKE if args.smoke else []), *args.overrides]
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="xrun-tta-") as tmp:
        uri = prepared_store(Path(tmp), args.experiment, args.tracking_uri)
        runs = [run_seed(args.experiment, seed, uri, overrides, args.data_dir) for seed in args.seeds]
    result = {"experiment": str(args.experiment.resolve().relative_to(ROOT)) if args.experiment.resolve()
              .is_relative_to(ROOT) else str(args.experiment), "overrides": overrides, "smoke": args.smoke,
              "machine": machine_info(), "load_average": {"start": load_before, "end": load_average()},
              "summary": summary(runs, args.target, args.budget), "runs": runs}
    machine = result["machine"]
    print(f"{machine['cpu']}, {machine['cores']} cores; tensorflow {machine['tensorflow']}, xrun {machine['xrun']}; "
          f"{runs[0]['precision']}; load average {load_before} -> {result['load_average']['end']}\n")
    print(table(runs, args.target))
    print(f"\n{json.dumps(result['summary'])}")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
