"""How fast xrun's everyday commands answer, as a ratio to `python -c "import tensorflow"` on the same machine.

    .venv/bin/python bench/latency.py             # 5 interleaved rounds -> bench/results.latency.json
    .venv/bin/python bench/latency.py --reps 1 --out /tmp/latency.json

The commands read a store of recorded runs (written here through the MLflow client as xrun writes them: params
flattened, metrics per epoch; nothing is trained) and the experiments/ folder:

  list           `xrun list experiments`                       target < 0.2 of `import tensorflow`
  compare        `xrun compare --latest 20`                    target < 0.2
  bad_id         `xrun compare nonsense` (refused, exit 2)     target < 0.1
  resume_bad_id  `xrun FILE --resume nonsense` (exit 2)        target < 0.1
  sweep_dry_run  `xrun sweep FILE --dry-run` (a 2-variant grid) reported only

Each round runs every command once, the baseline included, in turn (A, B, C, A, B, C, ...), so load from other
processes hits all sides alike; the medians are compared. CPU seconds (user + system of the child) are recorded
beside the wall time: on a loaded machine they move less. Timings are reported, never asserted: the exit status is
0 whatever the numbers, 1 if a command did not answer as expected.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 60  # recorded runs in the store the commands read
TARGETS = {"list": 0.2, "compare": 0.2, "bad_id": 0.1, "resume_bad_id": 0.1, "sweep_dry_run": None}


def xrun() -> list[str]:
    script = Path(sys.executable).with_name("xrun")
    return [str(script)] if script.exists() else [sys.executable, "-m", "runner.cli"]


def commands(experiment: Path, swept: Path) -> dict[str, tuple[list[str], int]]:
    """name -> (command line, the exit status it must end with)."""
    return {"import_tensorflow": ([sys.executable, "-c", "import tensorflow"], 0),
            "list": ([*xrun(), "list", str(ROOT / "experiments")], 0),
            "compare": ([*xrun(), "compare", "--latest", "20"], 0),
            "bad_id": ([*xrun(), "compare", "nonsense"], 2),
            "resume_bad_id": ([*xrun(), str(experiment), "--resume", "nonsense"], 2),
            "sweep_dry_run": ([*xrun(), "sweep", str(swept), "--dry-run"], 0)}


def record_store(folder: Path, runs: int = RUNS) -> str:
    """A SQLite store with `runs` finished runs of experiment `bench` (2 epochs each, a varied learning rate)."""
    import logging

    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # not its narration of creating the tables
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    c = MlflowClient(uri)
    experiment_id = c.create_experiment("bench")
    start = int(time.time() * 1000) - runs * 60_000
    for i in range(runs):
        run_id = c.create_run(experiment_id, start_time=start + i * 60_000, run_name="fast_mnist",
                              tags={"mlflow.note.content": "Recorded by bench/latency.py."}).info.run_id
        metrics = [Metric(k, v + step / 10, start, step) for step in range(2)
                   for k, v in (("loss", 0.5), ("accuracy", 0.9), ("val_loss", 0.6), ("val_accuracy", 0.89))]
        metrics += [Metric(k, v, start, 0) for k, v in (("epochs_run", 2), ("test_accuracy", 0.98 + i / 10_000),
                                                        ("test_loss", 0.05), ("best_val_accuracy", 0.99))]
        params = {"optimizer.learning_rate": str(0.001 * (1 + i % 5)), "training.epochs": "2",
                  "training.batch_size": "64", "model.total_params": "96938", "runtime.overrides": ""}
        c.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()])
        c.set_terminated(run_id, "FINISHED", end_time=start + i * 60_000 + 30_000)
    return uri


def timed(command: list[str], expected: int, env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one run; RuntimeError if it ends with another status."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != expected:
        raise RuntimeError(f"{' '.join(command[-3:])}: exit {done.returncode}, expected {expected}: "
                           f"{done.stderr.decode()[-400:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(reps: int, uri: str) -> dict[str, dict[str, list[float]]]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "TF_CPP_MIN_LOG_LEVEL": "3"}
    todo = commands(ROOT / "experiments" / "fast_mnist.yaml", ROOT / "experiments" / "seed001_cnn5.yaml")
    times = {name: {"wall": [], "cpu": []} for name in todo}
    for _ in range(reps):  # interleaved rounds
        for name, (command, expected) in todo.items():
            wall, cpu = timed(command, expected, env)
            times[name]["wall"].append(round(wall, 3))
            times[name]["cpu"].append(round(cpu, 3))
    return times


def summarise(times: dict) -> dict:
    tf_wall, tf_cpu = (statistics.median(times["import_tensorflow"][k]) for k in ("wall", "cpu"))
    out = {}
    for name, target in TARGETS.items():
        wall, cpu = (statistics.median(times[name][k]) for k in ("wall", "cpu"))
        ratio = wall / tf_wall
        out[name] = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "ratio": round(ratio, 3),
                     "cpu_ratio": round(cpu / tf_cpu, 3), "target": target,
                     "met": None if target is None else ratio < target, "samples": times[name]}
    out["import_tensorflow"] = {"wall_s": round(tf_wall, 3), "cpu_s": round(tf_cpu, 3),
                                "samples": times["import_tensorflow"]}
    return out


def machine() -> dict:
    from importlib import metadata

    return {"cores": os.cpu_count(), "cores_usable": len(os.sched_getaffinity(0)), "platform": platform.platform(),
            "python": platform.python_version(), "xrun": metadata.version("xrun"),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def report(results: dict) -> str:
    lines = [f"{'command':<15} {'wall s':>7} {'cpu s':>6} {'ratio':>6}  target", "-" * 46]
    base = results["import_tensorflow"]
    lines.append(f"{'import tf':<15} {base['wall_s']:>7.2f} {base['cpu_s']:>6.2f} {1:>6.2f}")
    for name, target in TARGETS.items():
        r = results[name]
        verdict = "info" if target is None else f"< {target}: {'met' if r['met'] else 'NOT met'}"
        lines.append(f"{name:<15} {r['wall_s']:>7.2f} {r['cpu_s']:>6.2f} {r['ratio']:>6.3f}  {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.latency.json")
    args = parser.parse_args(argv)
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="xrun-latency-") as folder:
        uri = record_store(Path(folder))
        try:
            times = measure(args.reps, uri)
        except RuntimeError as exc:
            print(f"latency: {exc}", file=sys.stderr)
            return 1
    results = {"reps": args.reps, "recorded_runs": RUNS, "machine": machine(),
               "load_average": {"start": load_start, "end": os.getloadavg()}, "commands": summarise(times)}
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(report(results["commands"]))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
