"""Cross-layer allocation (CLADO, Deng et al. 2023): the additive model plus measured pair interactions.

Predicted noise becomes quadratic in the one-hot choice ``x``:

    noise(x) = sum_ia n_ia x_ia + sum_{ia<jb} I(i,a,j,b) x_ia x_jb

(``n`` from phase 1's table, ``I`` from :mod:`mixq.sensitivity.pairs`). It is minimized exactly
under every cost budget by linearizing each product with a variable ``y`` in [0, 1]: for I > 0 the
objective pushes ``y`` down, so ``y >= x_ia + x_jb - 1`` suffices; for I < 0 it pushes ``y`` up, so
``y <= x_ia`` and ``y <= x_jb`` suffice. With binary ``x`` either way ``y = x_ia x_jb`` at the optimum,
so the MILP (HiGHS, with a time limit) is the IQP, not a relaxation of it. Unmeasured pairs count 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from mixq.core.assignment import Assignment
from mixq.core.budget import CostBudget, CostUnit, QualityTarget
from mixq.core.tables import nsr_to_db
from mixq.errors import ConfigError
from mixq.sensitivity.pairs import DEFAULT_TOP_K, Pair, select_groups
from mixq.solvers.base import AllocationProblem, CurvePoint, ParetoCurve
from mixq.solvers.ilp import ExtraColumns, IlpConfig, IlpSolver, _program
from mixq.solvers.loop import Evaluations, Loop, LoopResult, key_of, with_point
from mixq.solvers.select import infeasible_cost_error, select_by_quality
from mixq.solvers.settings import SearchSettings


@dataclass(frozen=True)
class IqpConfig:
    """Settings of the cross-layer solver.

    Attributes:
        top_k: how many of the most sensitive groups are paired (pairs grow as k^2).
        ilp: time limit (per solve), sweep size and gap of the underlying MILP.
    """

    top_k: int = DEFAULT_TOP_K
    ilp: IlpConfig = field(default_factory=IlpConfig)

    def __post_init__(self) -> None:
        if self.top_k < 2:
            raise ConfigError(f"the IQP pairs at least 2 groups, got top_k={self.top_k}")
        if self.ilp.max_float_regions is not None:
            raise ConfigError("--solver iqp does not bound float regions; drop ilp.max_float_regions or use "
                              "--solver ilp (which does)")

    @classmethod
    def from_search(cls, settings: SearchSettings) -> IqpConfig:
        """``--pair-groups`` and the MILP's ``--time-limit``."""
        return cls(top_k=settings.pair_groups, ilp=IlpConfig.from_search(settings))


def quadratic_noise(problem: AllocationProblem, terms: Mapping[Pair, float], assignment: Assignment) -> float:
    """The table's additive noise plus every interaction whose two choices the assignment makes."""
    extra = math.fsum(
        value for (gi, a, gj, b), value in terms.items()
        if assignment.precisions.get(gi) == a and assignment.precisions.get(gj) == b
    )
    return problem.predicted_noise(assignment) + extra


def _columns(problem: AllocationProblem, terms: Mapping[Pair, float], scale: float) -> ExtraColumns | None:
    """One product variable per non-zero interaction whose choices the (narrowed) problem still has."""
    from scipy.sparse import csr_matrix

    index: dict[tuple[str, object], int] = {}
    start = 0
    for option in problem.options:
        for c, precision in enumerate(option.precisions):
            index[(option.group, precision)] = start + c
        start += len(option.precisions)
    n = start
    objective: list[float] = []
    upper: list[float] = []
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for (gi, a, gj, b), value in terms.items():
        xa, xb = index.get((gi, a)), index.get((gj, b))
        if xa is None or xb is None or value == 0 or gi == gj:
            continue
        y = n + len(objective)
        objective.append(value * scale)
        if value > 0:  # y >= xa + xb - 1
            rows += [len(upper)] * 3
            cols += [xa, xb, y]
            vals += [1.0, 1.0, -1.0]
            upper.append(1.0)
        else:  # y <= xa, y <= xb
            for x in (xa, xb):
                rows += [len(upper)] * 2
                cols += [y, x]
                vals += [1.0, -1.0]
                upper.append(0.0)
    if not objective:
        return None
    matrix = csr_matrix((vals, (rows, cols)), shape=(len(upper), n + len(objective)))
    return ExtraColumns(np.array(objective), matrix, np.full(len(upper), -np.inf), np.array(upper))


def refuse_pairwise(problem: AllocationProblem) -> None:
    """The IQP's product variables are for noise interactions; it does not also linearise edge costs."""
    if problem.edges:
        names = sorted({name for edge in problem.edges for name, m in edge.costs.items() if any(map(any, m))})
        raise ConfigError(
            f"--solver iqp cannot optimise costs charged between groups ({', '.join(names) or 'pairwise costs'}, "
            "e.g. latency measured in a runtime); use --solver ilp, which models them exactly, or greedy"
        )


def _db(value: float) -> float | None:
    return round(value, 4) if math.isfinite(value) else None


