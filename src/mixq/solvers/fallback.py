"""Accuracy-driven fallback, as Intel Neural Compressor and NNCF's accuracy-aware mode do it.

Start with every group at its cheapest candidate; restore groups to their best candidate in order
of sensitivity (phase 1's table: the noise a group adds at its cheapest candidate over its best)
until the measured quality meets the target. The restored set is always a prefix of the ranking,
so the search is a binary search over the prefix length: about log2(groups) real evaluations
instead of one per group, which is what the tools' one-at-a-time loops spend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mixq.core.budget import CostBudget, QualityTarget
from mixq.core.quality import Quality
from mixq.errors import ConfigError
from mixq.solvers.base import AllocationProblem, GroupOptions
from mixq.solvers.greedy import start_choice
from mixq.solvers.loop import Evaluations, Loop, LoopResult, curve_of
from mixq.solvers.select import _infeasible_quality, infeasible_cost_error


def cheapest_choice(option: GroupOptions, primary: str) -> int:
    """The cheapest candidate in the primary cost; among equals the least noisy, then the first."""
    costs = option.costs[primary]
    return min(range(len(costs)), key=lambda c: (costs[c], option.noise[c], c))


def ranking(problem: AllocationProblem) -> list[int]:
    """Group positions by the noise restoring them removes, largest first (ties: graph order)."""
    primary = problem.primary
    gains = []
    for position, option in enumerate(problem.options):
        low, high = cheapest_choice(option, primary), start_choice(option, primary)
        if low != high:
            gains.append((option.noise[low] - option.noise[high], position))
    return [position for _, position in sorted(gains, key=lambda g: (-g[0], g[1]))]


NEEDS_TARGET = ("--solver fallback restores groups until a measured quality target is met; give one, e.g. "
                '--budget "agreement>=0.99" (for cost budgets alone use greedy, ilp or evolution)')


def evaluation_bound(n_prefixes: int) -> int:
    """Most real evaluations the search makes over ``n_prefixes`` allowed prefixes."""
    return math.ceil(math.log2(max(n_prefixes, 1))) + 1


class FallbackSolver:
    """Binary search over how many of the most sensitive groups to restore."""

    name = "fallback"
    #: Driven by a measured quality target: without one there is nothing to restore groups for (the
    #: preflight asks this before phase 1, see :func:`mixq.preflight.check_solver`).
    needs_quality_target = True

    def search(
        self, problem: AllocationProblem, budgets: Sequence[CostBudget], target: QualityTarget | None, loop: Loop
    ) -> LoopResult:
        """The fewest restored groups whose measured quality meets ``target`` under ``budgets``.

        Raises:
            ConfigError: no quality target (fallback is driven by one).
            InfeasibleBudgetError: the budgets allow no prefix, or restoring every allowed group
                still misses the target (with what was reached).
        """
        if target is None:
            raise ConfigError(NEEDS_TARGET)
        primary = problem.primary
        order = ranking(problem)
        choice = [cheapest_choice(option, primary) for option in problem.options]
        prefixes = [problem.point_from_choice(choice)]
        for position in order:
            choice[position] = start_choice(problem.options[position], primary)
            prefixes.append(problem.point_from_choice(choice))
        # curve.json lists them most expensive first (costs rise strictly with k): index = len(order) - k
        curve = curve_of(problem, prefixes)
        allowed = [k for k, point in enumerate(prefixes) if problem.meets(point.costs, budgets)]
        if not allowed:
            raise infeasible_cost_error(problem, budgets, curve)
        evaluations = Evaluations(loop, target)
        measured: dict[int, Quality] = {}

        def meets(position: int) -> bool:
            k = allowed[position]
            measured[k] = evaluations(prefixes[k].assignment)
            return evaluations.met(measured[k])

        low, high = -1, len(allowed) - 1  # allowed[high] is assumed to meet the target until measured
        while high - low > 1:
            middle = (low + high) // 2
            if meets(middle):
                high = middle
            else:
                low = middle
        k = allowed[high]
        if k not in measured and not meets(high):
            by_curve_index = {len(order) - j: q for j, q in measured.items()}
            raise _infeasible_quality(curve, target, len(order) - k, by_curve_index, loop.float_quality)
        restored = [problem.options[p].group for p in order[:k]]
        details = {
            "evaluations": evaluations.count,
            "evaluation_bound": evaluation_bound(len(allowed)),
            "restored": restored,
            "ranked_groups": len(order),
        }
        return LoopResult(prefixes[k], curve, measured[k], evaluations.records(curve), details)
