"""Exact allocation as a 0/1 program (HiGHS via ``scipy.optimize.milp``), with every cost budget at once.

One binary per (group, candidate) and one "exactly one candidate" row per group; minimize the
summed table noise subject to every budget. Unlike the greedy walk it meets several budgets at
once (BOPs and size) and cannot be trapped by a locally good move; it is the same additive model,
so it is exact only with respect to the prediction.

Edge costs (a :class:`~mixq.cost.pairwise.PairwiseCost`, e.g. latency measured in a runtime) are
linearised without big-M: for each edge ``e = (a, b)`` and candidate pair ``(p, q)`` a continuous
``y[e,p,q]`` in [0, 1] with the marginal rows ``sum_q y[e,p,q] = x[a,p]`` and ``sum_p y[e,p,q] = x[b,q]``.
With binary ``x`` the only non-negative ``y`` meeting them is ``x[a,p] x[b,q]``, so every budget row
that includes ``cost[e,p,q] y[e,p,q]`` is exact for edge costs of any sign.

``max_float_regions`` bounds how many float islands the plan has: ``f_g`` (the sum of ``g``'s float
candidates' binaries) is 1 when ``g`` runs in float; a start indicator ``s_g >= f_g - sum_p z[p,g]`` with
``z[p,g] <= f_p`` and ``z[p,g] <= f_g`` over ``g``'s producers (``p`` with an edge ``p -> g``) is forced
to 1 exactly when ``g`` is float and no producer is, and ``sum_g s_g <= R``. On a DAG with joins this
counts region *starts*, which can exceed the connected regions (two float branches that merge are one
region with two starts), so the bound is then conservative: it never admits more regions than ``R``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mixq.core.budget import CostBudget
from mixq.errors import ConfigError, InfeasibleBudgetError, MixqError
from mixq.solvers.base import AllocationProblem, CurvePoint, ParetoCurve, check_max_float_regions
from mixq.solvers.curve import COST_RTOL, within
from mixq.solvers.ilp_links import Links, edge_links, region_links
from mixq.solvers.pareto import front_indices
from mixq.solvers.select import format_cost, in_budget_unit, infeasible_cost_error
from mixq.solvers.settings import SearchSettings

logger = logging.getLogger(__name__)

#: HiGHS stops at an absolute gap of 1e-6 (not settable through scipy), so the largest objective
#: coefficient is scaled to this: differences down to 1e-9 of the noisiest move still count.
OBJECTIVE_SCALE = 1e3
#: How often a solution that rounding pushed over a budget is re-solved with a tightened limit.
MAX_RETRIES = 3


@dataclass(frozen=True)
class IlpConfig:
    """Settings of the ILP solver.

    Attributes:
        time_limit_s: wall-time limit of each HiGHS solve (a curve runs ``curve_points`` of them); the
            best solution found by then is used.
        curve_points: primary-cost limits swept, evenly spaced from cheapest to most expensive.
        mip_rel_gap: relative optimality gap at which HiGHS may stop.
        max_float_regions: at most this many float (fp16/fp32) regions, counted as region starts along
            the problem's edges (see the module docstring); None: no bound.
    """

    time_limit_s: float = 60.0
    curve_points: int = 30
    mip_rel_gap: float = 1e-9
    max_float_regions: int | None = None

    def __post_init__(self) -> None:
        if not self.time_limit_s > 0:
            raise ConfigError(f"time_limit_s must be positive, got {self.time_limit_s}")
        if self.curve_points < 2:
            raise ConfigError(f"curve_points must be at least 2, got {self.curve_points}")
        if not 0 <= self.mip_rel_gap < 1:
            raise ConfigError(f"mip_rel_gap must be in [0, 1), got {self.mip_rel_gap}")
        check_max_float_regions(self.max_float_regions)

    @classmethod
    def from_search(cls, settings: SearchSettings) -> IlpConfig:
        """``--time-limit``; the sweep and gap keep their defaults."""
        return cls(time_limit_s=settings.time_limit_s)


@dataclass(frozen=True)
class _Program:
    """The matrices of one problem; budgets change only right-hand sides.

    Columns are the binaries (one per group and candidate), then ``continuous`` variables in [0, 1]
    (edge products, float-region indicators). Every row and the objective are shifted by each group's
    (and edge's) minimum (a constant, since exactly one candidate is taken) and divided by their largest
    entry, so values from 1e-8 to 1 keep their differences within HiGHS's tolerances.
    """

    sizes: tuple[int, ...]
    objective: np.ndarray  # over every column (zero on the continuous ones)
    rows: Mapping[str, np.ndarray]  # per cost: excess over the group minimum, scaled to max 1
    offsets: Mapping[str, float]  # per cost: fixed part + sum of group minima
    scales: Mapping[str, float]  # per cost: what the row was divided by
    objective_scale: float = 1.0  # what noise was multiplied by (extra objective terms must be too)
    continuous: int = 0  # columns after the binaries
    links: Any = None  # rows over every column tying the continuous ones to the binaries
    link_lower: np.ndarray | None = None
    link_upper: np.ndarray | None = None


@dataclass(frozen=True)
class ExtraColumns:
    """Continuous variables in [0, 1] appended after the binaries, with their own rows (e.g. the
    product variables that linearize a quadratic objective, :mod:`mixq.solvers.iqp`).

    Attributes:
        objective: coefficient of each extra variable, on the program's objective scale.
        matrix: rows over ``[binaries, extras]``.
        lower, upper: bounds of those rows.
    """

    objective: np.ndarray
    matrix: Any
    lower: np.ndarray
    upper: np.ndarray


def _program(problem: AllocationProblem, max_float_regions: int | None = None) -> _Program:
    options = problem.options
    sizes = tuple(len(o.precisions) for o in options)
    n = sum(sizes)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
    noise = np.concatenate([np.asarray(o.noise) - min(o.noise) for o in options])
    objective_scale = OBJECTIVE_SCALE / noise.max() if noise.max() > 0 else 1.0
    edge_blocks = [len(options[e.producer].precisions) * len(options[e.consumer].precisions) for e in problem.edges]
    links = Links(n + sum(edge_blocks))
    edge_links(problem, starts, links)
    if max_float_regions is not None:
        region_links(problem, starts, links, max_float_regions)
    total = links.columns
    objective = np.zeros(total)
    objective[:n] = noise * objective_scale
    rows: dict[str, np.ndarray] = {}
    scales: dict[str, float] = {}
    for name in problem.costs:
        excess = np.zeros(total)
        excess[:n] = np.concatenate([np.asarray(o.costs[name]) - min(o.costs[name]) for o in options])
        column = n
        for edge, block in zip(problem.edges, edge_blocks):
            matrix = np.asarray(edge.costs[name], dtype=np.float64)
            excess[column : column + block] = (matrix - matrix.min()).ravel()
            column += block
        scales[name] = float(excess.max()) if excess.max() > 0 else 1.0
        rows[name] = excess / scales[name]
    offsets = {name: problem.min_cost(name) for name in problem.costs}  # the same minima, as a bound
    matrix, lower, upper = links.build()
    return _Program(sizes, objective, rows, offsets, scales, objective_scale, total - n, matrix, lower, upper)


class IlpSolver:
    """Minimum predicted noise under any number of cost budgets, solved exactly by HiGHS."""

    name = "ilp"

    def __init__(self, config: IlpConfig | None = None) -> None:
        self.config = config or IlpConfig()
        self.optimal = True  # whether the last solve was proved optimal (False: stopped at the time limit)

    def solve(self, problem: AllocationProblem, budgets: Sequence[CostBudget]) -> CurvePoint:
        """The least predicted noise meeting every budget.

        Raises:
            InfeasibleBudgetError: with the minimum reachable cost of the budget that fails.
        """
        for budget in budgets:
            if not within(problem.min_cost(budget.cost), problem.limit(budget)):
                raise infeasible_cost_error(problem, [budget])
        program = self._program(problem)
        self._check_regions(problem, program)
        limits = [(b.cost, problem.limit(b)) for b in budgets]
        choice = self._minimize(problem, program, program.objective, limits)
        if choice is None:
            raise self._jointly_infeasible(problem, program, budgets)
        return problem.point_from_choice(choice)

    def curve(self, problem: AllocationProblem, budgets: Sequence[CostBudget] = ()) -> ParetoCurve:
        """Non-dominated optima for primary-cost limits swept evenly from cheapest to most expensive.

        With ``budgets``, every point meets them (the sweep stops at a primary budget), so a quality
        target can be searched along a curve that honours several budgets at once.
        """
        program = self._program(problem)
        self._check_regions(problem, program)
        limits = self._limits(problem, budgets)
        found: dict[tuple[int, ...], CurvePoint] = {}
        for limit in self._sweep(problem, budgets, program, limits):
            choice = self._minimize(problem, program, program.objective, [*limits, (problem.primary, float(limit))])
            if choice is not None and tuple(choice) not in found:
                found[tuple(choice)] = problem.point_from_choice(choice)
        return self._front(problem, list(found.values()), budgets)

    def front(
        self, problem: AllocationProblem, budgets: Sequence[CostBudget] = (), resolution: float = 1e-6
    ) -> ParetoCurve:
        """The front by descent rather than a fixed sweep: each solve asks for the least noise at a
        primary cost at least ``resolution`` x (cost range) below the previous optimum.

        Every point is an exact optimum and no solve is wasted on a repeat. With the default
        resolution it is the whole front (exact on small problems, but a 60-group model has
        thousands of front points); ``resolution=0.005`` caps it near 200 solves.
        """
        if not 0 < resolution < 1:
            raise ConfigError(f"resolution must be in (0, 1), got {resolution}")
        program = self._program(problem)
        self._check_regions(problem, program)
        primary = problem.primary
        limits = self._limits(problem, budgets)
        low, high = self._range(problem, program, limits)
        gap = max((high - low) * resolution, COST_RTOL * max(abs(high), 1.0) * 4)
        limit = min([high, *(lim for name, lim in limits if name == primary)])
        points: list[CurvePoint] = []
        while True:
            choice = self._minimize(problem, program, program.objective, [*limits, (primary, limit)])
            if choice is None:
                break
            point = problem.point_from_choice(choice)
            points.append(point)
            if within(point.costs[primary], low):
                break
            limit = max(point.costs[primary] - gap, low)  # the cheapest configuration always ends the front
        return self._front(problem, points, budgets)

    def _program(self, problem: AllocationProblem) -> _Program:
        return _program(problem, self.config.max_float_regions)

    def _check_regions(self, problem: AllocationProblem, program: _Program) -> None:
        """With ``max_float_regions``, refuse a bound no assignment meets (groups that only run in float)."""
        bound = self.config.max_float_regions
        if bound is not None and self._minimize(problem, program, program.objective, []) is None:
            raise ConfigError(
                f"max_float_regions={bound} cannot be met: some groups have only float candidates and form more "
                "region starts than that; raise the bound or give those groups an integer candidate"
            )

    def _limits(self, problem: AllocationProblem, budgets: Sequence[CostBudget]) -> list[tuple[str, float]]:
        """Absolute limits of ``budgets``; raises with the minimum reachable when none can be met."""
        if budgets:
            self.solve(problem, budgets)  # raises a clear InfeasibleBudgetError if nothing meets them
        return [(b.cost, problem.limit(b)) for b in budgets]

    def _sweep(
        self, problem: AllocationProblem, budgets: Sequence[CostBudget], program: _Program | None = None,
        limits: Sequence[tuple[str, float]] = (),
    ) -> np.ndarray:
        primary = problem.primary
        low, high = self._range(problem, program, limits)
        high = min([high, *(problem.limit(b) for b in budgets if b.cost == primary)])
        return np.linspace(low, high, self.config.curve_points)

    def _range(
        self, problem: AllocationProblem, program: _Program | None, limits: Sequence[tuple[str, float]]
    ) -> tuple[float, float]:
        """The primary cost of the cheapest configuration and of the least noisy one.

        :meth:`AllocationProblem.min_cost` and ``max_cost`` are exact for plain problems (no solve needed);
        with edge costs or a float-region bound they are only bounds, so two solves find the true ends
        (else a sweep would waste limits below the cheapest and could miss it).
        """
        primary = problem.primary
        if program is None or not (problem.edges or self.config.max_float_regions is not None):
            return problem.min_cost(primary), problem.max_cost(primary)
        cheapest = self._minimize(problem, program, program.rows[primary], limits)
        quietest = self._minimize(problem, program, program.objective, limits)
        if cheapest is None or quietest is None:
            return problem.min_cost(primary), problem.max_cost(primary)
        low = problem.point_from_choice(cheapest).costs[primary]
        high = problem.point_from_choice(quietest).costs[primary]
        return low, max(low, high)

    def _front(
        self, problem: AllocationProblem, points: list[CurvePoint], budgets: Sequence[CostBudget]
    ) -> ParetoCurve:
        if not points:
            raise infeasible_cost_error(problem, budgets)
        primary = problem.primary
        cost = np.array([p.costs[primary] for p in points])
        noise = np.array([p.predicted_noise for p in points])
        front = front_indices(cost, -noise)
        return ParetoCurve(tuple(points[i] for i in reversed(front)), primary)

    def _minimize(
        self,
        problem: AllocationProblem,
        program: _Program,
        objective: np.ndarray,
        limits: Sequence[tuple[str, float]],
        extra: ExtraColumns | None = None,
    ) -> list[int] | None:
        """Candidate index per group minimizing ``objective`` (+ ``extra``'s) under ``limits``; None if
        infeasible. ``self.optimal`` says whether HiGHS proved the last answer optimal."""
        from scipy.optimize import Bounds, LinearConstraint, milp
        from scipy.sparse import csr_matrix, hstack, vstack

        sizes, n = program.sizes, sum(program.sizes)
        columns = n + program.continuous  # the program's own; ``extra`` follows
        m = 0 if extra is None else len(extra.objective)
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        group_of = np.repeat(np.arange(len(sizes)), sizes)
        one_each = csr_matrix((np.ones(n), (group_of, np.arange(n))), shape=(len(sizes), columns + m))
        slack = dict.fromkeys((name for name, _ in limits), 0.0)
        cost = objective if extra is None else np.concatenate((objective, extra.objective))
        for _ in range(MAX_RETRIES + 1):
            constraints = [LinearConstraint(one_each, 1.0, 1.0)]
            if program.links is not None and program.links.shape[0]:
                links = program.links if not m else hstack([program.links, csr_matrix((program.links.shape[0], m))])
                constraints.append(LinearConstraint(links, program.link_lower, program.link_upper))
            if limits:
                upper = np.array([
                    (lim + COST_RTOL * max(abs(lim), 1.0) - slack[name] - program.offsets[name]) / program.scales[name]
                    for name, lim in limits
                ])
                if upper.min() < 0:
                    return None
                rows = vstack([csr_matrix(program.rows[name]) for name, _ in limits])
                if m:
                    rows = hstack([rows, csr_matrix((len(limits), m))])
                constraints.append(LinearConstraint(rows, -np.inf, upper))
            if extra is not None and extra.matrix.shape[0]:
                matrix = extra.matrix
                if program.continuous:  # extra's rows are over [binaries, extras]: skip the program's columns
                    matrix = csr_matrix(matrix)
                    matrix = hstack([matrix[:, :n], csr_matrix((matrix.shape[0], program.continuous)), matrix[:, n:]])
                constraints.append(LinearConstraint(matrix, extra.lower, extra.upper))
            with _quiet_c_stdout():
                result = milp(
                    cost,
                    integrality=np.concatenate((np.ones(n), np.zeros(columns - n + m))),
                    bounds=Bounds(0.0, 1.0),
                    constraints=constraints,
                    options={"time_limit": self.config.time_limit_s, "mip_rel_gap": self.config.mip_rel_gap},
                )
            if result.x is None:
                if result.status == 2:
                    return None
                raise MixqError(
                    f"the ILP found no solution within {self.config.time_limit_s:g} s ({result.message}); "
                    "raise the time limit or use --solver greedy"
                )
            self.optimal = result.status == 0
            if result.status != 0:
                logger.warning("ILP stopped early (%s); using the best solution found", result.message)
            choice = [int(np.argmax(result.x[s : s + k])) for s, k in zip(starts, sizes)]
            costs = problem.point_from_choice(choice).costs
            if all(within(costs[name], lim) for name, lim in limits):
                return choice
            # HiGHS accepts near-integral values; rounding them can overshoot a limit by a hair.
            for name, lim in limits:
                if not within(costs[name], lim):
                    slack[name] += costs[name] - lim + COST_RTOL * max(abs(lim), 1.0)
        raise MixqError(
            f"the ILP kept overshooting the budgets after rounding {MAX_RETRIES} times; use --solver greedy"
        )

    def _jointly_infeasible(
        self, problem: AllocationProblem, program: _Program, budgets: Sequence[CostBudget]
    ) -> InfeasibleBudgetError:
        """Each budget is reachable alone but not together: report the first one's best under the rest."""
        first, others = budgets[0], budgets[1:]
        limits = [(b.cost, problem.limit(b)) for b in others]
        choice = self._minimize(problem, program, program.rows[first.cost], limits)
        names = " and ".join(str(b) for b in budgets)
        bound = self.config.max_float_regions
        if choice is None:
            extra = f" and max_float_regions={bound}" if bound is not None else ""
            return InfeasibleBudgetError(f"{names}{extra} cannot be met together; relax one of them")
        lowest = problem.point_from_choice(choice).costs[first.cost]
        reachable = None if math.isnan(in_budget_unit(problem, first, lowest)) else in_budget_unit(problem, first, lowest)
        cheapest = format_cost(problem, first, lowest)
        if not others:  # one budget: the region bound or the edge costs (min_cost was a bound) rule it out
            why = f"with max_float_regions={bound}" if bound is not None else "with the costs between groups"
            return InfeasibleBudgetError(
                f"{first} cannot be met: {why} the cheapest configuration reaches {cheapest}; raise the budget",
                reachable=reachable,
            )
        extra = f" (and max_float_regions={bound})" if bound is not None else ""
        return InfeasibleBudgetError(
            f"{names} cannot be met together although each can be met alone: under the other budgets{extra} the "
            f"cheapest configuration reaches {cheapest}; relax one of them",
            reachable=reachable,
        )


@contextlib.contextmanager
def _quiet_c_stdout() -> Iterator[None]:
    """Send file descriptor 1 to /dev/null while HiGHS runs.

    HiGHS 1.12 (bundled with scipy 1.17) prints a stray debug line,
    ``HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();``, straight to C
    stdout whatever ``disp`` says (ERGO-Code/HiGHS#2783); it would corrupt ``--json`` output.
    Process-wide for the few milliseconds of a solve.
    """
    with contextlib.suppress(AttributeError, OSError, ValueError):  # sys.stdout may be None or closed
        sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no fd 1 (some embedded interpreters): nothing to protect
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        _flush_c_stdio()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _flush_c_stdio() -> None:
    """Flush C stdio buffers so text written during the redirect lands in /dev/null, not later."""
    with contextlib.suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(None).fflush(None)
