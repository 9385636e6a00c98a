"""Describe a built model for people and for machines: per-layer rows and parameter totals."""

from __future__ import annotations

import math
import sys

from rich.console import Console
from rich.table import Table

from runner.text import shape_tuple


def model_info(model, graph) -> dict:
    """Totals and one row per layer: name, type, inputs, output shape, parameter count."""
    # Rows follow the YAML's order (Keras may list parallel branches in another order).
    rows = [model.get_layer(n.name) for n in graph.nodes]
    first = [] if model.layers[0].name != "input" else [_layer_row(model.layers[0], [])]
    layers = first + [_layer_row(layer, n.inputs) for layer, n in zip(rows, graph.nodes)]
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    total = model.count_params()
    return {"name": model.name, "total_params": total, "trainable_params": trainable,
            "non_trainable_params": total - trainable, "layers": layers}


def _layer_row(layer, inputs: list[str]) -> dict:
    return {"name": layer.name, "type": type(layer).__name__, "inputs": inputs,
            "output_shape": _shape(layer.output.shape), "params": layer.count_params()}


def _shape(shape) -> list:
    return [None if d is None else int(d) for d in shape]



def print_model_table(info: dict, title: str, console: Console | None = None) -> None:
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    graph = any(len(row["inputs"]) > 1 or row["inputs"] != [prev["name"]]
                for prev, row in zip([{"name": "input"}] + info["layers"], info["layers"]) if row["inputs"])
    table = Table(title=title, title_justify="left")
    for column in ["Layer", "Type", *(["Inputs"] if graph else []), "Output shape", "Params"]:
        table.add_column(column, justify="right" if column == "Params" else "left", no_wrap=column != "Inputs")
    for row in info["layers"]:
        cells = [row["name"], row["type"], *([", ".join(row["inputs"])] if graph else []),
                 shape_tuple(row["output_shape"]), f"{row['params']:,}"]
        table.add_row(*cells)
    console.print(table)
    console.print(f"Total params: {info['total_params']:,}   Trainable: {info['trainable_params']:,}   "
                  f"Non-trainable: {info['non_trainable_params']:,}")


def print_cost(cost: dict, console: Console | None = None) -> None:
    """The training's predicted peak memory by part and step time by part (`training_cost` of `xrun summary`)."""
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    memory, step = cost["memory"], cost["step_seconds"]
    named = [f"{k.replace('_', ' ')} {_mib(v)}" for k, v in memory.items() if k != "total" and v]
    parts = "\n  ".join(", ".join(named[i:i + 4]) for i in range(0, len(named), 4))  # 4 a line: no wrapping
    available = "" if cost["available_memory"] is None else f" of {_mib(cost['available_memory'])} available"
    console.print(f"Training at batch_size {cost['batch_size']} ({cost['optimizer']}, {cost['optimizer_slots']} "
                  f"slot(s) per weight): peak memory about {_mib(memory['total'])}{available}", highlight=False)
    console.print(f"  {parts}", highlight=False)
    console.print(f"Step time about {step['total'] * 1e3:.1f} ms on this machine: layers {step['layers'] * 1e3:.1f} "
                  f"ms ({cost['training_flops_per_image'] * cost['batch_size'] / 1e9:.2f} GFLOP, each layer measured "
                  f"here), update {step['update'] * 1e3:.1f} ms, loss {step['loss'] * 1e3:.1f} ms, overhead "
                  f"{step['overhead'] * 1e3:.1f} ms", highlight=False)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"
