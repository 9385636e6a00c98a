"""The seeds' GPU-sized runs in one go: check the GPU is used (mixed precision, XLA), time model8 against the
plain-Keras script, reproduce seed 004's models 4 and 6-10 and seed 002's method 1, and write a JSON and a table.

    bench/gpu.sh [--smoke] [--out FILE] [--models a,b,...]

Sized to finish in under 8 minutes on one data-centre GPU. `--smoke` runs every step at a tiny size (256 images,
one epoch, the overhead pair at its smallest) so the script is exercised on a CPU, by CI and by a test; a real run
without a GPU stops at the first step and says so.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Seed 004's GPU-sized models (13 epochs each, as the seed trained them) and seed 002's first method.
MODELS = ("model4", "model6", "model7", "model8", "model9", "model10", "seed002_method1")
SMOKE_SETS = ("data.limit=256", "training.epochs=1")
QUIET_SETS = ("tracking.log_images=false",)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    from runner.training.settings import import_tensorflow

    tf = import_tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus and not args.smoke:
        print("bench/gpu.sh: no GPU is visible to TensorFlow (tf.config.list_physical_devices('GPU') is empty); "
              "run it on a CUDA machine, or with --smoke to check the script on a CPU", file=sys.stderr)
        return 1
    uri = args.tracking_uri or f"sqlite:///{Path(tempfile.mkdtemp(prefix='xrun-gpu-')) / 'mlflow.db'}"
    sets = [*QUIET_SETS, *(SMOKE_SETS if args.smoke else ())]
    result = {"smoke": args.smoke, "machine": _machine(tf, gpus), "date": _today(), "tracking_uri": uri,
              "device_check": _device_check(uri, sets, bool(gpus)),
              "overhead": _overhead("model8", args.smoke),
              "reproductions": _reproduce(args.models.split(","), uri, sets)}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    print(f"\nwrote {args.out}")
    checks_passed = result["device_check"]["passed"] is not False and result["overhead"].get("error") is None
    return 0 if checks_passed else 1


def _arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for a CPU (CI and tests)")
    parser.add_argument("--models", default=",".join(MODELS), help="experiments to reproduce (default: all)")
    parser.add_argument("--tracking-uri", help="MLflow store (default: a new SQLite store in a temp folder)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.gpu.json")
    return parser.parse_args(argv)


def _machine(tf, gpus: list) -> dict:
    names = [tf.config.experimental.get_device_details(g).get("device_name", "GPU") for g in gpus]
    return {"gpus": names, "tensorflow": tf.__version__, "python": sys.version.split()[0]}


def _today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _device_check(uri: str, sets: list[str], on_gpu: bool) -> dict:
    """One short model8 run through xrun; its recorded runtime params say what precision and XLA it used."""
    from mlflow import MlflowClient

    from runner.language.spec import load_spec
    from runner.running.request import RunRequest
    from runner.running.run import run_experiment

    spec = load_spec(ROOT / "experiments" / "model8.yaml", [*sets, "training.epochs=1", "data.limit=2048"])
    run = run_experiment(RunRequest(spec, tracking_uri=uri, quiet=True))
    params = MlflowClient(uri).get_run(run.run_id).data.params
    used = {k: params.get(f"runtime.{k}") for k in ("precision", "jit_compile", "steps_per_execution")}
    expected = {"precision": "mixed_float16", "jit_compile": "true"}  # params are JSON text
    passed = all(used[k] == v for k, v in expected.items()) if on_gpu else None
    return {"run_id": run.run_id, "used": used, "expected_on_gpu": expected, "passed": passed}


def _overhead(model: str, smoke: bool) -> dict:
    """bench/run.py's side-by-side overhead pair for `model` (xrun and the seed's Keras script taking turns)."""
    out = Path(tempfile.mkdtemp(prefix="xrun-gpu-overhead-")) / "overhead.json"
    command = [sys.executable, str(ROOT / "bench" / "run.py"), "--only", "overhead", "--model", model,
               "--out", str(out), *(["--smoke"] if smoke else [])]
    done = subprocess.run(command, capture_output=True, text=True)
    if not out.exists():
        return {"error": done.stderr[-2000:]}
    rows = {m["name"]: m for m in json.loads(out.read_text())["measurements"]}
    keep = ("overhead", "overhead_step")
    return {"rows": {k: {f: rows[k][f] for f in ("xrun", "baseline", "ratio", "ratio_label", "spread")}
                     for k in keep if k in rows}, "error": None if done.returncode == 0 else done.stderr[-2000:]}


def _reproduce(models: list[str], uri: str, sets: list[str]) -> list[dict]:
    import importlib.util

    module_spec = importlib.util.spec_from_file_location("reproduce", ROOT / "bench" / "reproduce.py")
    reproduce = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(reproduce)
    out = Path(tempfile.mkdtemp(prefix="xrun-gpu-reproduce-")) / "rows.json"
    set_args = [a for s in sets for a in ("--set", s)]
    for model in models:  # one at a time, so a model that fails leaves the others' rows
        reproduce.main(["--models", model, "--tracking-uri", uri, "--out", str(out), *set_args])
    return json.loads(out.read_text()) if out.exists() else []


def markdown(result: dict) -> str:
    """The README-ready table: the device check, the model8 ratio, and one row per reproduced model."""
    check = result["device_check"]
    lines = [f"GPU: {', '.join(result['machine']['gpus']) or 'none (smoke run on the CPU)'}; TensorFlow "
             f"{result['machine']['tensorflow']}; {result['date']}",
             f"xrun used precision {check['used']['precision']}, jit_compile {check['used']['jit_compile']}, "
             f"steps_per_execution {check['used']['steps_per_execution']}", ""]
    for name, row in (result["overhead"].get("rows") or {}).items():
        lines.append(f"- {name} (model8): {row['ratio_label']} = {row['ratio']:.2f} ({row['spread']})")
    lines += ["", "| model | epochs | seed test acc | xrun test acc | wall time |", "|---|---:|---:|---:|---:|"]
    for r in result["reproductions"]:
        seed = "" if r["seed_test_accuracy"] is None else f"{r['seed_test_accuracy'] * 100:.2f} %"
        lines.append(f"| {r['model']} | {r['epochs']} | {seed} | {r['xrun_test_accuracy'] * 100:.2f} % | "
                     f"{r['wall_seconds']:.0f} s |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
