"""What every phase-2 search shares: the problem, the trade-off curve it yields, the solver protocol.

Phase 2 (Pandey et al., section 3.3) trades predicted output noise against a cost. The
prediction is the sum of the per-group noise of phase 1's table (groups are measured in
isolation, so their noise powers add to first order); costs are additive per group as well.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from mixq.core.assignment import Assignment
from mixq.core.budget import CostBudget, CostUnit
from mixq.core.graph import GroupId, QuantGraph
from mixq.core.precision import Precision
from mixq.core.tables import SensitivityTable, db_to_nsr, nsr_to_db
from mixq.cost.base import CostModel, total_cost
from mixq.errors import ConfigError

#: Costs are sums of floats: a budget written as exactly the cost of a configuration must admit it.
COST_RTOL = 1e-9

Step = tuple[GroupId, str, str]


def within(value: float, limit: float) -> bool:
    """``value <= limit`` up to summation round-off."""
    return value <= limit + COST_RTOL * max(abs(limit), 1.0)


@dataclass(frozen=True)
class GroupOptions:
    """One group's candidates with their predicted noise and per-cost-model cost (plain floats).

    Attributes:
        group: the group id.
        precisions: the group's candidates, in the group's order.
        noise: linear noise-to-signal ratio of each candidate (phase 1's table).
        costs: cost model name -> cost of each candidate.
    """

    group: GroupId
    precisions: tuple[Precision, ...]
    noise: tuple[float, ...]
    costs: Mapping[str, tuple[float, ...]]


@dataclass(frozen=True)
class AllocationProblem:
    """A phase-2 search: groups, their sensitivity, and the costs to trade it against.

    Attributes:
        graph: the quantizer groups and their candidates.
        sensitivity: phase 1's table; must cover every (group, candidate) except ``fp32``.
        costs: cost models by name, e.g. ``{"bops": Bops(), "size": WeightSize()}``.
        primary: the cost the trade-off curve is walked along.
    """

    graph: QuantGraph
    sensitivity: SensitivityTable
    costs: Mapping[str, CostModel]
    primary: str = "bops"

    def __post_init__(self) -> None:
        if self.primary not in self.costs:
            raise ConfigError(f"primary cost {self.primary!r} is not among the cost models {sorted(self.costs)}")
        if len(self.graph) == 0:
            raise ConfigError("the model has no quantizable groups: there is nothing to allocate")
        for group in self.graph:
            if not group.candidates:
                raise ConfigError(f"group {group.id!r} has no candidate precisions; give it at least one")
            for precision in group.candidates:
                if (group.id, precision) not in self.sensitivity.sqnr_db and not precision.keeps_float32:
                    raise ConfigError(
                        f"the sensitivity table has no entry for group {group.id!r} at {precision}; "
                        "re-run the analysis with the same candidates"
                    )

    @cached_property
    def options(self) -> tuple[GroupOptions, ...]:
        """Per-group candidate noise and costs, in graph order (computed once)."""
        out = []
        for group in self.graph:
            out.append(
                GroupOptions(
                    group=group.id,
                    precisions=tuple(group.candidates),
                    noise=tuple(self.sensitivity.noise(group.id, p) for p in group.candidates),
                    costs={
                        name: tuple(float(model.cost(group, p)) for p in group.candidates)
                        for name, model in self.costs.items()
                    },
                )
            )
        return tuple(out)

    def model(self, name: str) -> CostModel:
        try:
            return self.costs[name]
        except KeyError:
            raise ConfigError(f"no cost model named {name!r}; this search knows {sorted(self.costs)}") from None

    @cached_property
    def _references(self) -> dict[str, float]:
        return {name: float(model.reference(self.graph)) for name, model in self.costs.items()}

    @cached_property
    def _fixed(self) -> dict[str, float]:
        return {name: float(model.fixed(self.graph)) for name, model in self.costs.items()}

    def reference(self, name: str) -> float:
        """The cost that relative budgets of ``name`` are fractions of."""
        self.model(name)
        return self._references[name]

    def fixed(self, name: str) -> float:
        """The part of cost ``name`` that no assignment changes."""
        self.model(name)
        return self._fixed[name]

    def cost_of(self, name: str, assignment: Assignment) -> float:
        """Absolute total of cost ``name``, including the part no assignment changes."""
        return total_cost(self.model(name), self.graph, assignment)

    def ratio_of(self, name: str, assignment: Assignment) -> float:
        """Total over reference; NaN when the reference is unknown (zero)."""
        return _ratio(self.cost_of(name, assignment), self.reference(name))

    def predicted_noise(self, assignment: Assignment) -> float:
        """Sum of the table's per-group noise: phase 2's additive quality model."""
        return math.fsum(self.sensitivity.noise(group.id, assignment[group.id]) for group in self.graph)

    def predicted_sqnr_db(self, assignment: Assignment) -> float:
        return nsr_to_db(self.predicted_noise(assignment))

    def min_cost(self, name: str) -> float:
        """The lowest total any assignment reaches: every group at its cheapest candidate."""
        return self.fixed(name) + math.fsum(min(opt.costs[name]) for opt in self.options)

    def max_cost(self, name: str) -> float:
        return self.fixed(name) + math.fsum(max(opt.costs[name]) for opt in self.options)

    def limit(self, budget: CostBudget) -> float:
        """A budget as an absolute amount of its cost model's unit."""
        reference = self.reference(budget.cost)
        if budget.unit is CostUnit.RATIO and reference <= 0:
            raise ConfigError(
                f"{budget} is relative, but the reference {budget.cost} of this model is 0 "
                "(the backend reported no float parameters); give an absolute budget"
            )
        return float(budget.absolute(reference))

    def meets(self, costs: Mapping[str, float], budgets: Sequence[CostBudget]) -> bool:
        """Whether absolute totals meet every budget (a budget on an unknown cost is a ConfigError)."""
        limits = [(budget.cost, self.limit(budget)) for budget in budgets]
        return all(within(costs[name], limit) for name, limit in limits)

    def point(self, assignment: Assignment, step: Step | None = None) -> CurvePoint:
        """The curve point of an assignment (costs recomputed from the cost models)."""
        costs = {name: self.cost_of(name, assignment) for name in self.costs}
        return self._point(assignment, costs, self.predicted_noise(assignment), step)

    def point_from_choice(self, choice: Sequence[int], step: Step | None = None) -> CurvePoint:
        """The curve point where group ``i`` takes candidate ``choice[i]`` (fast path for solvers)."""
        options = self.options
        assignment = Assignment({opt.group: opt.precisions[c] for opt, c in zip(options, choice)})
        costs = {
            name: self.fixed(name) + math.fsum(opt.costs[name][c] for opt, c in zip(options, choice))
            for name in self.costs
        }
        noise = math.fsum(opt.noise[c] for opt, c in zip(options, choice))
        return self._point(assignment, costs, noise, step)

    def _point(self, assignment: Assignment, costs: dict[str, float], noise: float, step: Step | None) -> CurvePoint:
        ratios = {name: _ratio(value, self.reference(name)) for name, value in costs.items()}
        return CurvePoint(assignment, costs, ratios, nsr_to_db(noise), step)


def _ratio(total: float, reference: float) -> float:
    return total / reference if reference > 0 else math.nan


@dataclass(frozen=True)
class CurvePoint:
    """One configuration on a trade-off curve.

    Attributes:
        assignment: the precision of every group.
        costs: absolute total of every cost model (fixed part included).
        ratios: total over each cost model's reference (NaN when the reference is 0).
        predicted_sqnr_db: SQNR predicted from the summed table noise (not measured).
        step: ``(group, from, to)``: the move that led here from the previous point; None at the
            start and for curves that are not walks (ILP, exhaustive).
    """

    assignment: Assignment
    costs: Mapping[str, float]
    ratios: Mapping[str, float]
    predicted_sqnr_db: float
    step: Step | None = None

    @property
    def predicted_noise(self) -> float:
        return db_to_nsr(self.predicted_sqnr_db)


@dataclass(frozen=True)
class ParetoCurve:
    """Points from most to least expensive in the primary cost (non-increasing).

    Attributes:
        points: the configurations, most expensive first.
        primary: the cost the curve is ordered by.
    """

    points: tuple[CurvePoint, ...]
    primary: str

    def __post_init__(self) -> None:
        if not self.points:
            raise ConfigError("a trade-off curve needs at least one point")
        for before, after in zip(self.points, self.points[1:]):
            if not within(after.costs[self.primary], before.costs[self.primary]):
                raise ConfigError(f"curve points must not get more expensive in {self.primary} along the curve")

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int) -> CurvePoint:
        return self.points[index]

    def to_records(self) -> list[dict[str, Any]]:
        """JSON-ready rows. A point's assignment is written only when the previous point plus its
        step does not give it (always for the first point), so a greedy walk stays compact."""
        records: list[dict[str, Any]] = []
        previous: Assignment | None = None
        for index, point in enumerate(self.points):
            record: dict[str, Any] = {
                "index": index,
                "costs": {k: _finite(v) for k, v in point.costs.items()},
                "ratios": {k: _finite(v) for k, v in point.ratios.items()},
                "predicted_sqnr_db": _finite(point.predicted_sqnr_db),
                "step": list(point.step) if point.step else None,
                "counts": point.assignment.counts(),
            }
            if index == 0:
                record["primary"] = self.primary
            if previous is None or point.step is None or _follow(previous, point.step) != point.assignment:
                record["assignment"] = point.assignment.to_dict()
            records.append(record)
            previous = point.assignment
        return records

    @classmethod
    def from_records(
        cls, records: Sequence[Mapping[str, Any]], graph: QuantGraph, primary: str | None = None
    ) -> ParetoCurve:
        """Rebuild a curve written by :meth:`to_records` (assignments checked against ``graph``).

        Non-finite numbers are written as null: a null SQNR means no noise (infinite dB), a null
        ratio means the reference was unknown.
        """
        if not records:
            raise ConfigError("the saved curve is empty")
        primary = primary or str(records[0].get("primary", "bops"))
        points = []
        previous: Assignment | None = None
        for record in records:
            step_data = record.get("step")
            step: Step | None = None
            if step_data is not None:
                group, before, after = step_data
                step = (str(group), str(before), str(after))
            if "assignment" in record:
                assignment = Assignment.from_dict(record["assignment"], graph)
            elif previous is not None and step is not None:
                assignment = _follow(previous, step)
            else:
                raise ConfigError(f"curve record {record.get('index')} has neither an assignment nor a step")
            sqnr = record.get("predicted_sqnr_db")
            points.append(
                CurvePoint(
                    assignment=assignment,
                    costs={k: float(v) for k, v in record["costs"].items()},
                    ratios={k: math.nan if v is None else float(v) for k, v in record["ratios"].items()},
                    predicted_sqnr_db=math.inf if sqnr is None else float(sqnr),
                    step=step,
                )
            )
            previous = assignment
        return cls(tuple(points), primary)


def _follow(previous: Assignment, step: Step) -> Assignment:
    """The assignment a recorded step leads to."""
    group, _, after = step
    if group not in previous.precisions:
        raise ConfigError(f"curve step names unknown group {group!r}")
    return previous.with_(group, Precision.parse(after))


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


class Solver(Protocol):
    """A phase-2 search over an :class:`AllocationProblem` that only reads the table (a curve solver).

    ``curve`` takes the cost budgets: a solver that can honour them while it builds the curve does so
    (the ILP sweeps within them, so every point meets them all); the others return the whole walk and
    a point is selected on it. Either way the caller needs no knowledge of which solver it holds.
    """

    name: str

    def curve(self, problem: AllocationProblem, budgets: Sequence[CostBudget] = ()) -> ParetoCurve:
        """The cost / predicted-quality trade-off, most expensive point first."""
        ...

    def solve(self, problem: AllocationProblem, budgets: Sequence[CostBudget]) -> CurvePoint:
        """The best predicted quality meeting every budget; raises InfeasibleBudgetError if none."""
        ...
