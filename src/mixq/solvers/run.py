"""Phase 2 as ``search`` runs it: build the problem (hardware kernels, restrictions), then one strategy.

The one branch point: a plain solver gives a curve and a point is selected on it (by the cost
budgets, or by binary search on measured quality); a closed-loop solver measures as it searches.
Either way ``search`` gets a :class:`~mixq.solvers.loop.LoopResult`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from mixq.core.budget import CostBudget, MemoryBudget, QualityTarget
from mixq.core.graph import QuantGraph
from mixq.core.restrictions import Restriction, apply_restrictions
from mixq.core.tables import SensitivityTable
from mixq.cost import default_cost_models
from mixq.cost.base import CostModel
from mixq.cost.latency import NO_SOURCE
from mixq.errors import ConfigError
from mixq.hardware import load_hardware
from mixq.solvers.base import AllocationProblem, Solver
from mixq.solvers.loop import ClosedLoopSolver, Evaluations, Loop, LoopResult, with_point
from mixq.solvers.memory import apply_memory_budgets
from mixq.solvers.select import feasible_indices, select_by_cost, select_by_quality

T = TypeVar("T")
R = TypeVar("R")


def build_problem(
    graph: QuantGraph,
    sensitivity: SensitivityTable,
    cost: str = "bops",
    restrictions: Sequence[Restriction] = (),
    hardware: str | Path | None = None,
    memory: Sequence[MemoryBudget] = (),
    extra_costs: Mapping[str, CostModel] | None = None,
) -> AllocationProblem:
    """The allocation problem with candidates narrowed to the target's kernels and the restrictions.

    ``extra_costs``: cost models measured for this model (e.g. latency timed in ONNX Runtime); a
    hardware description's model of the same name takes precedence.

    Raises:
        ConfigError: a group is left without candidates, a restriction matches nothing, or ``cost``
            is a cost model nobody defined.
    """
    costs: dict[str, CostModel] = default_cost_models()
    costs.update(extra_costs or {})
    if hardware is not None:
        target = load_hardware(hardware)
        graph = target.narrow(graph)
        costs.update(target.cost_models())
    graph = apply_memory_budgets(apply_restrictions(graph, restrictions), memory)
    if cost not in costs:
        raise ConfigError(
            f"--cost {cost} is not defined here (known: {', '.join(costs)}); {NO_SOURCE}"
        )
    return AllocationProblem(graph, sensitivity, costs, cost)


def allocate(
    problem: AllocationProblem,
    solver: Solver | ClosedLoopSolver,
    budgets: Sequence[CostBudget],
    target: QualityTarget | None,
    loop: Loop,
) -> LoopResult:
    """Run one phase-2 strategy: closed loop, or curve-then-select."""
    if isinstance(solver, ClosedLoopSolver):
        return solver.search(problem, budgets, target, loop)
    if target is None:
        point = solver.solve(problem, budgets)
        return LoopResult(point, with_point(solver.curve(problem), point))
    # a curve that honours every budget when the solver can make one (the ILP), else the whole walk
    curve = solver.curve(problem, budgets)
    allowed = feasible_indices(curve, problem, budgets)
    if not allowed:
        select_by_cost(curve, problem, budgets)  # raises with the minimum reachable
    evaluations = Evaluations(loop, target)
    selection = select_by_quality(curve, target, evaluations, loop.float_quality, candidates=allowed)
    return LoopResult(selection.point, curve, selection.quality, evaluations.records(curve),
                      {"evaluations": evaluations.count})


def timed(call: Callable[[T], R], timings: dict[str, float], key: str) -> Callable[[T], R]:
    """``call`` adding its wall time to ``timings[key]`` (so phase 2, evaluation and pair time separate)."""

    def run(argument: T) -> R:
        started = time.perf_counter()
        try:
            return call(argument)
        finally:
            timings[key] = timings.get(key, 0.0) + time.perf_counter() - started

    return run
