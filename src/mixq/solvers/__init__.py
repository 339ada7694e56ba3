"""Phase-2 searches: from a sensitivity table and cost models to a trade-off curve and one assignment.

Curve solvers (greedy, ilp, exhaustive) only read the table; closed-loop solvers (iqp, fallback,
evolution) also measure: pairs of groups, or whole configurations (see :mod:`mixq.solvers.loop`).
"""

from __future__ import annotations

from collections.abc import Callable

from mixq.core.restrictions import Restriction, apply_restrictions, parse_restrictions
from mixq.errors import ConfigError
from mixq.solvers.base import AllocationProblem, CurvePoint, ParetoCurve, Solver
from mixq.solvers.evolution import EvolutionConfig, EvolutionSolver
from mixq.solvers.exhaustive import ExhaustiveSolver
from mixq.solvers.fallback import FallbackSolver
from mixq.solvers.greedy import GreedySolver
from mixq.solvers.ilp import IlpConfig, IlpSolver
from mixq.solvers.iqp import IqpConfig, IqpSolver
from mixq.solvers.loop import ClosedLoopSolver, Loop, LoopResult, SolverSettings
from mixq.solvers.select import QualitySelection, feasible_indices, select_by_cost, select_by_quality


def _ilp(settings: SolverSettings) -> IlpConfig:
    return IlpConfig(time_limit_s=settings.time_limit_s)


#: Solver factories by name; each builds the solver from the settings it uses.
SOLVERS: dict[str, Callable[[SolverSettings], Solver | ClosedLoopSolver]] = {
    "greedy": lambda settings: GreedySolver(),
    "ilp": lambda settings: IlpSolver(_ilp(settings)),
    "iqp": lambda settings: IqpSolver(IqpConfig(top_k=settings.pair_groups, ilp=_ilp(settings))),
    "fallback": lambda settings: FallbackSolver(),
    "evolution": lambda settings: EvolutionSolver(
        EvolutionConfig(max_evaluations=settings.max_evaluations, seed=settings.seed, ilp=_ilp(settings))
    ),
    "exhaustive": lambda settings: ExhaustiveSolver(),
}


def get_solver(name: str, settings: SolverSettings | None = None) -> Solver | ClosedLoopSolver:
    """A solver by registry name.

    >>> get_solver("greedy").name
    'greedy'
    """
    try:
        factory = SOLVERS[name]
    except KeyError:
        raise ConfigError(f"unknown solver {name!r}; choose one of {', '.join(SOLVERS)}") from None
    return factory(settings or SolverSettings())


__all__ = [
    "SOLVERS",
    "AllocationProblem",
    "ClosedLoopSolver",
    "CurvePoint",
    "EvolutionConfig",
    "EvolutionSolver",
    "ExhaustiveSolver",
    "FallbackSolver",
    "GreedySolver",
    "IlpConfig",
    "IlpSolver",
    "IqpConfig",
    "IqpSolver",
    "Loop",
    "LoopResult",
    "ParetoCurve",
    "QualitySelection",
    "Restriction",
    "Solver",
    "SolverSettings",
    "apply_restrictions",
    "feasible_indices",
    "get_solver",
    "parse_restrictions",
    "select_by_cost",
    "select_by_quality",
]
