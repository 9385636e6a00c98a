"""Turn the `model` section into a flat, checked graph of named layers: blocks expanded, references resolved."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from runner.errors import Location, XrunError, did_you_mean
from runner.language import schema
from runner.language.params import NO_ORIGINS, Origins, substitute_layers
from runner.language.source import Path_, dotted

INPUT = "input"  # the model's input; inside a block, the block's input
MAX_BLOCK_DEPTH = 16
MAX_LAYERS = 10_000  # nested blocks with `repeat` multiply: cap what a few lines can expand to
# The keys of a block use that are not its params (block, name, inputs, repeat, first): the schema's.
USE_KEYS = frozenset(schema.definition("#/$defs/block_use")["properties"])


@dataclass
class Node:
    """One Keras layer to build: its class name, constructor arguments and the names it takes input from."""

    name: str
    type: str
    args: dict
    inputs: list[str]
    origin: Path_                 # where the layer is written in the document
    via: str = ""                 # "block 'x' at model.layers[2]" for layers that come from a block
    scope: dict = field(default_factory=dict)  # the names its `inputs` may use, as written -> full name


@dataclass
class Graph:
    nodes: list[Node]             # in an order where every layer comes after its inputs
    outputs: list[str]
    aliases: dict = field(default_factory=dict)  # block instance name -> its last layer
    entries: dict = field(default_factory=dict)  # a name a block use takes as input -> (path, via, scope)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)


Locate = Callable[..., "Location | None"]
# (layer or block use, its path, "block 'x' at ..." or "", where its param values came from) -> the item to
# expand (defaults filled), or None: as is
CheckItem = Callable[[dict, Path_, str, Origins], "dict | None"]


def build_graph(model: dict, locate: Locate, merge_types: set[str], check_item: CheckItem | None = None) -> Graph:
    """Expand blocks and check every reference; `merge_types` are the layers that take several inputs.

    `check_item` checks each layer and block use as it is expanded: a block's layers are only concrete (their
    params filled in) here, so only here can they be checked, and they must be before they are used.
    """
    expander = _Expander(model.get("blocks") or {}, locate, check_item or _with_defaults)
    last = expander.items(model["layers"], ("model", "layers"), INPUT, prefix="", via="", depth=0)
    if not expander.nodes:
        raise XrunError("the model has no layers", where=locate(("model", "layers")), path="model.layers",
                        hint="its block uses repeat 0 times: give one repeat: 1 or more, or add a layer")
    outputs = _as_list(model.get("outputs")) or [last]
    graph = Graph(expander.nodes, outputs, expander.aliases, expander.entries)
    _Checker(graph, locate, merge_types).run()
    return graph


def check_param_names(model, locate: Locate) -> None:
    """A block's params may not be named as the keys of a block use (`first`, `repeat`, ...): a use could not give
    them. Checked before the schema, which would otherwise report the use's value at the keyword's meaning."""
    blocks = model.get("blocks") if isinstance(model, dict) else None
    for name, block in blocks.items() if isinstance(blocks, dict) else ():
        params = block.get("params") if isinstance(block, dict) else None
        for key in [k for k in params if k in USE_KEYS] if isinstance(params, dict) else ():
            path = ("model", "blocks", name, "params", key)
            raise XrunError(f"'{key}' cannot name a param: {', '.join(sorted(USE_KEYS))} are the keys of a block "
                            "use itself", where=locate(path, key=True), path=dotted(path),
                            hint=f"give the param another name (say '{key}_value'), here and in the block's layers")


def _with_defaults(item, path: Path_, via: str, origins: Origins = NO_ORIGINS):
    """Without a checker, items still get the schema's defaults (a block use's `repeat`)."""
    return schema.with_defaults(item, "#/$defs/model_item")


def _as_list(value) -> list:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def snake(type_name: str) -> str:
    """Keras's default layer name for a class: Conv2D -> conv2d, MaxPooling2D -> max_pooling2d."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z][a-z])|(?<=[a-z])(?=[A-Z])", "_", type_name).lower()


