"""Memory and step time predicted before training (`xrun summary`) against what training measures, per model.

    python bench/predict_cost.py [--models model1 ...] [--batch 128] [--steps 12] [--out bench/results.predict.json]

Each model is measured in two fresh processes, each building it, compiling it with its YAML's optimizer and loss
and training it with fit() through xrun's pipeline on random MNIST-shaped images:
- memory: TensorFlow's CPU allocator made to keep statistics (TF_CPU_ALLOCATOR_USE_BFC=true, set before it loads;
  on a GPU get_memory_info always has them), its peak bytes in use over 3 steps less the bytes in use before the
  model was built: the tensors training holds, which is what the prediction counts. The process's peak resident
  set (VmHWM) rise over the same steps is recorded beside it: it adds TensorFlow's runtime, tracing, oneDNN's
  buffers and the allocator's slack, none of which the prediction counts.
- time: the default allocator, as a user's run has it; the median step of a second epoch of `--steps` steps (the
  first traces), predicted from the machine's figures (runner/training/peak.py) measured in the same process right
  after it (on a shared machine the load moves by the minute), and from the cached figures `xrun summary` uses.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MODELS = [f"model{i}" for i in range(1, 11)]
MEMORY_STEPS = 3


def _rss(field: str = "VmRSS") -> int:
    """The process's resident bytes (VmRSS), or their peak since `_reset_rss_peak` (VmHWM)."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M).group(1)) * 1024


def _reset_rss_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM starts again from the current RSS


def _set_up(name: str, batch: int):
    """The experiment with its decisions made, and an endless stream of random MNIST-shaped batches."""
    import numpy as np

    from runner.language.config import resolve
    from runner.language.spec import load_spec
    from runner.training import pipeline
    from runner.training.settings import settings_for

    spec = load_spec(ROOT / "experiments" / f"{name}.yaml", [f"training.batch_size={batch}"], data_must_exist=False)
    rng = np.random.default_rng(0)
    data = pipeline.train_dataset(rng.integers(0, 255, (batch * 4, 28, 28), dtype="uint8"),
                                  rng.integers(0, 10, batch * 4), batch_size=batch, shuffle=False, seed=0,
                                  augmentation=None, one_hot_classes=10)
    return spec, resolve(spec, settings_for(spec.training)), data


def _train(spec, config, data, epochs: int, steps: int, callbacks=()):
    from runner.model.compiler import build_model
    from runner.training import build

    model = build_model(spec)
    optimizer = build.optimizer(config.optimizer, steps, epochs)
    model.compile(optimizer=optimizer, loss=build.loss(config.loss), metrics=["accuracy"])
    model.fit(data, epochs=epochs, steps_per_epoch=steps, verbose=0, callbacks=list(callbacks), shuffle=False)
    return model, optimizer


def measure_memory(name: str, batch: int) -> dict:
    """Peak tensor bytes (TensorFlow's allocator) and peak RSS rise of MEMORY_STEPS training steps."""
    from runner.model import cost
    from runner.training.settings import applied, import_tensorflow

    tf = import_tensorflow()
    device = "GPU:0" if tf.config.list_logical_devices("GPU") else "CPU:0"
    spec, config, data = _set_up(name, batch)
    tf.constant(1.0).numpy()  # the runtime's thread pools exist before the baseline
    tf.config.experimental.reset_memory_stats(device)
    before, rss_before = tf.config.experimental.get_memory_info(device)["current"], _rss()
    _reset_rss_peak()
    with applied(config.settings):
        model, optimizer = _train(spec, config, data, 1, MEMORY_STEPS)
        predicted = cost.training_memory(model, batch, cost.optimizer_slots(optimizer))
    measured = tf.config.experimental.get_memory_info(device)["peak"] - before
    return {"optimizer": config.optimizer.type, "slots": cost.optimizer_slots(optimizer),
            "predicted_memory": predicted.as_dict(), "measured_memory": measured,
            "memory_ratio": predicted.total / measured, "rss_rise": _rss("VmHWM") - rss_before,
            "memory_device": device}


def measure_time(name: str, batch: int, steps: int) -> dict:
    """Predicted and measured (median of the second epoch) seconds per training step."""
    from runner.model import cost
    from runner.training import peak
    from runner.training.settings import applied, import_tensorflow

    import_tensorflow()
    cached = peak.machine()
    spec, config, data = _set_up(name, batch)
    clock = peak.StepClock()
    with applied(config.settings):
        model, optimizer = _train(spec, config, data, 2, steps, [clock])
        beside = peak.measure_machine()  # this moment's figures: a shared machine's load changes by the minute
        slots = cost.optimizer_slots(optimizer)
        predicted, from_cache = (cost.step_seconds(model, batch, slots, m) for m in (beside, cached))
    step = statistics.median(clock.seconds)
    return {"predicted_step": predicted, "measured_step": step, "step_ratio": predicted["total"] / step,
            "machine_beside": beside, "predicted_step_from_cache": from_cache,
            "step_ratio_from_cache": from_cache["total"] / step,
            "training_flops_per_image": cost.training_flops_per_image(model)}


def measure(name: str, batch: int, steps: int) -> dict:
    """Both, each in a fresh process."""
    memory = _child("memory", name, batch, steps, {"TF_CPU_ALLOCATOR_USE_BFC": "true"})
    return {"model": name, "batch": batch, "steps": steps, **memory, **_child("time", name, batch, steps, {})}


def _child(kind: str, name: str, batch: int, steps: int, env: dict) -> dict:
    command = [sys.executable, __file__, f"--{kind}", name, "--batch", str(batch), "--steps", str(steps)]
    done = subprocess.run(command, capture_output=True, text=True, check=True, env={**os.environ, **env})
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lines = ["| Model | Optimizer (slots) | Memory predicted | Measured (allocator peak) | Ratio | RSS rise | "
             "Step predicted | Measured (median) | Ratio | Ratio, cached figures |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['optimizer']} ({r['slots']}) | {_mib(r['predicted_memory']['total'])} | "
                     f"{_mib(r['measured_memory'])} | {r['memory_ratio']:.2f} | {_mib(r['rss_rise'])} | "
                     f"{r['predicted_step']['total'] * 1e3:.1f} ms | {r['measured_step'] * 1e3:.1f} ms | "
                     f"{r['step_ratio']:.2f} | {r['step_ratio_from_cache']:.2f} |")
    return "\n".join(lines)


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--memory", metavar="MODEL", help="(internal) measure one model's memory in this process")
    parser.add_argument("--time", metavar="MODEL", help="(internal) time one model's steps in this process")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.predict.json")
    args = parser.parse_args(argv)
    if args.memory or args.time:
        print(json.dumps(measure_memory(args.memory, args.batch) if args.memory else
                         measure_time(args.time, args.batch, args.steps)))
        return 0
    from runner.training import peak

    machine = peak.machine()  # measured here, once, so no child's memory includes it
    rows = [measure(name, args.batch, args.steps) for name in args.models]
    load = os.getloadavg()
    args.out.write_text(json.dumps({"machine": machine, "load_average": load, "rows": rows}, indent=1) + "\n")
    print(table(rows))
    print(f"load average {load[0]:.2f} (1 min) on {len(os.sched_getaffinity(0))} cores; {machine['cpu']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
