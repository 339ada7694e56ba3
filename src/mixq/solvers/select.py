"""Picking one point of a trade-off curve: by cost budgets, or by a quality target measured for real.

Pandey et al. (section 3.3.2) stop the greedy walk when a task-performance budget is violated;
AIMET does this with a binary search that trusts the measured curve to be monotone. Measured
quality along a curve is not monotone in practice, so the search here only ever returns a point it
measured and found meeting the target, and when nothing meets it, says what is reachable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mixq.core.assignment import Assignment
from mixq.core.budget import CostBudget, CostUnit, QualityMetric, QualityTarget
from mixq.core.quality import Quality
from mixq.errors import ConfigError, InfeasibleBudgetError
from mixq.solvers.base import AllocationProblem, CurvePoint, ParetoCurve, within


def in_budget_unit(problem: AllocationProblem, budget: CostBudget, absolute: float) -> float:
    """An absolute cost in the unit ``budget.limit`` is written in (a ratio, or the model's unit)."""
    if budget.unit is CostUnit.RATIO:
        return absolute / problem.reference(budget.cost)
    return absolute


def format_cost(problem: AllocationProblem, budget: CostBudget, absolute: float) -> str:
    """An absolute cost as the user wrote the budget: ``bops 0.250``, ``size 24.1%``, ``size 2.41MB``."""
    value = in_budget_unit(problem, budget, absolute)
    if budget.cost == "size":
        return f"size {value * 100:.1f}%" if budget.unit is CostUnit.RATIO else f"size {value / 1e6:.4g}MB"
    if budget.unit is CostUnit.RATIO:
        return f"{budget.cost} {value:.3f}"
    return f"{budget.cost} {value:.4g} {problem.model(budget.cost).unit}"


def feasible_indices(curve: ParetoCurve, problem: AllocationProblem, budgets: Sequence[CostBudget]) -> list[int]:
    """Indices of the curve points that meet every cost budget."""
    return [i for i, point in enumerate(curve.points) if problem.meets(point.costs, budgets)]


def select_by_cost(curve: ParetoCurve, problem: AllocationProblem, budgets: Sequence[CostBudget]) -> CurvePoint:
    """The first point (from the expensive, high-quality end) that meets every cost budget.

    Raises:
        InfeasibleBudgetError: no point meets them; the message says what is reachable.
    """
    for point in curve.points:
        if problem.meets(point.costs, budgets):
            return point
    raise infeasible_cost_error(problem, budgets, curve)


def infeasible_cost_error(
    problem: AllocationProblem, budgets: Sequence[CostBudget], curve: ParetoCurve | None = None
) -> InfeasibleBudgetError:
    """Explain why no configuration (on ``curve``, or at all when it is None) meets ``budgets``.

    ``reachable`` is in the unit of the budget the message names (as ``budget.limit``).
    """
    for budget in budgets:
        lowest = problem.min_cost(budget.cost)
        if not within(lowest, problem.limit(budget)):
            return InfeasibleBudgetError(
                f"{budget} cannot be met: the cheapest configuration reaches {format_cost(problem, budget, lowest)} "
                f"({_cheapest_how(problem)}); raise the budget or {_cheaper_hint(problem)}",
                reachable=in_budget_unit(problem, budget, lowest),
            )
    if curve is not None:
        for budget in budgets:
            lowest_on_curve = min(point.costs[budget.cost] for point in curve.points)
            if not within(lowest_on_curve, problem.limit(budget)):
                lowest = problem.min_cost(budget.cost)
                return InfeasibleBudgetError(
                    f"{budget} is reachable (the cheapest configuration reaches "
                    f"{format_cost(problem, budget, lowest)}) "
                    f"but not along the {curve.primary} trade-off curve, which gets down to only "
                    f"{format_cost(problem, budget, lowest_on_curve)}; search along it with --cost {budget.cost}, "
                    "or use --solver ilp, which meets several budgets at once",
                    reachable=in_budget_unit(problem, budget, lowest_on_curve),
                )
    names = " and ".join(str(b) for b in budgets)
    first, others = budgets[0], budgets[1:]
    reachable: float | None = None
    detail = ""
    if curve is not None:
        meeting_others = [p.costs[first.cost] for p in curve.points if problem.meets(p.costs, others)]
        if meeting_others:
            reachable = in_budget_unit(problem, first, min(meeting_others))
            detail = (
                f"; meeting the others, the curve reaches at best {format_cost(problem, first, min(meeting_others))}"
            )
    return InfeasibleBudgetError(
        f"{names} cannot be met together although each can be met alone{detail}; relax one of them"
        + (" or use --solver ilp, which meets several budgets at once" if curve is not None else ""),
        reachable=reachable,
    )


def _cheapest_how(problem: AllocationProblem) -> str:
    if problem.edges:  # min_cost is then a lower bound no assignment may reach
        return "at best: every group and every edge between groups at its cheapest"
    return "every group at its cheapest candidate"


def _cheaper_hint(problem: AllocationProblem) -> str:
    names = {str(p) for group in problem.graph for p in group.candidates}
    if "w4a8" not in names:
        return "add cheaper candidates such as w4a8"
    return "add candidates cheaper than w4a8 (e.g. w4a4) if the target has kernels for them"


@dataclass(frozen=True)
class QualitySelection:
    """The cheapest measured point meeting a quality target.

    Attributes:
        point: the chosen curve point.
        index: its index on the curve.
        quality: what was measured for it.
        evaluations: every ``(curve index, measured quality)`` in evaluation order.
    """

    point: CurvePoint
    index: int
    quality: Quality
    evaluations: tuple[tuple[int, Quality], ...]


def select_by_quality(
    curve: ParetoCurve,
    target: QualityTarget,
    evaluate: Callable[[Assignment], Quality],
    float_quality: Quality | None = None,
    candidates: Sequence[int] | None = None,
) -> QualitySelection:
    """Binary search for the cheapest curve point whose *measured* quality meets ``target``.

    The search assumes quality falls along the curve but does not rely on it: it returns only a
    point it measured and saw meet the target, so a non-monotone curve can cost a cheaper point,
    never correctness. About ``1 + log2(len(candidates))`` evaluations.

    Args:
        curve: the trade-off curve, most expensive point first.
        target: the quality to reach.
        evaluate: measures a configuration for real (the expensive call).
        float_quality: the float model's quality (needed by ``drop`` targets).
        candidates: the curve indices allowed (e.g. those meeting cost budgets); default all.

    Raises:
        InfeasibleBudgetError: the most expensive allowed point misses the target; ``reachable``
            holds its measured value.
    """
    indices = sorted(set(range(len(curve)) if candidates is None else candidates))
    if any(not 0 <= i < len(curve) for i in indices):
        raise ConfigError(f"candidate indices must lie in 0..{len(curve) - 1}")
    if not indices:
        raise InfeasibleBudgetError("no point on the curve meets the cost budgets, so no quality can be checked")
    measured: dict[int, Quality] = {}
    order: list[tuple[int, Quality]] = []

    def meets(position: int) -> bool:
        index = indices[position]
        if index not in measured:
            measured[index] = evaluate(curve.points[index].assignment)
            order.append((index, measured[index]))
        return target.met(measured[index], float_quality)

    if not meets(0):
        raise _infeasible_quality(curve, target, indices[0], measured, float_quality)
    good, bad = 0, len(indices)  # invariant: indices[good] was measured and met the target
    while bad - good > 1:
        middle = (good + bad) // 2
        if meets(middle):
            good = middle
        else:
            bad = middle
    index = indices[good]
    return QualitySelection(curve.points[index], index, measured[index], tuple(order))


def _infeasible_quality(
    curve: ParetoCurve, target: QualityTarget, first: int, measured: dict[int, Quality], float_quality: Quality | None
) -> InfeasibleBudgetError:
    values = {i: target.value(q, float_quality) for i, q in measured.items()}
    lower_is_better = target.metric is QualityMetric.DROP
    best_index = (min if lower_is_better else max)(values, key=lambda i: values[i])
    best = values[best_index]
    point = curve.points[best_index]
    where = ", ".join(
        f"{name} {ratio * 100:.1f}%" if name == "size" else f"{name} {ratio:.3f}"
        for name, ratio in point.ratios.items()
        if math.isfinite(ratio)
    )
    present = set(curve.points[first].assignment.counts())
    higher = [name for name in ("w8a16", "fp16") if name not in present]
    hint = (
        f"add a higher candidate such as {' or '.join(higher)}" if higher else "keep the most sensitive groups in fp32"
    )
    return InfeasibleBudgetError(
        f"{target} cannot be met: the best configuration on the curve reaches {_format_quality(target, best)} "
        f"(measured at curve point {best_index}{', ' + where if where else ''}); lower the target or {hint}",
        reachable=best,
    )


def _format_quality(target: QualityTarget, value: float) -> str:
    if target.metric is QualityMetric.SQNR:
        return f"{value:.1f} dB"
    if target.metric is QualityMetric.DROP:
        return f"a drop of {value:.2f} points"
    return f"{value:.3f}"