class _Expander:
    """Walks layer lists, expanding block uses into prefixed copies of their layers."""

    def __init__(self, blocks: dict, locate: Locate, check_item: CheckItem):
        self.blocks = blocks
        self.locate = locate
        self.check_item = check_item
        self.nodes: list[Node] = []
        self.aliases: dict[str, str] = {}
        self.entries: dict[str, tuple] = {}
        self.taken: set[str] = set()
        self.stack: list[str] = []
        self.top: Path_ = ()  # the item of model.layers being expanded

    def items(self, items: list, path: Path_, prev: str, prefix: str, via: str, depth: int,
              inputs: dict | None = None, origins: list[Origins] | None = None) -> str:
        """Expand a list of layers/blocks; returns the name of the last layer.

        `inputs` names a block's inputs ({declared name: layer}); `origins` says where each item's param values
        were written.
        """
        origins = origins or [NO_ORIGINS] * len(items)
        items = [self.check_item(item, path + (i,), via, origins[i]) or item for i, item in enumerate(items)]
        # Every name in the list is known up front, so `inputs` may also name a layer listed further down.
        renames = {item["name"]: f"{prefix}{item['name']}" for item in items if item.get("name", INPUT) != INPUT}
        renames.update({INPUT: prev, **(inputs or {})})
        for i, item in enumerate(items):
            here = path + (i,)
            self.top = here if depth == 0 else self.top
            if "block" in item:
                prev = self.block_use(item, here, prev, prefix, renames, via, depth, origins[i])
            else:
                prev = self.layer(item, here, prev, prefix, renames, via)
        return prev

    def layer(self, item: dict, path: Path_, prev: str, prefix: str, renames: dict, via: str) -> str:
        if len(self.nodes) >= MAX_LAYERS:
            raise XrunError(f"the model expands to more than {MAX_LAYERS:,} layers", where=self.locate(self.top),
                            path=dotted(self.top), hint="check the repeat: of this block use and of the blocks it uses")
        args = {k: v for k, v in item.items() if k not in ("type", "name", "inputs")}
        name = self.name_for(item.get("name"), item["type"], prefix, renames, path)
        inputs = [renames.get(r, r) for r in _as_list(item.get("inputs"))] or [prev]
        self.nodes.append(Node(name, item["type"], args, inputs, path, via, renames))
        return name

    def name_for(self, given: str | None, type_name: str, prefix: str, renames: dict, path: Path_) -> str:
        if given == INPUT:
            raise XrunError(f"the name '{INPUT}' is taken: it means the model input (in a block, the block's input)",
                            where=self.locate(path + ("name",)), path=dotted(path + ("name",)),
                            hint="give this layer another name")
        if given is not None:
            full = f"{prefix}{given}"
            if full in self.taken:
                raise XrunError(f"the name '{given}' is used twice", where=self.locate(path + ("name",)),
                                path=dotted(path + ("name",)), hint="give each layer a unique name")
            renames[given] = full
        else:
            base, n = f"{prefix}{snake(type_name)}", 0
            full = base
            while full in self.taken:
                n += 1
                full = f"{base}_{n}"
        self.taken.add(full)
        return full

    def block_use(self, item: dict, path: Path_, prev: str, prefix: str, renames: dict, via: str,
                  depth: int, origins: Origins) -> str:
        block = self.find_block(item, path)
        params, sources = self.bind_params(block, item, path, origins)
        name = self.name_for(item.get("name"), item["block"], prefix, renames, path)
        declared = block.get("inputs") or [INPUT]
        starts = self.block_inputs(item, declared, path, prev, renames, via)
        here_via = via or f"block '{item['block']}' at {dotted(path)}"
        if depth >= MAX_BLOCK_DEPTH or item["block"] in self.stack:
            raise XrunError(f"block '{item['block']}' uses itself", where=self.locate(path + ("block",)),
                            path=dotted(path + ("block",)), hint="a block may not contain itself")
        self.stack.append(item["block"])
        layers_path = ("model", "blocks", item["block"], "layers")
        start = starts[0]  # repeat 0 passes its (first) input through; each repeat takes the one before
        for r in range(item["repeat"]):
            values, where = self.first_repeat(item, params, sources, path, origins) if r == 0 else (params, sources)
            inner, inner_origins = substitute_layers(block["layers"], values, where, layers_path, self.locate)
            rep_prefix = f"{name}_" if item["repeat"] == 1 else f"{name}_{r + 1}_"
            inputs = dict(zip(declared, [start, *starts[1:]])) if declared != [INPUT] else None
            start = self.items(inner, layers_path, start, rep_prefix, here_via, depth + 1, inputs, inner_origins)
        self.stack.pop()
        self.aliases[name] = start
        renames[item.get("name", name)] = start
        return start

    def block_inputs(self, item: dict, declared: list, path: Path_, prev: str, renames: dict, via: str) -> list:
        """The layers a block use takes, one per input its block declares (a block without `inputs` takes one)."""
        given = _as_list(item.get("inputs"))
        if len(given or [prev]) != len(declared):
            raise self.inputs_error(item, declared, len(given or [prev]), path + (("inputs",) if given else ()), via)
        starts = [renames.get(g, g) for g in given] or [prev]
        for start in starts if given else ():  # a wrong name is reported here, where it is written
            self.entries.setdefault(start, (path + ("inputs",), via, renames))
        return starts

    def inputs_error(self, item: dict, declared: list, count: int, path: Path_, via: str) -> XrunError:
        shown = dotted(path) + (f" (in {via})" if via else "")
        if len(declared) == 1:
            return XrunError(f"block '{item['block']}' takes one input, got {count}", where=self.locate(path),
                             path=shown, hint="merge them first with Concatenate or Add, or declare the block's "
                             f"inputs: model.blocks.{item['block']}.inputs: [NAME, NAME]")
        return XrunError(f"block '{item['block']}' takes {len(declared)} inputs ({', '.join(declared)}), got {count}",
                         where=self.locate(path), path=shown,
                         hint=f"list them in this block use: inputs: [{', '.join(['LAYER'] * len(declared))}]")

    def find_block(self, item: dict, path: Path_) -> dict:
        if item["block"] not in self.blocks:
            hint = did_you_mean(item["block"], self.blocks) or (
                "define it under model.blocks" if not self.blocks else "defined blocks: " + ", ".join(self.blocks))
            raise XrunError(f"unknown block '{item['block']}'", where=self.locate(path + ("block",)),
                            path=dotted(path + ("block",)), hint=hint)
        block = self.blocks[item["block"]]
        self.check_input_names(item["block"], block)
        return block

    def check_input_names(self, name: str, block: dict) -> None:
        """A block's layers may not take the names of its inputs."""
        for i, layer in enumerate(block["layers"]):
            if isinstance(layer, dict) and layer.get("name") in (block.get("inputs") or ()):
                path = ("model", "blocks", name, "layers", i, "name")
                raise XrunError(f"the name '{layer['name']}' is taken: it is an input of block '{name}'",
                                where=self.locate(path), path=dotted(path), hint="give this layer another name")

    def bind_params(self, block: dict, item: dict, path: Path_, origins: Origins) -> tuple[dict, dict]:
        """The params' values for this use, and where each was written (the use, or the param's default)."""
        declared = block.get("params") or {}
        given = {k: v for k, v in item.items() if k not in USE_KEYS}
        self.check_param_names(item["block"], declared, given, path)
        self.check_param_names(item["block"], declared, item.get("first") or {}, path + ("first",))
        params = {**declared, **given}
        first = item.get("first") or {}
        # A param given only under `first:` is given for all of a single repeat.
        missing = [k for k, v in params.items() if v is None and (item["repeat"] > 1 or first.get(k) is None)]
        if missing:
            raise XrunError(f"block '{item['block']}' needs param '{missing[0]}'", where=self.locate(path),
                            path=dotted(path), hint=f"add '{missing[0]}: VALUE' to this block use")
        sources = {k: ("model", "blocks", item["block"], "params", k) for k in declared}
        sources.update({k: origins.source((k,), path + (k,)) for k in given})
        return params, sources

    def check_param_names(self, block: str, declared: dict, given: dict, path: Path_) -> None:
        for key in given:
            if key not in declared:
                hint = did_you_mean(key, declared) or ("its params: " + ", ".join(declared) if declared
                                                       else "it takes no params")
                raise XrunError(f"block '{block}' has no param '{key}'", where=self.locate(path + (key,), key=True),
                                path=dotted(path + (key,)), hint=hint)

    def first_repeat(self, item: dict, params: dict, sources: dict, path: Path_, origins: Origins):
        """The params of the first repeat: `first:` overrides some (a ResNet stage's first block has stride 2)."""
        first = item.get("first") or {}
        where = {k: origins.source(("first", k), path + ("first", k)) for k in first}
        return {**params, **first}, {**sources, **where}


