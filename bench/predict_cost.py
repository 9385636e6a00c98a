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
  first traces), predicted from the model's layers, update and loss measured in the same process right after it
  (runner/training/step_time.py, into an empty cache: on a shared machine the load moves by the minute), and from
  the cached ones `xrun summary` uses.
Every process imports TensorFlow as xrun does (runner.training.settings.import_tensorflow: oneDNN's kernels on
x86-64) and records whether oneDNN is on.

    python bench/predict_cost.py --update   # the optimizers' update temporaries (cost.UPDATE_TEMPORARIES)
    python bench/predict_cost.py --conv     # a convolution's gradient buffers under the kernels in use
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
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
    from runner.training import forecast
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
        predicted = forecast.memory(model, batch, optimizer)
    measured = tf.config.experimental.get_memory_info(device)["peak"] - before
    return {"optimizer": config.optimizer.type, "slots": cost.optimizer_slots(optimizer), "kernels": forecast.kernels(),
            "predicted_memory": predicted.as_dict(), "measured_memory": measured,
            "memory_ratio": predicted.total / measured, "rss_rise": _rss("VmHWM") - rss_before,
            "memory_device": device}


def measure_time(name: str, batch: int, steps: int) -> dict:
    """Predicted and measured (median of the second epoch) seconds per training step."""
    from runner.model import cost
    from runner.training import build, peak, step_time
    from runner.training.settings import applied, import_tensorflow, onednn_enabled

    import_tensorflow()
    spec, config, data = _set_up(name, batch)
    clock = peak.StepClock()
    with applied(config.settings):
        model, optimizer = _train(spec, config, data, 2, steps, [clock])
        loss = build.loss(config.loss)
        with tempfile.TemporaryDirectory() as empty:  # measured now: a shared machine's load moves by the minute
            os.environ["XRUN_CACHE_DIR"], cache = empty, os.environ.get("XRUN_CACHE_DIR")
            parts = step_time.part_seconds(model, batch, optimizer, loss)
            predicted = step_time.step_seconds(model, batch, optimizer, loss)
            _restore("XRUN_CACHE_DIR", cache)
        from_cache = step_time.step_seconds(model, batch, optimizer, loss)
    step = statistics.median(clock.seconds)
    return {"predicted_step": predicted, "measured_step": step, "step_ratio": predicted["total"] / step,
            "part_seconds": parts, "predicted_step_from_cache": from_cache,
            "step_ratio_from_cache": from_cache["total"] / step, "onednn": onednn_enabled(),
            "load_average": os.getloadavg()[0], "training_flops_per_image": cost.training_flops_per_image(model)}


def _restore(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def measure_update() -> dict:
    """Temporaries of a weight's size each optimizer's apply() holds at its peak (TensorFlow's allocator, on a
    16 MiB variable; slots built before): cost.UPDATE_TEMPORARIES."""
    import keras

    from runner.model import cost
    from runner.training.settings import import_tensorflow

    tf = import_tensorflow()
    n, found = 4 * 2**20, {}
    for name, make in [("Adadelta", lambda: keras.optimizers.Adadelta(1.0, rho=0.95, epsilon=1e-7)),
                       ("Adam", keras.optimizers.Adam), ("RMSprop", keras.optimizers.RMSprop),
                       ("SGD", keras.optimizers.SGD), ("SGD", lambda: keras.optimizers.SGD(momentum=0.9))]:
        optimizer, variable = make(), keras.Variable(tf.zeros((n,)), name="xrun_probe")
        gradient = tf.random.stateless_normal((n,), seed=(1, 2))
        optimizer.build([variable])
        apply = tf.function(lambda: optimizer.apply([gradient], [variable]))  # noqa: B023  (called at once)
        apply()
        found[f"{name}, {cost.optimizer_slots(optimizer)} slot(s)"] = _peak(tf, apply) / (4 * n)
    return found


def measure_conv(batch: int) -> dict:
    """A convolution's two gradients (kernel and input) at `batch`: TensorFlow's allocator peak less their results,
    under the kernels in use (oneDNN's on x86-64)."""
    from runner.training.settings import import_tensorflow, onednn_enabled

    tf = import_tensorflow()
    found = {"onednn": onednn_enabled()}
    for h, cin, cout, k in [(12, 32, 64, 5), (28, 32, 64, 3), (14, 32, 128, 5), (7, 128, 256, 3), (5, 256, 512, 5),
                            (7, 256, 512, 7)]:
        x = tf.random.stateless_normal((batch, h, h, cin), seed=(1, 2))
        kernel = tf.Variable(tf.random.stateless_normal((k, k, cin, cout), seed=(3, 4)))
        upstream = tf.random.stateless_normal((batch, h - k + 1, h - k + 1, cout), seed=(5, 6))
        step = tf.function(lambda x, up, kernel=kernel: _conv_gradients(tf, x, up, kernel))
        step(x, upstream)
        results = 4 * (batch * h * h * cin + k * k * cin * cout)
        found[f"{h}x{h}x{cin} -> {cout}, {k}x{k}"] = {"beyond_results": _peak(tf, lambda: step(x, upstream))
                                                       - results, "input": 4 * batch * h * h * cin}
    return found


def _conv_gradients(tf, x, upstream, kernel):
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = tf.nn.conv2d(x, kernel, 1, "VALID")
    return tape.gradient(out, [kernel, x], output_gradients=upstream)


def _peak(tf, call) -> int:
    """TensorFlow's allocator peak of `call` above what was in use before it (TF_CPU_ALLOCATOR_USE_BFC=true)."""
    tf.config.experimental.reset_memory_stats("CPU:0")
    before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    call()
    return tf.config.experimental.get_memory_info("CPU:0")["peak"] - before


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
             "Step predicted | Measured (median) | Ratio | Ratio, cached layer times | Load (1 min) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['optimizer']} ({r['slots']}) | {_mib(r['predicted_memory']['total'])} | "
                     f"{_mib(r['measured_memory'])} | {r['memory_ratio']:.2f} | {_mib(r['rss_rise'])} | "
                     f"{r['predicted_step']['total'] * 1e3:.1f} ms | {r['measured_step'] * 1e3:.1f} ms | "
                     f"{r['step_ratio']:.2f} | {r['step_ratio_from_cache']:.2f} | {r['load_average']:.1f} |")
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
    parser.add_argument("--update", action="store_true", help="the optimizers' update temporaries, here")
    parser.add_argument("--conv", action="store_true", help="a convolution's gradient buffers, here")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.predict.json")
    args = parser.parse_args(argv)
    if args.update or args.conv:  # the allocator keeps statistics only when told before TensorFlow loads
        os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = "true"
        from runner.training.settings import import_tensorflow

        import_tensorflow()
        print(json.dumps(measure_update() if args.update else measure_conv(args.batch), indent=1))
        return 0
    if args.memory or args.time:
        from runner.training.settings import import_tensorflow

        import_tensorflow()  # as xrun does (oneDNN on), before anything imports Keras
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
