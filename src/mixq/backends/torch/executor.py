"""Node-by-node execution of a GraphModule.

Running nodes ourselves (rather than calling the GraphModule) lets the simulation swap single
ops for quantized versions and, in phase 1, recompute only the nodes a group can influence while
the rest come from a cached float run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.fx as fx
from torch.fx.node import map_arg
from torch.utils._pytree import tree_flatten

from mixq.errors import UnsupportedModelError, internal

#: ``override(node, args, kwargs) -> value`` replaces the normal execution of one node.
Override = Callable[[fx.Node, tuple[Any, ...], dict[str, Any]], Any]
Observer = Callable[[str, torch.Tensor], None]


class GraphExecutor:
    """Executes a GraphModule's nodes in order; values are freed after their last use."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.nodes: list[fx.Node] = list(gm.graph.nodes)
        self.index = {node: i for i, node in enumerate(self.nodes)}
        self.by_name = {node.name: node for node in self.nodes}
        self.modules = dict(gm.named_modules())
        self.attrs = {node.name: _fetch_attr(gm, str(node.target)) for node in self.nodes if node.op == "get_attr"}
        placeholders = [node for node in self.nodes if node.op == "placeholder"]
        if not placeholders:
            raise UnsupportedModelError("the model's forward takes no input tensor")
        self.input_node = placeholders[0]
        self.extra_inputs = placeholders[1:]
        for extra in self.extra_inputs:
            if not extra.args:
                raise UnsupportedModelError(
                    f"the model's forward takes several inputs ({', '.join(p.name for p in placeholders)}); "
                    "mixq feeds one image tensor: wrap the model so forward(x) takes only the image"
                )
        self.last_use = _last_uses(self.nodes, self.index)

    def call(self, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The float semantics of one node."""
        if node.op == "call_function":
            return node.target(*args, **kwargs)  # type: ignore[operator]
        if node.op == "call_method":
            return getattr(args[0], str(node.target))(*args[1:], **kwargs)
        if node.op == "call_module":
            return self.modules[str(node.target)](*args, **kwargs)
        raise internal(f"the graph executor met an fx node of unknown kind {node.op!r} ({node.name})")

    def run(
        self,
        inputs: torch.Tensor,
        overrides: dict[str, Override] | None = None,
        nodes: Sequence[fx.Node] | None = None,
        base: dict[fx.Node, Any] | None = None,
        keep: bool = False,
        observe: tuple[Iterable[str], Observer] | None = None,
    ) -> tuple[Any, dict[fx.Node, Any]]:
        """Run ``nodes`` (default: all); values of other nodes are read from ``base``.

        Returns the model's output and, with ``keep``, every computed value (the float cache).
        """
        overrides = overrides or {}
        env: dict[fx.Node, Any] = {}
        watched = set(observe[0]) if observe else set()
        todo = self.nodes if nodes is None else nodes
        output: Any = None

        def lookup(node: fx.Node) -> Any:
            if node in env:
                return env[node]
            if base is not None and node in base:
                return base[node]
            raise internal(f"the value of fx node {node.name} is neither computed in this run nor in the cached base")

        for node in todo:
            if node.op == "placeholder":
                value = inputs if node is self.input_node else node.args[0]
            elif node.op == "get_attr":
                value = self.attrs[node.name]
            elif node.op == "output":
                output = map_arg(node.args[0], lookup)
                continue
            else:
                args = map_arg(node.args, lookup)
                kwargs = map_arg(node.kwargs, lookup)
                override = overrides.get(node.name)
                value = override(node, args, kwargs) if override else self.call(node, args, kwargs)
            env[node] = value
            if node.name in watched and isinstance(value, torch.Tensor):
                observe[1](node.name, value)  # type: ignore[index]
            if not keep:
                for arg in node.all_input_nodes:
                    if self.last_use.get(arg) == node and arg in env:
                        del env[arg]
        return output, env

    def descendants(self, sources: Iterable[str]) -> list[fx.Node]:
        """Nodes whose value depends on any source node, in execution order (sources included)."""
        seen: set[fx.Node] = set()
        stack = [self.by_name[name] for name in sources]
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            stack.extend(node.users)
        return sorted(seen, key=self.index.__getitem__)


def flatten_output(output: Any) -> torch.Tensor:
    """All output tensors of a batch as one ``(batch, features)`` matrix."""
    leaves = [leaf for leaf in tree_flatten(output)[0] if isinstance(leaf, torch.Tensor)]
    if not leaves:
        raise UnsupportedModelError(
            f"the model returned {type(output).__name__}, not tensors: mixq compares output tensors"
        )
    batch = leaves[0].shape[0] if leaves[0].dim() else 1
    parts = [leaf.reshape(batch, -1).float() for leaf in leaves if leaf.dim() and leaf.shape[0] == batch]
    return torch.cat(parts, dim=1)


def _fetch_attr(gm: fx.GraphModule, target: str) -> Any:
    value: Any = gm
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _last_uses(nodes: list[fx.Node], index: dict[fx.Node, int]) -> dict[fx.Node, fx.Node]:
    last: dict[fx.Node, fx.Node] = {}
    for node in nodes:
        for arg in node.all_input_nodes:
            if arg not in last or index[node] > index[last[arg]]:
                last[arg] = node
    return last
