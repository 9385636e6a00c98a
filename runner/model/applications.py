"""`{type: Application, class_name: MobileNetV2, weights: ...}`: a keras.applications network as one layer."""

from __future__ import annotations

import inspect
from pathlib import Path

import keras

from runner.errors import XrunError, did_you_mean
from runner.language.graph import Node
from runner.language.source import dotted
from runner.language.spec import Spec
from runner.model import registry
from runner.text import one_line

IMAGENET = "imagenet"
# Arguments an experiment does not give under config: the layer's own keys, and the input, which the data gives.
_NOT_IN_CONFIG = {"weights": "write weights: beside class_name", "include_top": "write include_top: beside class_name",
                  "pooling": "write pooling: beside class_name", "name": "write name: beside class_name",
                  "input_shape": "the input comes from the data (model.input_shape gives it another shape)",
                  "input_tensor": "the input comes from the layer above (or `inputs`)"}


def build_application(node: Node, spec: Spec, args: dict) -> keras.Model:
    """The network, its weights loaded (a local file, or ImageNet's where they can be downloaded), frozen with
    `trainable: false`."""
    args = {k: v for k, v in args.items() if k != "dtype"}  # the network keeps the policy it is built under
    build = registry.lookup(registry.APPLICATIONS, args.pop("class_name"), "application",
                            where=spec.locate(node.origin + ("class_name",)), path=_shown(node, "class_name"))
    config = args.pop("config", None) or {}
    _check_config(node, build, config, spec)
    trainable = args.pop("trainable", True)
    weights = _weights(node, spec, args.pop("weights"))
    try:
        model = build(weights=weights, name=node.name, **args, **config)
    except Exception as exc:  # noqa: BLE001 - Keras raises bare Exceptions for failed downloads
        raise _build_error(node, spec, build.__name__, weights, exc) from None
    model.trainable = trainable
    return model


def _weights(node: Node, spec: Spec, weights: str | None) -> str | None:
    """`weights` as Keras takes it: None, 'imagenet', or the weights file's path, relative to the YAML that names it."""
    if weights in (None, IMAGENET):
        return weights
    where = spec.locate(node.origin + ("weights",))
    path = Path(weights).expanduser()
    if not path.is_absolute() and where is not None and Path(where.file).is_file():
        path = Path(where.file).parent / path
    if not path.is_file():
        raise XrunError(f"no weights file {path}", where=where, path=_shown(node, "weights"),
                        hint=f"give the path of a .weights.h5 file (relative to this file), '{IMAGENET}', or null")
    return str(path)


def _check_config(node: Node, build, config: dict, spec: Spec) -> None:
    allowed = set(inspect.signature(build).parameters) - set(_NOT_IN_CONFIG)
    for key in config:
        where = {"where": spec.locate(node.origin + ("config", key), key=True), "path": _shown(node, f"config.{key}")}
        if key in _NOT_IN_CONFIG:
            raise XrunError(f"'{key}' does not belong in config", **where, hint=_NOT_IN_CONFIG[key])
        if key not in allowed:
            hint = did_you_mean(key, allowed) or "its arguments: " + ", ".join(sorted(allowed))
            raise XrunError(f"{build.__name__} has no argument '{key}'", **where, hint=hint)


def _build_error(node: Node, spec: Spec, name: str, weights: str | None, exc: Exception) -> Exception:
    text = one_line(exc)
    if weights == IMAGENET and "URL fetch failure" in text:
        reason = text.rsplit(" -- ", 1)[-1]
        return XrunError(f"cannot download the ImageNet weights of {name}: {reason}",
                         where=spec.locate(node.origin + ("weights",)), path=_shown(node, "weights"),
                         hint="run once where the internet is reachable (Keras keeps them in ~/.keras/models), "
                              "or give weights: the path of a weights file")
    if weights not in (None, IMAGENET) and isinstance(exc, ValueError):
        return XrunError(f"{name} cannot load {weights}: {text[:300]}", where=spec.locate(node.origin + ("weights",)),
                         path=_shown(node, "weights"), hint=f"give a file saved from this {name}, built with the "
                         "same include_top and config (model.save_weights)")
    if isinstance(exc, (ValueError, TypeError)):
        return XrunError(f"{name} rejects its arguments: {text[:300]}", where=spec.locate(node.origin + ("type",)),
                         path=_shown(node), hint="check them against the keras.applications documentation")
    return exc  # not the user's input: a bug keeps its traceback


def _shown(node: Node, key: str | None = None) -> str:
    return dotted(node.origin + ((key,) if key else ())) + (f" (in {node.via})" if node.via else "")
