"""How much of this machine's arithmetic a training run uses, and where the rest of each step goes.

    python bench/utilisation.py [--model model1] [--examples 4096] [--epochs 3] [--out FILE]

In one process, on the same cores: the peaks (a large matmul; a forward-and-backward pass of the model's largest
convolution; in float32 and in the model's compute dtype, bfloat16 under mixed precision) measured before and
after; an xrun training run through `run_experiment`, whose median training step (epoch 1, tracing, left out) is
the achieved rate; then, on one fixed batch of the trained model, the forward pass, forward + backward, and the
whole train step with the optimizer update. The differences say where a step's time goes: input pipeline and
fit's per-step loop = fit's step - train step; optimizer update = train step - forward/backward. Validation and
epoch-end work (logging, the checkpoint) happen once per epoch and are not in the step (`epoch_images_per_second`
has them).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import flops  # noqa: E402  (bench/flops.py, beside this file)

from runner.training.peak import StepClock  # noqa: E402


def _median_seconds(call, repeats: int = 20) -> float:
    call()  # trace and warm up
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _train(model_name: str, examples: int, epochs: int, data: str | None):
    from rich.console import Console

    from runner.language.spec import load_spec
    from runner.running.request import RunRequest
    from runner.running.run import run_experiment

    spec = load_spec(ROOT / "experiments" / f"{model_name}.yaml",
                     [f"data.limit={examples}", f"training.epochs={epochs}", "tracking.log_model=false",
                      "tracking.log_images=false"])
    clock = StepClock()
    with tempfile.TemporaryDirectory(prefix="xrun-util-") as tmp:
        result = run_experiment(RunRequest(spec, tracking_uri=f"sqlite:///{tmp}/mlflow.db", data_dir=data, quiet=True,
                                console=Console(file=io.StringIO()), extra_callbacks=[clock]))
    return spec, result, clock.seconds


def _step_parts(model, batch: int) -> dict:
    """Seconds per step on one fixed batch: forward, forward + backward, and the compiled train step."""
    import numpy as np
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(0).random((batch, *model.input_shape[1:]), dtype="float32"))
    classes = model.output_shape[-1]
    y = tf.one_hot(tf.constant(np.arange(batch) % classes), classes)

    @tf.function
    def forward():
        return model(x, training=True)

    @tf.function
    def forward_backward():
        with tf.GradientTape() as tape:
            loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=True))
        return tape.gradient(loss, model.trainable_variables)

    return {"forward": _median_seconds(lambda: forward().numpy()),
            "forward_backward": _median_seconds(lambda: [g.numpy() for g in forward_backward() if g is not None]),
            "train_step": _median_seconds(lambda: model.train_on_batch(x, y))}


def measure(model_name: str = "model1", examples: int = 4096, epochs: int = 3, data: str | None = None) -> dict:
    from runner.training.settings import import_tensorflow

    import_tensorflow()
    spec, result, steps = _train(model_name, examples, epochs, data)
    model, batch = result.model, spec.document["training"]["batch_size"]
    # The median training step as fit() ran it (input pipeline and per-step Python included); validation and the
    # epoch-end work (logging, the checkpoint) are per epoch, not per step, and are left out.
    fit_step = statistics.median(steps)
    images_per_second = batch / fit_step
    epoch_images_per_second = statistics.median(result.history["images_per_second"][1:] or
                                                result.history["images_per_second"])
    before = flops.peaks(model)
    parts = _step_parts(model, batch)
    after = flops.peaks(model)
    peaks = {k: statistics.median([before[k], after[k]]) for k in before}
    per_image = flops.training_flops_per_image(model)
    achieved = per_image * images_per_second
    dtype = flops.compute_dtype(model)
    # The limit that counts is the model's own largest conv in the dtype it computes in.
    limit_name = next(k for k in (f"conv_{dtype}", f"matmul_{dtype}", "conv", "matmul") if k in peaks)
    at_limit = batch * per_image / peaks[limit_name]
    return {"model": model_name, "examples": examples, "epochs": epochs, "batch": batch, "compute_dtype": dtype,
            "images_per_second": images_per_second, "epoch_images_per_second": epoch_images_per_second,
            "training_flops_per_image": per_image,
            "achieved_flops": achieved, "peaks_flops": peaks, "peaks_before": before, "peaks_after": after,
            "share_of_peak": {k: achieved / v for k, v in peaks.items()},
            "limit": limit_name, "share_of_limit": achieved / peaks[limit_name],
            "step_seconds": {"fit": fit_step, **parts},
            "where_the_step_goes": {
                "arithmetic_at_the_limit": at_limit,
                "forward_backward_beyond_that": parts["forward_backward"] - at_limit,
                "optimizer_update": parts["train_step"] - parts["forward_backward"],
                "input_pipeline_and_fit_loop": fit_step - parts["train_step"]}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="model1")
    parser.add_argument("--examples", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data-dir")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    result = measure(args.model, args.examples, args.epochs, args.data_dir)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