class _Checker:
    """Checks the expanded graph: references exist, no cycles, every layer's output is used, input counts."""

    def __init__(self, graph: Graph, locate: Locate, merge_types: set[str]):
        self.graph = graph
        self.locate = locate
        self.merge_types = merge_types
        self.by_name = {n.name: n for n in graph.nodes}

    def error(self, node: Node, key: str | None, message: str, hint: str | None) -> XrunError:
        path = node.origin + ((key,) if key else ())
        shown = dotted(path) + (f" (in {node.via})" if node.via else "")
        return XrunError(message, where=self.locate(path), path=shown, hint=hint)

    def run(self) -> None:
        for node in self.graph.nodes:
            node.inputs = [self.graph.aliases.get(r, r) for r in node.inputs]
        for node in self.graph.nodes:
            self.check_references(node)
            self.check_input_count(node)
        self.check_outputs()
        self.graph.nodes = self.topological()
        self.check_all_used()

    def check_references(self, node: Node) -> None:
        for ref in node.inputs:
            if ref != INPUT and ref not in self.by_name and ref in self.graph.entries:
                path, via, scope = self.graph.entries[ref]
                raise XrunError(f"unknown layer '{ref}' in inputs", where=self.locate(path),
                                path=dotted(path) + (f" (in {via})" if via else ""),
                                hint=did_you_mean(ref, [*scope, *self.by_name]) or "name a layer of this model")
            if ref != INPUT and ref not in self.by_name:
                known = [*node.scope, *self.by_name, *self.graph.aliases]
                where = "the layers of this block, or 'input' (the block's input)" if node.via else \
                    "the layers of this model, or 'input'"
                raise self.error(node, "inputs", f"unknown layer '{ref}' in inputs",
                                 did_you_mean(ref, known) or f"inputs name {where}")
            if ref == node.name:
                raise self.error(node, "inputs", f"layer '{node.name}' takes its own output",
                                 "a layer's inputs must be other layers")

    def check_input_count(self, node: Node) -> None:
        many = node.type in self.merge_types
        if many and len(node.inputs) < 2:
            raise self.error(node, "inputs", f"{node.type} merges 2 or more inputs, got {len(node.inputs)}",
                             "list the layers to merge, e.g. inputs: [branch_a, branch_b]")
        if not many and node.type != "KerasLayer" and len(node.inputs) > 1:
            raise self.error(node, "inputs", f"{node.type} takes one input, got {len(node.inputs)}",
                             "merge them first with Concatenate or Add")

    def check_outputs(self) -> None:
        for out in self.graph.outputs:
            if out not in self.by_name and out not in self.graph.aliases:
                where = self.locate(("model", "outputs"))
                raise XrunError(f"unknown layer '{out}' in outputs", where=where, path="model.outputs",
                                hint=did_you_mean(out, self.by_name) or "name a layer of this model")
        self.graph.outputs = [self.graph.aliases.get(o, o) for o in self.graph.outputs]
        if INPUT in self.graph.outputs:  # a block use that repeats 0 times passes its input through
            raise XrunError("the model's output is its input", where=self.locate(("model", "outputs")),
                            path="model.outputs", hint="end the model with a layer (a block that repeats 0 times "
                            "adds none)")

    def topological(self) -> list[Node]:
        """The nodes, each after its inputs; iterative, since a long chain written bottom-up is deep."""
        done, order = set(), []
        for root in self.graph.nodes:
            if root.name in done:
                continue
            active, stack = [root.name], [(root, iter(root.inputs))]
            while stack:
                node, refs = stack[-1]
                ref = next(refs, None)
                if ref is None:
                    stack.pop()
                    active.pop()
                    done.add(node.name)
                    order.append(node)
                elif ref in active:
                    cycle = " -> ".join(reversed(active[active.index(ref):] + [ref]))
                    raise self.error(self.by_name[ref], "inputs", f"layers form a cycle: {cycle}",
                                     "a layer may only take inputs from layers that do not depend on it")
                elif ref != INPUT and ref not in done:
                    active.append(ref)
                    stack.append((self.by_name[ref], iter(self.by_name[ref].inputs)))
        return order

    def check_all_used(self) -> None:
        used = {ref for n in self.graph.nodes for ref in n.inputs} | set(self.graph.outputs)
        for node in self.graph.nodes:
            if node.name not in used:
                raise self.error(node, None, f"the output of layer '{node.name}' is never used",
                                 "list it in another layer's inputs or in model.outputs, or remove it")
