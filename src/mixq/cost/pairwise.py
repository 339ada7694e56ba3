"""Costs that depend on two neighbouring groups at once: what a runtime pays between them.

A deployed file does not cost the sum of its groups alone. Where an integer group feeds a float one,
the runtime runs a DequantizeLinear and changes the tensor's layout; where two integer groups meet, the
quantize/dequantize pair vanishes into the kernels; an integer group whose consumer is float may not fuse
at all. A :class:`PairwiseCost` charges each *edge* (a producer group feeding a consumer group, through
ops that are not quantized) by the precisions of both ends, on top of the per-group ``cost``. Solvers
that see edges (the ILP's linearised edge variables, greedy region moves) optimise the true total; every
other consumer gets the total through :func:`mixq.cost.base.total_cost`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from mixq.core.assignment import Assignment
from mixq.core.graph import GroupId, QuantGraph
from mixq.core.precision import Precision

#: A producer group and a consumer group it feeds (directly or through ops mixq does not quantize).
Edge = tuple[GroupId, GroupId]


@runtime_checkable
class PairwiseCost(Protocol):
    """A cost model that also charges each edge by its two ends' precisions."""

    def edges(self, graph: QuantGraph) -> Sequence[Edge]:
        """The edges this model charges, each once, producer first (groups of ``graph`` only)."""
        ...

    def edge_cost(self, edge: Edge, producer: Precision, consumer: Precision) -> float:
        """What the edge costs when its producer and consumer run at these precisions."""
        ...


def edge_total(model: PairwiseCost, graph: QuantGraph, precisions: Mapping[GroupId, Precision]) -> float:
    """The sum of every edge's cost under ``precisions`` (an assignment's mapping)."""
    return float(sum(model.edge_cost(edge, precisions[edge[0]], precisions[edge[1]])
                     for edge in model.edges(graph)))


def is_pairwise(model: object) -> bool:
    """Whether ``model`` charges edges (and so is not a plain per-group sum)."""
    return isinstance(model, PairwiseCost)


def assignment_edges(model: PairwiseCost, graph: QuantGraph, assignment: Assignment) -> list[tuple[Edge, float]]:
    """Each edge with its cost under ``assignment`` (for reports: where the transitions are paid)."""
    return [(edge, model.edge_cost(edge, assignment[edge[0]], assignment[edge[1]])) for edge in model.edges(graph)]


__all__ = ["Edge", "PairwiseCost", "assignment_edges", "edge_total", "is_pairwise"]
