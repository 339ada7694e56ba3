"""Phase-2 searches: from a sensitivity table and cost models to a trade-off curve and one assignment."""

from __future__ import annotations

from collections.abc import Callable

from mixq.errors import ConfigError
from mixq.solvers.base import AllocationProblem, CurvePoint, ParetoCurve, Solver
from mixq.solvers.exhaustive import ExhaustiveSolver
from mixq.solvers.greedy import GreedySolver
from mixq.solvers.ilp import IlpConfig, IlpSolver
from mixq.solvers.select import QualitySelection, feasible_indices, select_by_cost, select_by_quality

#: Solver factories by name; each builds the solver with its default settings.
SOLVERS: dict[str, Callable[[], Solver]] = {
    "greedy": GreedySolver,
    "ilp": IlpSolver,
    "exhaustive": ExhaustiveSolver,
}


def get_solver(name: str) -> Solver:
    """A solver by registry name.

    >>> get_solver("greedy").name
    'greedy'
    """
    try:
        factory = SOLVERS[name]
    except KeyError:
        raise ConfigError(f"unknown solver {name!r}; choose one of {', '.join(sorted(SOLVERS))}") from None
    return factory()


__all__ = [
    "SOLVERS",
    "AllocationProblem",
    "CurvePoint",
    "ExhaustiveSolver",
    "GreedySolver",
    "IlpConfig",
    "IlpSolver",
    "ParetoCurve",
    "QualitySelection",
    "Solver",
    "feasible_indices",
    "get_solver",
    "select_by_cost",
    "select_by_quality",
]
