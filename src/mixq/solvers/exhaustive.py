"""Brute force over every assignment: the oracle that the other solvers are tested against."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mixq.core.budget import CostBudget
from mixq.errors import ConfigError
from mixq.solvers.base import AllocationProblem, CurvePoint, ParetoCurve
from mixq.solvers.curve import COST_RTOL
from mixq.solvers.pareto import front_indices
from mixq.solvers.select import infeasible_cost_error

#: Above this many assignments the enumeration (one float per assignment and cost) is refused.
MAX_COMBINATIONS = 2**20


class ExhaustiveSolver:
    """Every assignment of a small problem, scored with the same model as the others (edge costs included)."""

    name = "exhaustive"

    def curve(self, problem: AllocationProblem, budgets: Sequence[CostBudget] = ()) -> ParetoCurve:
        """The exact front: the least predicted noise at every reachable primary cost (``budgets`` are
        applied when a point is selected on it)."""
        noise, costs = _enumerate(problem)
        primary = costs[problem.primary]
        front = front_indices(primary, -noise)
        points = tuple(_point(problem, int(index)) for index in reversed(front))
        return ParetoCurve(points, problem.primary)

    def solve(self, problem: AllocationProblem, budgets: Sequence[CostBudget]) -> CurvePoint:
        """The least predicted noise meeting every budget (ties: cheaper in the primary cost)."""
        noise, costs = _enumerate(problem)
        feasible = np.ones(noise.shape, dtype=bool)
        for budget in budgets:
            limit = problem.limit(budget)
            feasible &= costs[budget.cost] <= limit + COST_RTOL * max(abs(limit), 1.0)
        candidates = np.flatnonzero(feasible)
        if candidates.size == 0:
            raise infeasible_cost_error(problem, budgets)
        best = candidates[np.lexsort((candidates, costs[problem.primary][candidates], noise[candidates]))[0]]
        return _point(problem, int(best))


def _shape(problem: AllocationProblem) -> tuple[int, ...]:
    shape = tuple(len(option.precisions) for option in problem.options)
    total = math.prod(shape)
    if total > MAX_COMBINATIONS:
        raise ConfigError(
            f"exhaustive search over {len(shape)} groups has {total} assignments, more than {MAX_COMBINATIONS}; "
            "use --solver ilp or --solver greedy"
        )
    return shape


def _enumerate(problem: AllocationProblem) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Total noise and costs of every assignment, in C order of the per-group candidate indices (edge costs
    included: each edge's matrix indexed by its two ends' candidate of every assignment)."""
    shape = _shape(problem)
    noise = np.zeros(1)
    costs = {name: np.full(1, problem.fixed(name)) for name in problem.costs}
    for option in problem.options:
        noise = np.add.outer(noise, np.asarray(option.noise)).ravel()
        for name in costs:
            costs[name] = np.add.outer(costs[name], np.asarray(option.costs[name])).ravel()
    if problem.edges:
        flat = np.arange(noise.size)
        strides = np.concatenate((np.cumprod(shape[::-1])[::-1][1:], [1])).astype(np.int64)

        def candidate(position: int) -> np.ndarray:
            index: np.ndarray = (flat // strides[position]) % shape[position]
            return index

        for edge in problem.edges:
            a, b = candidate(edge.producer), candidate(edge.consumer)
            for name in costs:
                costs[name] = costs[name] + np.asarray(edge.costs[name])[a, b]
    return noise, costs


def _point(problem: AllocationProblem, flat_index: int) -> CurvePoint:
    choice = np.unravel_index(flat_index, _shape(problem))
    return problem.point_from_choice([int(c) for c in choice])
