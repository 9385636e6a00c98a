"""Is xrun's choice of precision ever slower? The median training step of every seed-004 model under `precision:
auto` (what xrun picks on this machine) against float32 (a plain Keras script's arithmetic), side by side.

    python bench/steps.py                          # model1..model10, 2 rounds -> bench/results.steps.json
    python bench/steps.py --models model1 model8 --rounds 3 --out FILE

Each (model, precision) is its own process (the precision policy is process-wide), and the two precisions of a
model alternate, auto then float32, round after round, so load from elsewhere hits both alike. A process builds the
model from its YAML through xrun's compiler and optimizer, then times `train_on_batch` on one fixed batch of the
YAML's batch size (random images and labels: the arithmetic does not depend on the values) for about
`--seconds` after two warm-up steps (at least 3 steps). The ratio is float32's median step over auto's (> 1: auto is
faster), one per round; the row gives their median and range. Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from harness import load_average, machine_info, median, spread  # noqa: E402  (bench/harness.py)

SEED_004 = [f"model{i}" for i in range(1, 11)]


def child(model: str, precision: str, seconds: float) -> dict:
    """In this process: the model's median train step under `precision` ('auto': as xrun decides)."""
    import numpy as np

    from runner.language.spec import load_spec
    from runner.model.compiler import build_model
    from runner.training import build
    from runner.training.settings import applied, settings_for

    spec = load_spec(ROOT / "experiments" / f"{model}.yaml", [f"training.precision={precision}"])
    chosen = settings_for(spec.training)
    document, batch = spec.document, spec.document["training"]["batch_size"]
    with applied(chosen):
        net = build_model(spec)
        net.compile(optimizer=build.optimizer(document["optimizer"], 100, document["training"]["epochs"]),
                    loss=build.loss(document["loss"]), metrics=list(document["metrics"]))
        rng = np.random.default_rng(0)
        x = rng.random((batch, *net.input_shape[1:]), dtype="float32")
        classes = net.output_shape[-1]
        labels = rng.integers(0, classes, batch)
        y = np.eye(classes, dtype="float32")[labels] if build.wants_one_hot(document["loss"]) else labels
        for _ in range(2):
            net.train_on_batch(x, y)
        steps, deadline = [], time.perf_counter() + seconds
        while len(steps) < 3 or time.perf_counter() < deadline:
            started = time.perf_counter()
            net.train_on_batch(x, y)
            steps.append(time.perf_counter() - started)
    return {"model": model, "asked": precision, "precision": chosen.precision, "batch": batch,
            "step_ms": 1000 * statistics.median(steps), "steps_ms": [1000 * s for s in steps]}


def in_process(model: str, precision: str, seconds: float) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", model, precision, str(seconds)], cwd=ROOT,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{model} {precision}: exited {done.returncode}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(models: list[str], rounds: int, seconds: float) -> list[dict]:
    rows = []
    for model in models:
        samples = {"auto": [], "float32": []}
        for _ in range(rounds):
            for precision in samples:
                samples[precision].append(in_process(model, precision, seconds))
                print(f"[steps] {model} {precision}: {samples[precision][-1]['step_ms']:.1f} ms", file=sys.stderr)
        ratios = [f["step_ms"] / a["step_ms"] for a, f in zip(samples["auto"], samples["float32"])]
        rows.append({"model": model, "auto_precision": samples["auto"][0]["precision"],
                     "auto_step_ms": median([s["step_ms"] for s in samples["auto"]]),
                     "float32_step_ms": median([s["step_ms"] for s in samples["float32"]]),
                     "ratio": median(ratios), "ratio_spread": spread(ratios, "{:.2f}"), "ratios": ratios,
                     "samples": samples})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | auto picks | step, auto | step, float32 | float32 / auto (range) |",
             "|---|---|---:|---:|---|"]
    lines += [f"| {r['model']} | {r['auto_precision']} | {r['auto_step_ms']:.1f} ms | {r['float32_step_ms']:.1f} ms "
              f"| **{r['ratio']:.2f}x** ({r['ratio_spread']}) |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        print(json.dumps(child(argv[1], argv[2], float(argv[3]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=SEED_004)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0, help="timing per process, after the warm-up")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.steps.json")
    args = parser.parse_args(argv)
    load_before = load_average()
    rows = measure(args.models, args.rounds, args.seconds)
    result = {"machine": machine_info(), "load_average": {"start": load_before, "end": load_average()},
              "rounds": args.rounds, "seconds": args.seconds, "rows": rows}
    machine = result["machine"]
    print(f"{machine['cpu']}, {machine['cores']} cores; tensorflow {machine['tensorflow']}, keras "
          f"{machine['keras']}; load average {load_before} -> {result['load_average']['end']}\n")
    print(table(rows))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
