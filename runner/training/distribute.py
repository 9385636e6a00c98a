"""Choose TensorFlow's own distribution strategy for a run: one device, several GPUs, or several machines."""

from __future__ import annotations

import json
import os

from runner.errors import XrunError

CPU_DEVICES_ENV = "XRUN_CPU_DEVICES"  # split the CPU into N logical devices (to try mirrored training without GPUs)


def cluster_config(workers: list[str], index: int) -> str:
    """The TF_CONFIG for worker `index` of `workers` (host:port each), as a cluster manager would set it."""
    if not 0 <= index < len(workers):
        raise XrunError(f"--worker-index {index} is not one of the {len(workers)} workers",
                        hint=f"use 0 to {len(workers) - 1}; worker 0 is the chief")
    return json.dumps({"cluster": {"worker": list(workers)}, "task": {"type": "worker", "index": index}})


def cluster() -> dict | None:
    """TF_CONFIG as set by --workers, Kubernetes, Slurm wrappers and the like, or None."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        return None
    try:
        config = json.loads(text)
        config["cluster"], config["task"]
    except (ValueError, KeyError, TypeError):
        raise XrunError("TF_CONFIG is not valid JSON with 'cluster' and 'task'",
                        hint='e.g. {"cluster": {"worker": ["h1:12345", "h2:12345"]}, '
                             '"task": {"type": "worker", "index": 0}}') from None
    return config


def worker_count() -> int:
    config = cluster()
    return sum(len(hosts) for hosts in config["cluster"].values()) if config else 1


def worker_index() -> int:
    config = cluster()
    return int(config["task"].get("index", 0)) if config else 0


def is_chief() -> bool:
    """Only the chief writes the MLflow run and the checkpoints: an explicit `chief`, else worker 0."""
    config = cluster()
    if not config:
        return True
    task = config["task"]
    has_chief = "chief" in config["cluster"]
    return task.get("type") == "chief" or (not has_chief and task.get("type") == "worker" and task.get("index") == 0)


def strategy_for(asked: str):
    """auto: several workers in TF_CONFIG -> multi_worker; several GPUs -> mirrored; otherwise one device."""
    import tensorflow as tf

    _split_cpu(tf)
    kind = _resolve(asked, tf)
    if kind == "multi_worker":
        if worker_count() < 2:
            raise XrunError("training.distribute is multi_worker but no cluster is configured",
                            hint="pass --workers host1:port,host2:port --worker-index I, or set TF_CONFIG")
        return _multi_worker_strategy(tf)
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy(_mirrored_devices(tf))
    return tf.distribute.get_strategy()


def _multi_worker_strategy(tf):
    """MultiWorkerMirroredStrategy, made to work with Keras 3's fit.

    Before training, Keras 3 averages one distributed input batch with `strategy.reduce` only to learn its
    shapes, and the multi-worker strategy cannot reduce that value eagerly (keras-team/keras#20585: fit fails
    with "Attempt to convert a value (PerReplica...)"). For that one call, a local replica's batch has the same
    shapes; every real reduction (gradients, metrics) still goes through the strategy's collectives.
    """
    class KerasMultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            try:
                return super().reduce(reduce_op, value, axis)
            except ValueError:
                return tf.nest.map_structure(lambda v: self.experimental_local_results(v)[0], value)

    return KerasMultiWorkerMirroredStrategy()


def _resolve(asked: str, tf) -> str:
    if asked != "auto":
        return asked
    if worker_count() > 1:
        return "multi_worker"
    return "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "none"


def _split_cpu(tf) -> None:
    count = int(os.environ.get(CPU_DEVICES_ENV, "0") or 0)
    if count > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
        except RuntimeError:  # TensorFlow already started: the split must happen before the first op
            pass


def _mirrored_devices(tf) -> list[str] | None:
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return None  # MirroredStrategy's default: every GPU
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def shard_by_data(dataset):
    """In-memory datasets have no files to split by: shard multi-worker input by element instead."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
