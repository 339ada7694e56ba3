"""Pandey et al.'s phase 2 (sections 3.3-3.4): walk down from the best configuration, one group at a time.

Every group starts at its best candidate (least noise: the highest precision). Each step moves the one group whose move to a
cheaper candidate adds the least predicted noise per unit of cost saved; whole quantizer groups
move, so shared quantizers never disagree. Every step is a point of the trade-off curve, and a cost
budget or a measured quality target then picks one point of it.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from mixq.core.budget import CostBudget
from mixq.solvers.base import AllocationProblem, CurvePoint, GroupOptions, ParetoCurve
from mixq.solvers.select import select_by_cost

# (noise added per cost saved, -saving, group position, candidate): tuple order is the tie-break
_Move = tuple[float, float, int, int]


def start_choice(option: GroupOptions, primary: str) -> int:
    """The least noisy candidate; among equals the most expensive in the primary cost, then the first.

    Under BOPs or size this is the highest precision, the paper's start. Under a measured cost it need
    not be the most expensive one: an int8 kernel can be slower than float on a CPU without it, and a
    candidate both costlier and noisier than another is never worth starting from (or moving to).
    """
    costs = option.costs[primary]
    return min(range(len(costs)), key=lambda c: (option.noise[c], -costs[c], c))


def best_move(option: GroupOptions, primary: str, current: int, position: int) -> _Move | None:
    """The group's cheapest-in-noise move to a strictly cheaper candidate (None at the bottom).

    Moves that reduce noise rank first (negative rate); among equal rates the larger saving wins.
    """
    costs, noise = option.costs[primary], option.noise
    best: _Move | None = None
    for candidate, cost in enumerate(costs):
        saving = costs[current] - cost
        if saving <= 0:
            continue
        move = ((noise[candidate] - noise[current]) / saving, -saving, position, candidate)
        if best is None or move < best:
            best = move
    return best


class GreedySolver:
    """Greedy bit-drop by sensitivity per unit of cost (Pandey et al., phase 2).

    A step changes only the moved group's best move, so each group's best move waits in a heap and
    only the popped group is re-scored: choosing costs O(candidates + log groups) per step, and
    recording the step's point O(groups).
    """

    name = "greedy"

    def curve(self, problem: AllocationProblem, budgets: Sequence[CostBudget] = ()) -> ParetoCurve:
        """Every step of the walk from each group's most to its least expensive candidate.

        ``budgets`` do not shorten the walk: a point is selected on it afterwards.
        """
        primary = problem.primary
        options = problem.options
        choice = [start_choice(option, primary) for option in options]
        heap: list[_Move] = []
        for position, option in enumerate(options):
            move = best_move(option, primary, choice[position], position)
            if move is not None:
                heap.append(move)
        heapq.heapify(heap)
        points = [problem.point_from_choice(choice)]
        while heap:
            _, _, position, candidate = heapq.heappop(heap)
            option = options[position]
            step = (option.group, str(option.precisions[choice[position]]), str(option.precisions[candidate]))
            choice[position] = candidate
            points.append(problem.point_from_choice(choice, step))
            move = best_move(option, primary, candidate, position)
            if move is not None:
                heapq.heappush(heap, move)
        return ParetoCurve(tuple(points), primary)

    def solve(self, problem: AllocationProblem, budgets: Sequence[CostBudget]) -> CurvePoint:
        """The first curve point, from the expensive end, that meets every budget."""
        return select_by_cost(self.curve(problem), problem, budgets)
