"""Pandey et al.'s phase 2 (sections 3.3-3.4): walk down from the best configuration, one group at a time.

Every group starts at its best candidate (least noise: the highest precision). Each step moves the one group whose move to a
cheaper candidate adds the least predicted noise per unit of cost saved; whole quantizer groups
move, so shared quantizers never disagree. Every step is a point of the trade-off curve, and a cost
budget or a measured quality target then picks one point of it.

When a cost is charged on the edges between groups (latency measured in a runtime: an int8 group next
to a float one pays a quantize/dequantize and a layout change), a move's saving includes how its edges'
costs change given the neighbours' current choices, and a step re-scores the moved groups' neighbours.
Such costs can make every single flip cost more than it saves (each new int8 island pays two
transitions) while flipping a whole float run saves; so the walk also weighs *region moves*: the
connected groups (through edges) that share the seed's precision and can all take the target, up to
``max_region`` of them, moved as one step and ranked by the same noise added per cost saved.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from mixq.core.budget import CostBudget
from mixq.core.precision import Precision
from mixq.errors import ConfigError
from mixq.solvers.base import AllocationProblem, CurvePoint, GroupOptions, ParetoCurve, check_max_float_regions
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


@dataclass(frozen=True)
class GreedyConfig:
    """Settings of the greedy walk (they matter only with edge costs or a float-region bound).

    Attributes:
        max_region: most groups a region move flips at once (1: single-group moves only).
        max_float_regions: never step to an assignment with more float (fp16/fp32) regions than this,
            regions being connected through the problem's edges; a start with more is first repaired
            (float groups lowered, least added noise first, preferring moves that do not split a region),
            and the curve starts there. None: no bound.
    """

    max_region: int = 16
    max_float_regions: int | None = None

    def __post_init__(self) -> None:
        if self.max_region < 1:
            raise ConfigError(f"max_region must be at least 1, got {self.max_region}")
        check_max_float_regions(self.max_float_regions)


class GreedySolver:
    """Greedy bit-drop by sensitivity per unit of cost (Pandey et al., phase 2).

    A step changes only the moved group's best move, so each group's best move waits in a heap and
    only the popped group is re-scored: choosing costs O(candidates + log groups) per step, and
    recording the step's point O(groups). With edge costs the moved groups' neighbours (and the
    regions touching them) are re-scored too.
    """

    name = "greedy"

    def __init__(self, config: GreedyConfig | None = None) -> None:
        self.config = config or GreedyConfig()

    def curve(self, problem: AllocationProblem, budgets: Sequence[CostBudget] = ()) -> ParetoCurve:
        """Every step of the walk from each group's most to its least expensive candidate.

        ``budgets`` do not shorten the walk: a point is selected on it afterwards.
        """
        if problem.edges or self.config.max_float_regions is not None:
            return _Walk(problem, self.config).curve()
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


# (noise added per cost saved, -saving, seed position, seed candidate, members, their candidates, version)
_Entry = tuple[float, float, int, int, tuple[int, ...], tuple[int, ...], int]


class _Walk:
    """The walk with edge costs and region moves (and the float-region bound).

    Heap entries carry the seed group's version when scored; a step bumps and re-scores every group whose
    best move it may change: the moved groups, their neighbours, and the groups from which a region (same
    precision, connected, at most ``max_region`` hops) reaches them. A popped entry is also re-scored
    before it is taken, so a move is never taken on a stale score.
    """

    def __init__(self, problem: AllocationProblem, config: GreedyConfig) -> None:
        self.problem = problem
        self.primary = problem.primary
        self.options = problem.options
        self.max_region = config.max_region
        self.bound = config.max_float_regions
        self.choice = [start_choice(option, self.primary) for option in self.options]
        neighbours: list[set[int]] = [set() for _ in self.options]
        for edge in problem.edges:
            neighbours[edge.producer].add(edge.consumer)
            neighbours[edge.consumer].add(edge.producer)
        self.neighbours = [tuple(sorted(n)) for n in neighbours]
        self.version = [0] * len(self.options)
        # position -> (candidate, members) of its moves that would exceed the float-region bound
        self.blocked: dict[int, set[tuple[int, tuple[int, ...]]]] = {}
        self.heap: list[_Entry] = []

    def precision(self, position: int) -> Precision:
        return self.options[position].precisions[self.choice[position]]

    def curve(self) -> ParetoCurve:
        problem = self.problem
        if self.bound is not None:
            self._repair_start()
        for position in range(len(self.options)):
            self._push(position)
        points = [problem.point_from_choice(self.choice)]
        while self.heap:
            entry = heapq.heappop(self.heap)
            _, _, seed, candidate, members, targets, version = entry
            if version != self.version[seed]:
                continue
            fresh = self._score(seed)
            if fresh is None or fresh[:6] != entry[:6]:  # never take a stale score
                if fresh is not None:
                    heapq.heappush(self.heap, fresh)
                continue
            before = [self.choice[m] for m in members]
            floats_change = any(self.options[m].precisions[c].is_float != self.precision(m).is_float
                                for m, c in zip(members, targets))
            self._apply(members, targets)
            if self.bound is not None and floats_change and problem.float_regions(self.choice) > self.bound:
                self._apply(members, before)
                self.blocked.setdefault(seed, set()).add((candidate, members))
                self._push(seed)
                continue
            option = self.options[seed]
            step = (option.group, str(option.precisions[before[0]]), str(option.precisions[candidate]))
            region = tuple(self.options[m].group for m in members) if len(members) > 1 else ()
            points.append(problem.point_from_choice(self.choice, step, region))
            self._rescore(members, floats_change)
        return ParetoCurve(tuple(points), self.primary)

    def _apply(self, members: Sequence[int], targets: Sequence[int]) -> None:
        for m, c in zip(members, targets):
            self.choice[m] = c

    def _push(self, position: int) -> None:
        self.version[position] += 1
        entry = self._score(position)
        if entry is not None:
            heapq.heappush(self.heap, entry)

    def _rescore(self, moved: Sequence[int], floats_changed: bool) -> None:
        """Re-score every group whose best move the step may have changed."""
        touched = set(moved)
        for m in moved:
            touched.update(self.neighbours[m])
        affected = set(touched)
        if self.max_region > 1:
            for start in touched:  # regions (same precision, connected) that reach the moved groups
                affected.update(self._same_precision(start, self.max_region - 1))
        if floats_changed and self.blocked:  # the float-region count may have changed: retry blocked moves
            affected.update(self.blocked)
            self.blocked.clear()
        for position in sorted(affected):
            self._push(position)

    def _same_precision(self, start: int, hops: int) -> set[int]:
        precision = self.precision(start)
        seen = {start}
        frontier = [start]
        for _ in range(hops):
            frontier = [v for u in frontier for v in self.neighbours[u] if v not in seen and self.precision(v) == precision]
            if not frontier:
                break
            seen.update(frontier)
        return seen

    def _region(self, seed: int, target: Precision) -> tuple[int, ...]:
        """Connected groups sharing the seed's precision that can all take ``target`` (seed first, BFS
        order, at most ``max_region``)."""
        precision = self.precision(seed)
        members = [seed]
        seen = {seed}
        queue = deque([seed])
        while queue and len(members) < self.max_region:
            for v in self.neighbours[queue.popleft()]:
                if v in seen:
                    continue
                seen.add(v)
                if self.precision(v) == precision and target in self.options[v].precisions:
                    members.append(v)
                    queue.append(v)
                    if len(members) >= self.max_region:
                        break
        return tuple(members)

    def _score(self, seed: int) -> _Entry | None:
        """The seed's best move (single or region) to a strictly cheaper configuration, or None."""
        option = self.options[seed]
        current = self.choice[seed]
        blocked = self.blocked.get(seed, set())
        best: _Entry | None = None
        for candidate, target in enumerate(option.precisions):
            if candidate == current:
                continue
            moves: list[tuple[int, ...]] = [(seed,)]
            if self.max_region > 1 and self.neighbours[seed]:
                region = self._region(seed, target)
                if len(region) > 1:
                    moves.append(region)
            for members in moves:
                if (candidate, members) in blocked:
                    continue
                targets = tuple(self.options[m].precisions.index(target) for m in members)
                change = dict(zip(members, targets))
                saving = -self.problem.move_delta(self.primary, self.choice, change)
                if saving <= 0:
                    continue
                noise = sum(self.options[m].noise[c] - self.options[m].noise[self.choice[m]] for m, c in change.items())
                entry = (noise / saving, -saving, seed, candidate, members, targets, self.version[seed])
                if best is None or entry < best:
                    best = entry
        return best

    def _repair_start(self) -> None:
        """Lower float groups until the start has at most ``max_float_regions`` regions: each step the move
        leaving the fewest regions, then adding the least noise (so region ends go before middles)."""
        assert self.bound is not None
        problem = self.problem
        regions = problem.float_regions(self.choice)
        while regions > self.bound:
            best: tuple[int, float, int, int] | None = None
            for position, option in enumerate(self.options):
                current = self.choice[position]
                if not option.precisions[current].is_float:
                    continue
                for candidate, precision in enumerate(option.precisions):
                    if precision.is_float:
                        continue
                    after = regions - 1 if self.bound == 0 else self._regions_with(position, candidate)
                    key = (after, option.noise[candidate] - option.noise[current], position, candidate)
                    if best is None or key < best:
                        best = key
            if best is None:
                raise ConfigError(
                    f"max_float_regions={self.bound} cannot be met: the groups that can only run in float form "
                    f"{regions} regions; raise the bound or give those groups an integer candidate"
                )
            regions, _, position, candidate = best
            self.choice[position] = candidate
            if self.bound == 0:
                regions = problem.float_regions(self.choice)

    def _regions_with(self, position: int, candidate: int) -> int:
        current = self.choice[position]
        self.choice[position] = candidate
        try:
            return self.problem.float_regions(self.choice)
        finally:
            self.choice[position] = current