class IqpSolver:
    """Minimum quadratic (cross-layer) noise under every cost budget."""

    name = "iqp"

    def __init__(self, config: IqpConfig | None = None) -> None:
        self.config = config or IqpConfig()
        self.ilp = IlpSolver(self.config.ilp)
        self.all_optimal = True  # every MILP since the last search was proved optimal (no time-limit stop)

    # -- given the interactions ----------------------------------------------------------------
    def solve_quadratic(
        self, problem: AllocationProblem, terms: Mapping[Pair, float], budgets: Sequence[CostBudget]
    ) -> CurvePoint:
        """The least quadratic noise meeting every budget; its ``predicted_sqnr_db`` is the quadratic one.

        Raises:
            InfeasibleBudgetError: with the minimum reachable cost of the budget that fails.
        """
        limits = self.ilp._limits(problem, budgets)  # raises clearly when the budgets cannot be met
        point = self._minimize(problem, terms, limits)
        if point is None:
            raise infeasible_cost_error(problem, budgets)
        return point

    def curve_quadratic(
        self, problem: AllocationProblem, terms: Mapping[Pair, float], budgets: Sequence[CostBudget] = ()
    ) -> ParetoCurve:
        """Quadratic optima for primary-cost limits swept as the ILP's curve is (all meeting ``budgets``)."""
        limits = self.ilp._limits(problem, budgets)
        found: dict[tuple[tuple[str, str], ...], CurvePoint] = {}
        for limit in self.ilp._sweep(problem, budgets):
            point = self._minimize(problem, terms, [*limits, (problem.primary, float(limit))])
            if point is not None:
                found.setdefault(key_of(point.assignment), point)
        return self.ilp._front(problem, list(found.values()), budgets)

    def _minimize(
        self, problem: AllocationProblem, terms: Mapping[Pair, float], limits: Sequence[tuple[str, float]]
    ) -> CurvePoint | None:
        refuse_pairwise(problem)
        program = _program(problem)
        extra = _columns(problem, terms, program.objective_scale)
        choice = self.ilp._minimize(problem, program, program.objective, limits, extra)
        self.all_optimal = self.all_optimal and self.ilp.optimal
        if choice is None:
            return None
        point = problem.point_from_choice(choice)
        return replace(point, predicted_sqnr_db=nsr_to_db(quadratic_noise(problem, terms, point.assignment)))

    # -- closed loop: measure the pairs, then solve ----------------------------------------------
    def search(
        self, problem: AllocationProblem, budgets: Sequence[CostBudget], target: QualityTarget | None, loop: Loop
    ) -> LoopResult:
        """Measure the top-k groups' pairs, minimize the quadratic noise, and compare with the ILP.

        Without a quality target the budgets decide; with one, the IQP's curve (under the budgets)
        is binary-searched with real evaluations, as for the other curve solvers.
        """
        refuse_pairwise(problem)
        if loop.measure_pairs is None:
            raise ConfigError("--solver iqp measures pairs of groups on the model; it needs a simulation to run")
        groups = select_groups(problem.graph, problem.sensitivity, self.config.top_k)
        if len(groups) < 2:
            raise ConfigError("--solver iqp needs at least two groups with more than one candidate; use --solver ilp")
        pairs = loop.measure_pairs(groups)
        terms = pairs.terms()
        self.all_optimal = True
        curve = self.curve_quadratic(problem, terms, budgets)
        evaluations = Evaluations(loop, target)
        quality = None
        if target is None:
            point = self.solve_quadratic(problem, terms, budgets)
            curve = with_point(curve, point)
        else:
            selection = select_by_quality(curve, target, evaluations, loop.float_quality)
            point, quality = selection.point, selection.quality
        # the ILP's answer to the same question: the same budgets, or (with a target) the chosen cost
        same = budgets if target is None else [*budgets, CostBudget(problem.primary, point.costs[problem.primary],
                                                                    CostUnit.ABSOLUTE)]
        ilp_point = self.ilp.solve(problem, same)
        details = {
            "groups": list(groups),
            "pairs_measured": len(pairs.joint),
            "pair_runs": pairs.runs,
            "pair_seconds": round(pairs.seconds, 3),
            "interaction_ratio": pairs.relative_size(),
            "differs_from_ilp": key_of(ilp_point.assignment) != key_of(point.assignment),
            "ilp_assignment_changes": {
                g: [str(ilp_point.assignment[g]), str(p)] for g, p in point.assignment.items()
                if ilp_point.assignment[g] != p
            },
            "quadratic_sqnr_db": {"iqp": _db(point.predicted_sqnr_db),
                                  "ilp": _db(nsr_to_db(quadratic_noise(problem, terms, ilp_point.assignment)))},
            "additive_sqnr_db": {"iqp": _db(problem.predicted_sqnr_db(point.assignment)),
                                 "ilp": _db(ilp_point.predicted_sqnr_db)},
            "proved_optimal": self.all_optimal,
            "evaluations": evaluations.count,
        }
        return LoopResult(point, curve, quality, evaluations.records(curve), details)
