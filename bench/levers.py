"""Levers a hand-written Keras script does not pull, each against that script's own training step, on this CPU.

    python bench/levers.py                         # model1 and model8 -> bench/results.levers.json
    python bench/levers.py --process-models model1 model8   # process-wide levers (oneDNN) for both
    python bench/levers.py --models model8 --rounds 12 --chunk 8 --process-models   # in-graph levers only

In-graph levers (XLA, steps_per_execution, uint8 input cast in the graph) are compiled side by side in ONE process
from the same model and weights, and their train functions are called in turn, `chunk` steps each, round after
round: a burst of load from the machine's other users hits neighbouring chunks alike, so each lever's figure is
the median over rounds of (the script's chunk time / the lever's neighbouring chunk time), > 1 meaning faster.
Process-wide levers (oneDNN's kernels, with op determinism as xrun runs, thread pools) need a process of their
own: the script's variant then runs in processes that take turns with it, and the ratio pairs neighbouring
processes. Every variant computes the same float32 arithmetic as the script (Adadelta, batch 128, one-hot labels).
Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from harness import load_average, machine_info, median, spread  # noqa: E402  (bench/harness.py)

from runner.training.settings import cpu_has_bfloat16  # noqa: E402

BATCH, EXAMPLES = 128, 128 * 40

# In-graph levers: how the variant is compiled and fed. "script" is the hand-written Keras script's way.
IN_GRAPH = {
    "script": {},
    "xla": {"jit_compile": True},
    "steps_per_execution_8": {"steps_per_execution": 8},
    "uint8_input": {"uint8": True},
}
# Process-wide levers: environment and TensorFlow switches set before the first op.
# TensorFlow turns oneDNN on by itself only on CPUs with AVX512_VNNI, AVX512_BF16 or AMX; "script" is run with
# TF_ENABLE_ONEDNN_OPTS unset, as a user's script is.
ONEDNN = {"TF_ENABLE_ONEDNN_OPTS": "1"}
PROCESS = {
    "script": {},
    "onednn": {"env": ONEDNN},
    "onednn_deterministic": {"env": ONEDNN, "deterministic": True},
    "onednn_threads_intra2_inter1": {"env": ONEDNN, "intra": 2, "inter": 1},
    "op_determinism": {"deterministic": True},
}


def _setup(process: dict):
    os.environ.pop("TF_ENABLE_ONEDNN_OPTS", None)
    os.environ.update(process.get("env", {}))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    if "intra" in process:
        tf.config.threading.set_intra_op_parallelism_threads(process["intra"])
        tf.config.threading.set_inter_op_parallelism_threads(process["inter"])
    if process.get("deterministic"):
        tf.config.experimental.enable_op_determinism()
    return tf


def _variant(tf, model: str, lever: dict, data: dict):
    """(train function, iterator, steps per call) of the model compiled and fed as `lever` says."""
    import keras

    from runner.language.spec import load_spec
    from runner.model.compiler import build_model

    keras.utils.set_random_seed(0)
    net = build_model(load_spec(ROOT / "experiments" / f"{model}.yaml"))
    net.compile(loss="categorical_crossentropy", metrics=["accuracy"],
                optimizer=keras.optimizers.Adadelta(learning_rate=1.0, rho=0.95, epsilon=1e-7),
                jit_compile=lever.get("jit_compile", False), steps_per_execution=lever.get("steps_per_execution", 1))
    if lever.get("uint8"):
        ds = tf.data.Dataset.from_tensor_slices((data["x_uint8"], data["y"])).cache().batch(BATCH)
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32)[..., None] / 255.0, tf.one_hot(tf.cast(y, tf.int32), 10)))
    else:  # what model.fit makes of the script's float arrays
        ds = tf.data.Dataset.from_tensor_slices((data["x_float"], data["y_onehot"])).batch(BATCH)
    net.make_train_function()
    iterator = iter(ds.repeat().prefetch(tf.data.AUTOTUNE))
    for _ in range(2):  # trace and warm up
        net.train_function(iterator)
    return net.train_function, iterator, lever.get("steps_per_execution", 1)


def _chunk_ms(variant, chunk: int) -> tuple[float, float]:
    """(wall, CPU) ms per step over `chunk` steps. CPU time (all of this process's threads) is the steadier figure
    on a machine whose other users take the cores: it counts what the step costs, not how long it waited."""
    train, iterator, per_call = variant
    calls = max(1, chunk // per_call)
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        logs = train(iterator)
    float(logs["loss"])  # wait for the last step's result
    return (1000 * (time.perf_counter() - started) / (calls * per_call),
            1000 * (time.process_time() - cpu) / (calls * per_call))


def child(model: str, levers: list[str], process: str, rounds: int, chunk: int, data_dir: str | None) -> dict:
    """In this process: each lever's step ms per round, the levers called in turn."""
    tf = _setup(PROCESS[process])
    import keras

    from runner.training.data import load_dataset

    mnist = load_dataset("mnist", data_dir)
    x, y = mnist.x_train[:EXAMPLES], mnist.y_train[:EXAMPLES]
    data = {"x_uint8": x, "y": y, "x_float": x.astype("float32")[..., None] / 255.0,
            "y_onehot": keras.utils.to_categorical(y, 10)}
    variants = {name: _variant(tf, model, IN_GRAPH[name], data) for name in levers}
    steps, cpu = {name: [] for name in levers}, {name: [] for name in levers}
    for _ in range(rounds):
        for name, variant in variants.items():
            wall_ms, cpu_ms = _chunk_ms(variant, chunk)
            steps[name].append(wall_ms)
            cpu[name].append(cpu_ms)
    return {"model": model, "process": process, "step_ms": steps, "cpu_ms": cpu}


def run_child(*args) -> dict:
    command = [sys.executable, __file__, "--child", json.dumps(args)]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{args}: exited {done.returncode}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def in_graph_rows(model: str, rounds: int, chunk: int, data_dir: str | None) -> list[dict]:
    done = run_child(model, list(IN_GRAPH), "script", rounds, chunk, data_dir)
    steps, cpu = done["step_ms"], done["cpu_ms"]
    return [_row(model, name, "in one process, chunks in turn", steps["script"], steps[name],
                 cpu["script"], cpu[name]) for name in IN_GRAPH if name != "script"]


def process_rows(model: str, rounds: int, chunk: int, data_dir: str | None) -> list[dict]:
    """Each process lever in its own process beside a script process, in turns; pairs of neighbours."""
    wall, cpu = {name: [] for name in PROCESS}, {name: [] for name in PROCESS}
    for _ in range(rounds):
        for name in PROCESS:
            done = run_child(model, ["script"], name, 4, chunk, data_dir)
            wall[name].append(median(done["step_ms"]["script"]))
            cpu[name].append(median(done["cpu_ms"]["script"]))
    return [_row(model, name, "processes in turn", wall["script"], wall[name], cpu["script"], cpu[name])
            for name in PROCESS if name != "script"]


def _row(model: str, lever: str, how: str, script: list[float], lever_ms: list[float],  # noqa: PLR0913
         script_cpu: list[float], lever_cpu: list[float]) -> dict:
    ratios = [s / v for s, v in zip(script, lever_ms)]
    cpu_ratios = [s / v for s, v in zip(script_cpu, lever_cpu)]
    return {"model": model, "lever": lever, "how": how, "script_step_ms": median(script),
            "lever_step_ms": median(lever_ms), "speedup": median(ratios), "speedup_spread": spread(ratios, "{:.2f}"),
            "cpu_speedup": median(cpu_ratios), "cpu_speedup_spread": spread(cpu_ratios, "{:.2f}"),
            "script_samples_ms": script, "lever_samples_ms": lever_ms,
            "script_cpu_ms": script_cpu, "lever_cpu_ms": lever_cpu}


def table(rows: list[dict]) -> str:
    lines = ["| model | lever | how | script step | lever step | wall speed-up (range) | CPU-time speed-up (range) |",
             "|---|---|---|---:|---:|---|---|"]
    lines += [f"| {r['model']} | {r['lever']} | {r['how']} | {r['script_step_ms']:.1f} ms | {r['lever_step_ms']:.1f} ms "
              f"| **{r['speedup']:.2f}x** ({r['speedup_spread']}) | {r['cpu_speedup']:.2f}x ({r['cpu_speedup_spread']}) |"
              for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        print(json.dumps(child(*json.loads(argv[1]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["model1", "model8"])
    parser.add_argument("--rounds", type=int, default=8, help="in-graph rounds; process levers use a quarter")
    parser.add_argument("--chunk", type=int, default=8, help="training steps per lever per turn")
    parser.add_argument("--process-models", nargs="*", default=["model1"],
                        help="models whose process-wide levers are measured too (slow: a process per sample)")
    parser.add_argument("--data-dir", default=os.environ.get("XRUN_DATA_DIR"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.levers.json")
    args = parser.parse_args(argv)
    load_before, rows = load_average(), []
    for model in args.models:  # written after each model: a long run stopped part-way keeps what it measured
        rows += in_graph_rows(model, args.rounds, args.chunk, args.data_dir)
        if model in args.process_models:
            rows += process_rows(model, max(1, args.rounds // 4), args.chunk, args.data_dir)
        result = {"machine": machine_info(), "cpu_has_bfloat16": cpu_has_bfloat16(),
                  "load_average": {"start": load_before, "end": load_average()}, "rounds": args.rounds,
                  "chunk": args.chunk, "rows": rows}
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(table(rows), file=sys.stderr, flush=True)
    machine = result["machine"]
    print(f"{machine['cpu']}, {machine['cores']} cores, bfloat16 {cpu_has_bfloat16()}; tensorflow "
          f"{machine['tensorflow']}; load average {load_before} -> {result['load_average']['end']}\n")
    print(table(rows))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
