"""Train seed experiments on the full data with the seed's budget and print the results beside the seed's.

    python bench/reproduce.py --models model1,model2,model3,model5 [--tracking-uri URI] [--set KEY=VALUE ...]
                              [--out FILE]

The seed's reported numbers come from each experiment's `tracking.tags` (seed_test_accuracy, seed_test_loss),
so the YAML is the one place they are written. Results are appended to bench/reproduce.json (or --out FILE).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.language.spec import load_spec  # noqa: E402
from runner.training.settings import import_tensorflow  # noqa: E402

RESULTS = ROOT / "bench" / "reproduce.json"


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    import_tensorflow()
    from runner.running.request import RunRequest
    from runner.running.run import run_experiment

    rows = []
    for name in args.models.split(","):
        spec = load_spec(ROOT / "experiments" / f"{name}.yaml", args.set)
        result = run_experiment(RunRequest(spec, tracking_uri=args.tracking_uri, quiet=not sys.stderr.isatty()))
        rows.append(_row(spec, result))
        _save(rows[-1], args.out)
        print(_markdown(rows), flush=True)
    return 0


def _arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="model1,model2,model3,model5")
    parser.add_argument("--tracking-uri")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON list to append to (default %(default)s)")
    return parser.parse_args(argv)


def _row(spec, result) -> dict:
    tags = spec.document["tracking"].get("tags") or {}
    return {"model": spec.name, "epochs": result.epochs_run,
            "seed_test_accuracy": tags.get("seed_test_accuracy"), "xrun_test_accuracy": result.test_accuracy,
            "seed_test_loss": tags.get("seed_test_loss"), "xrun_test_loss": result.test_loss,
            "wall_seconds": round(result.wall_seconds, 1), "run_id": result.run_id, "machine": _machine(),
            "overrides": list(spec.overrides), "date": datetime.date.today().isoformat()}


def _machine() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine()) if Path("/proc/cpuinfo").exists() else ""
    device = f"{len(gpus)} GPU" if gpus else f"{os.cpu_count()} CPU cores ({cpu})"
    return f"{device}, TensorFlow {tf.__version__}"


def _save(row: dict, out: Path) -> None:
    previous = json.loads(out.read_text()) if out.exists() else []
    out.write_text(json.dumps(previous + [row], indent=2) + "\n")


def _points(a, b) -> str:
    return "" if a is None or b is None else f"{(b - a) * 100:+.2f}"


def _markdown(rows: list[dict]) -> str:
    lines = ["| model | epochs | seed test acc | xrun test acc | difference (points) | seed test loss | xrun test loss "
             "| wall time |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        seed = "" if r["seed_test_accuracy"] is None else f"{r['seed_test_accuracy'] * 100:.2f} %"
        seed_loss = "" if r["seed_test_loss"] is None else f"{r['seed_test_loss']:.4f}"
        lines.append(f"| {r['model']} | {r['epochs']} | {seed} | {r['xrun_test_accuracy'] * 100:.2f} % | "
                     f"{_points(r['seed_test_accuracy'], r['xrun_test_accuracy'])} | {seed_loss} | "
                     f"{r['xrun_test_loss']:.4f} | {r['wall_seconds'] / 60:.1f} min |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
