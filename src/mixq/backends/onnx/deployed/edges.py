"""The edges between quantizer groups of a traced ONNX model: where a runtime pays for precision changes.

A producer group feeds a consumer group when one of the consumer's quantized inputs is computed from the
producer's output through ops mixq does not quantize (Relu, Clip, Add, Pad, pooling, Reshape, Concat, ...):
that is where the exported file puts a QuantizeLinear/DequantizeLinear and the runtime a layout change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mixq.core.graph import GroupId
from mixq.cost.pairwise import Edge

#: Marks "the graph's input" among a tensor's nearest producers.
INPUT = "<input>"


@dataclass(frozen=True)
class GroupEdges:
    """Edges in graph order (each once, producer first), the groups in graph order, and the groups reading
    the graph's input or feeding its outputs (through unquantized ops)."""

    edges: tuple[Edge, ...]
    order: tuple[GroupId, ...]
    reads_input: frozenset[GroupId]
    feeds_output: frozenset[GroupId]

    def consumers(self, group: GroupId) -> tuple[GroupId, ...]:
        return tuple(b for a, b in self.edges if a == group)

    def producers(self, group: GroupId) -> tuple[GroupId, ...]:
        return tuple(a for a, b in self.edges if b == group)


def group_edges(model: Any) -> GroupEdges:
    """The edges of a traced or simulated ONNX model (anything with ``.model.index``, ``.sites``, ``.graph``)."""
    index = model.model.index
    group_of = {op.name: group.id for group in model.graph for op in group.ops}
    sites = {site.node: site for site in model.sites}
    return edges_of(index.nodes, index.initializers, [o for o in index.outputs], group_of,
                    {name: tuple(site.op.inputs) for name, site in sites.items()})


def edges_of(nodes: Sequence[Any], constants: Mapping[str, Any] | set[str], outputs: Sequence[str],
             group_of: Mapping[str, GroupId], quantized_inputs: Mapping[str, Sequence[str]]) -> GroupEdges:
    """Edges of ONNX ``nodes`` (in topological order) whose site nodes ``group_of`` maps to groups.

    ``quantized_inputs``: each site node's activation inputs (the tensors the export quantizes).
    """
    nearest: dict[str, frozenset[str]] = {}  # tensor -> nearest producer groups (or INPUT)

    def up(tensor: str) -> frozenset[str]:
        if tensor in nearest:
            return nearest[tensor]
        return frozenset() if tensor in constants else frozenset({INPUT})

    edges: dict[Edge, None] = {}
    order: dict[GroupId, None] = {}
    reads_input: set[GroupId] = set()
    for node in nodes:
        group = group_of.get(node.name)
        if group is not None:
            order.setdefault(group)
            for tensor in quantized_inputs.get(node.name, [n for n in node.input if n][:1]):
                for producer in sorted(up(tensor)):
                    if producer == INPUT:
                        reads_input.add(group)
                    elif producer != group:
                        edges.setdefault((producer, group))
            produced = frozenset({group})
        else:
            produced = frozenset().union(*(up(name) for name in node.input if name)) if node.input else frozenset()
        for name in node.output:
            if name:
                nearest[name] = produced
    feeds_output = {g for name in outputs for g in up(name) if g != INPUT}
    return GroupEdges(tuple(edges), tuple(order), frozenset(reads_input), frozenset(feeds_output))


__all__ = ["INPUT", "GroupEdges", "edges_of", "group_edges"]
