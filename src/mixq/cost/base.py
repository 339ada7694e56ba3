"""The cost-model protocol shared by solvers, budgets and reports."""

from __future__ import annotations

from typing import Protocol

from mixq.core.assignment import Assignment
from mixq.core.graph import QuantGraph, QuantizerGroup
from mixq.core.precision import Precision


class CostModel(Protocol):
    """An additive cost: the cost of an assignment is the sum of its groups' costs."""

    @property
    def name(self) -> str: ...

    @property
    def unit(self) -> str: ...

    def cost(self, group: QuantizerGroup, precision: Precision) -> float: ...

    def reference(self, graph: QuantGraph) -> float:
        """The cost that relative budgets (``bops<=0.5``, ``size<=30%``) are fractions of."""
        ...

    def fixed(self, graph: QuantGraph) -> float:
        """The part of the total no assignment changes (e.g. biases and norms kept in float)."""
        ...


def total_cost(model: CostModel, graph: QuantGraph, assignment: Assignment) -> float:
    """Fixed part + every group's cost + (for a :class:`~mixq.cost.pairwise.PairwiseCost`) every edge's."""
    from mixq.cost.pairwise import edge_total, is_pairwise

    total = model.fixed(graph) + float(sum(model.cost(group, assignment[group.id]) for group in graph))
    if is_pairwise(model):
        total += edge_total(model, graph, assignment.precisions)  # type: ignore[arg-type]
    return total
