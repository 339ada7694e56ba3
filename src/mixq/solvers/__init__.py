"""Phase-2 searches: from a sensitivity table and cost models to a trade-off curve and one assignment.

Curve solvers (greedy, ilp, exhaustive) only read the table; closed-loop solvers (iqp, fallback,
evolution) also measure: pairs of groups, or whole configurations (see :mod:`mixq.solvers.loop`).
"""

from __future__ import annotations

from mixq.core.restrictions import Restriction, apply_restrictions, parse_restrictions
from mixq.solvers.base import AllocationProblem, CurvePoint, ParetoCurve, Solver
from mixq.solvers.evolution import EvolutionConfig, EvolutionSolver
from mixq.solvers.exhaustive import ExhaustiveSolver
from mixq.solvers.fallback import FallbackSolver
from mixq.solvers.greedy import GreedyConfig, GreedySolver
from mixq.solvers.ilp import IlpConfig, IlpSolver
from mixq.solvers.iqp import IqpConfig, IqpSolver
from mixq.solvers.loop import ClosedLoopSolver, Loop, LoopResult
from mixq.solvers.registry import COMPARED, SOLVERS, get_solver, solver_config
from mixq.solvers.select import QualitySelection, feasible_indices, select_by_cost, select_by_quality
from mixq.solvers.settings import SearchSettings

__all__ = [
    "COMPARED",
    "SOLVERS",
    "AllocationProblem",
    "ClosedLoopSolver",
    "CurvePoint",
    "EvolutionConfig",
    "EvolutionSolver",
    "ExhaustiveSolver",
    "FallbackSolver",
    "GreedyConfig",
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
    "SearchSettings",
    "Solver",
    "apply_restrictions",
    "feasible_indices",
    "get_solver",
    "parse_restrictions",
    "select_by_cost",
    "select_by_quality",
    "solver_config",
]
