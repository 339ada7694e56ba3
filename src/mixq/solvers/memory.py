"""Peak activation memory budgets: a maximum over groups, so they narrow candidates instead of
entering the additive objective; every solver then respects them without knowing of them."""

from __future__ import annotations

from collections.abc import Sequence

from mixq.core.budget import CostUnit, MemoryBudget
from mixq.core.graph import QuantGraph
from mixq.core.restrictions import narrow_graph
from mixq.cost.memory import float_peak_bytes
from mixq.errors import InfeasibleBudgetError
from mixq.solvers.base import within


def apply_memory_budgets(graph: QuantGraph, budgets: Sequence[MemoryBudget]) -> QuantGraph:
    """Keep only candidates whose activation tensor fits every budget.

    Raises:
        InfeasibleBudgetError: some group's narrowest candidate does not fit; says the minimum reachable.
    """
    for budget in budgets:
        reference = float_peak_bytes(graph)
        limit = budget.absolute(reference)
        worst = max(graph, key=lambda g: min(g.activation_bytes(p) for p in g.candidates))
        lowest = min(worst.activation_bytes(p) for p in worst.candidates)
        if not within(lowest, limit):
            reachable = lowest / reference if budget.unit is CostUnit.RATIO else lowest
            shown = f"{100 * reachable:.3g}%" if budget.unit is CostUnit.RATIO else f"{lowest / 1e6:.4g} MB"
            raise InfeasibleBudgetError(
                f"{budget} cannot be met: group {worst.id!r} reads an activation tensor of {worst.act_numel:,} "
                f"values per sample, {shown} at its fewest activation bits; raise the budget or add candidates "
                "with fewer activation bits (e.g. w8a4) if the target has kernels for them", reachable=reachable)
        graph = narrow_graph(graph, lambda g: tuple(p for p in g.candidates if within(g.activation_bytes(p), limit)),
                             lambda g: str(budget))
    return graph
