"""Each node the runtime ran, attributed to a group's own time, to an edge between groups, or to the fixed part.

- A group's *compute* node(s): the runtime's kernel for the group's op (``QLinearConv``, ``FusedConv``, the
  blocked ``Conv[nchwc]``, ``QGemm``, ...), found by the runtime's ``originals`` where it gives them, else by
  ORT's naming (the original name, ``<name>_token_N``, ``<output tensor>_nchwc``), else by the weight or bias
  it reads.
- Every other node is placed by wiring: its nearest compute nodes upstream (producers) and downstream
  (consumers). Its time is split equally over the (producer group, consumer group) pairs that are edges.
  With no producer group (the input's QuantizeLinear, a weight DequantizeLinear an unfused kernel pays each
  run), it goes to the consumer groups' own time; with no consumer group (after the last group), to the
  producer groups' own time; with neither, or with groups on both sides but no edge between them, to the
  consumer groups' own time if any, else the producers', else the fixed part. Whatever depends on a
  group's precision thus stays with that group or edge, and the fixed part holds only what no plan changes.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mixq.backends.onnx.deployed.profile import DeployedGraph, DeployedNode
from mixq.core.graph import GroupId
from mixq.cost.pairwise import Edge

#: Nodes that move, convert or reshape data: never a group's compute node, whatever their name.
PLUMBING = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "Cast", "Transpose",
                      "ReorderInput", "ReorderOutput", "ReorderInput[nchwc]", "ReorderOutput[nchwc]", "Reshape",
                      "Identity", "Squeeze", "Unsqueeze", "Flatten", "Shape", "Relu", "Clip", "Add", "Concat",
                      "Pad", "MaxPool", "AveragePool", "GlobalAveragePool", "MaxPool[nchwc]", "AveragePool[nchwc]",
                      "GlobalAveragePool[nchwc]", "QLinearAdd", "QLinearConcat", "QLinearGlobalAveragePool",
                      "QLinearAveragePool", "Softmax", "Mul", "Sigmoid", "HardSigmoid", "HardSwish"})

#: Activations a runtime fuses into the conv before them (the blocked conv is then named after their output).
_FUSABLE = frozenset({"Relu", "Clip", "HardSigmoid", "LeakyRelu", "Sigmoid", "Tanh", "Add", "Sum"})

_TOKEN = re.compile(r"^(.*)_token_\d+$")


@dataclass(frozen=True)
class GroupMatcher:
    """What identifies a group's compute node in a runtime graph.

    Attributes:
        nodes: site node name -> group.
        tensors: tensor -> groups whose op (or an activation fused after it) writes it (for ``<tensor>_nchwc``).
        params: weight and bias initializer names -> group (a renamed kernel still reads them).
    """

    nodes: Mapping[str, GroupId]
    tensors: Mapping[str, tuple[GroupId, ...]]
    params: Mapping[str, GroupId]

    def group(self, node: DeployedNode) -> GroupId | None:
        """The group whose compute node ``node`` is, or None."""
        if node.originals:
            found = [self.nodes[name] for name in node.originals if name in self.nodes]
            return found[0] if found and node.kind.split("[")[0] not in _NOT_COMPUTE_ORIGINALS else None
        if node.kind in PLUMBING:
            return None
        name = node.name
        while True:
            if name in self.nodes:
                return self.nodes[name]
            match = _TOKEN.match(name)
            if not match:
                break
            name = match.group(1)
        by_params = [self.params[base] for base in (n.split("::")[0] for n in node.inputs) if base in self.params]
        if name.endswith("_nchwc"):
            candidates = self.tensors.get(name[:-len("_nchwc")], ())
            if len(candidates) == 1:
                return candidates[0]
            agreed = [g for g in by_params if g in candidates]
            if agreed:
                return agreed[0]
            if candidates:
                return candidates[-1]
        return by_params[0] if by_params else None


#: Runtime node kinds that are never a group's kernel even when the runtime lists a site among their originals.
_NOT_COMPUTE_ORIGINALS = frozenset({"QuantizeLinear", "DequantizeLinear", "Transpose", "Reorder", "Convert",
                                    "FakeQuantize"})


def matcher(model: Any) -> GroupMatcher:
    """The :class:`GroupMatcher` of a traced or simulated ONNX model (``.model.index``, ``.sites``, ``.graph``)."""
    index = model.model.index
    nodes = {op.name: group.id for group in model.graph for op in group.ops}
    tensors: dict[str, list[GroupId]] = {}
    params: dict[str, GroupId] = {}
    for site in model.sites:
        group = nodes[site.node]
        node = index.nodes[index.position[site.node]]
        for name in node.input[1:]:
            if name in index.initializers:
                params.setdefault(name, group)
        tensor = node.output[0]
        for _ in range(3):  # the op's output, then through activations a runtime fuses into it
            tensors.setdefault(tensor, []).append(group)
            readers = index.consumers.get(tensor, [])
            if len(readers) != 1 or index.nodes[readers[0]].op_type not in _FUSABLE:
                break
            tensor = index.nodes[readers[0]].output[0]
    return GroupMatcher(nodes, {t: tuple(g) for t, g in tensors.items()}, params)


@dataclass
class Attribution:
    """One profiled run's node times, split into groups' own times, edges and the fixed part (ms).

    Attributes:
        own: group -> its compute node(s) plus what only it pays (weight dequantization, input quantization).
        edges: edge -> what the runtime ran between its producer and consumer.
        fixed: nodes no group or edge explains.
        compute: group -> the time of its compute node(s) alone.
        kernels: group -> the kinds of its compute node(s), e.g. ``QLinearConv`` or ``FusedConv``.
        where: node name -> where its time went (``group:G``, ``edge:A->B``, ``fixed``), for diagnosis.
    """

    own: dict[GroupId, float] = field(default_factory=dict)
    edges: dict[Edge, float] = field(default_factory=dict)
    fixed: float = 0.0
    compute: dict[GroupId, float] = field(default_factory=dict)
    kernels: dict[GroupId, str] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return float(sum(self.own.values()) + sum(self.edges.values()) + self.fixed)


def attribute(graph: DeployedGraph, match: GroupMatcher, edges: Iterable[Edge]) -> Attribution:
    """Attribute every node of ``graph``; the parts sum to ``graph.node_ms``."""
    edge_set = set(edges)
    nodes = _topological(graph.nodes)
    groups = [match.group(node) for node in nodes]
    producer: dict[str, int] = {}
    readers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for name in node.outputs:
            producer[name] = i
        for name in dict.fromkeys(node.inputs):
            readers.setdefault(name, []).append(i)
    up: list[frozenset[GroupId]] = []
    for i, node in enumerate(nodes):
        found: set[GroupId] = set()
        for name in node.inputs:
            j = producer.get(name)
            if j is not None:
                found |= {groups[j]} if groups[j] is not None else up[j]  # type: ignore[arg-type]
        up.append(frozenset(found))
    down: list[frozenset[GroupId]] = [frozenset()] * len(nodes)
    for i in range(len(nodes) - 1, -1, -1):
        found = set()
        for name in nodes[i].outputs:
            for j in readers.get(name, ()):
                found |= {groups[j]} if groups[j] is not None else down[j]  # type: ignore[arg-type]
        down[i] = frozenset(found)
    out = Attribution()
    for i, node in enumerate(nodes):
        group = groups[i]
        if group is not None:
            out.own[group] = out.own.get(group, 0.0) + node.ms
            out.compute[group] = out.compute.get(group, 0.0) + node.ms
            out.kernels[group] = _join(out.kernels.get(group), node.kind)
            out.where[node.name] = f"group:{group}"
            continue
        producers, consumers = sorted(up[i]), sorted(down[i])
        pairs = [(a, b) for a in producers for b in consumers if (a, b) in edge_set]
        if pairs:
            for pair in pairs:
                out.edges[pair] = out.edges.get(pair, 0.0) + node.ms / len(pairs)
            out.where[node.name] = "edge:" + ",".join(f"{a}->{b}" for a, b in pairs)
            continue
        owners = consumers or producers
        if owners:
            for owner in owners:
                out.own[owner] = out.own.get(owner, 0.0) + node.ms / len(owners)
            out.where[node.name] = "group:" + ",".join(owners)
        else:
            out.fixed += node.ms
            out.where[node.name] = "fixed"
    return out


def _join(kinds: str | None, kind: str) -> str:
    parts = [k for k in (kinds or "").split("+") if k]
    return "+".join(dict.fromkeys([*parts, kind]))


def _topological(nodes: Sequence[DeployedNode]) -> list[DeployedNode]:
    """``nodes`` in an order where every producer comes before its readers (stable; the given order if it is)."""
    producer = {name: i for i, node in enumerate(nodes) for name in node.outputs}
    waiting = [len({producer[n] for n in node.inputs if n in producer and producer[n] != i})
               for i, node in enumerate(nodes)]
    readers: dict[int, list[int]] = {}
    for i, node in enumerate(nodes):
        for j in {producer[n] for n in node.inputs if n in producer and producer[n] != i}:
            readers.setdefault(j, []).append(i)
    ready = [i for i, w in enumerate(waiting) if w == 0]
    order: list[int] = []
    heapq.heapify(ready)
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in readers.get(i, ()):
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    order += [i for i in range(len(nodes)) if i not in set(order)]  # a cycle (never in a DAG): keep the rest
    return [nodes[i] for i in order]


__all__ = ["PLUMBING", "Attribution", "GroupMatcher", "attribute", "matcher"]
