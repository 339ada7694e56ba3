"""What every phase-2 search shares: the problem and the solver protocol (the curve it yields is in
:mod:`mixq.solvers.curve`, re-exported here).

Phase 2 (Pandey et al., section 3.3) trades predicted output noise against a cost. The
prediction is the sum of the per-group noise of phase 1's table (groups are measured in
isolation, so their noise powers add to first order); costs are additive per group, plus, for a
:class:`~mixq.cost.pairwise.PairwiseCost` (latency measured in a runtime), a cost on each edge
between two groups that depends on both ends' precisions (:attr:`AllocationProblem.edges`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

from mixq.core.assignment import Assignment
from mixq.core.budget import CostBudget, CostUnit
from mixq.core.graph import GroupId, QuantGraph
from mixq.core.precision import Precision
from mixq.core.tables import SensitivityTable, nsr_to_db
from mixq.cost.base import CostModel, total_cost
from mixq.cost.pairwise import is_pairwise
from mixq.errors import ConfigError
from mixq.solvers.curve import CurvePoint, ParetoCurve, Step, within


def check_max_float_regions(value: int | None) -> None:
    """``max_float_regions`` (a setting of ilp, greedy and evolution) is None or a count (0: no float group)."""
    if value is not None and value < 0:
        raise ConfigError(f"max_float_regions must be at least 0 (or none for no bound), got {value}")


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
class EdgeOptions:
    """One edge between two groups with what it costs for each pair of the two groups' candidates.

    Attributes:
        producer, consumer: positions (in graph order, as :attr:`AllocationProblem.options`) of the ends.
        costs: cost model name -> ``costs[name][p][q]``, the edge's cost when the producer takes its
            candidate ``p`` and the consumer its candidate ``q`` (all zero for a model that does not charge
            the edge, e.g. BOPs).
    """

    producer: int
    consumer: int
    costs: Mapping[str, tuple[tuple[float, ...], ...]]


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

    @cached_property
    def edges(self) -> tuple[EdgeOptions, ...]:
        """Every edge some pairwise cost model charges, once per (producer, consumer), with each cost
        model's matrix over the two groups' candidates; empty when no model is pairwise (computed once).

        Edges of all pairwise models are merged so that solvers need one set of edge variables, and a
        model listing an edge twice is charged twice, as :func:`~mixq.cost.base.total_cost` does.
        """
        positions = {option.group: i for i, option in enumerate(self.options)}
        found: dict[tuple[int, int], dict[str, list[list[float]]]] = {}
        for name, model in self.costs.items():
            if not is_pairwise(model):
                continue
            for edge in model.edges(self.graph):  # type: ignore[attr-defined]
                a, b = (positions.get(end) for end in edge)
                if a is None or b is None:
                    raise ConfigError(f"cost model {name!r} charges edge {edge} between groups this search does not "
                                      "have; re-measure it for this model")
                if a == b:
                    raise ConfigError(f"cost model {name!r} charges an edge from group {edge[0]!r} to itself")
                pa, pb = self.options[a].precisions, self.options[b].precisions
                matrices = found.setdefault((a, b), {})
                matrix = matrices.setdefault(name, [[0.0] * len(pb) for _ in pa])
                for i, p in enumerate(pa):
                    for j, q in enumerate(pb):
                        matrix[i][j] += float(model.edge_cost(edge, p, q))  # type: ignore[attr-defined]
        out = []
        for (a, b), matrices in found.items():
            zero = tuple((0.0,) * len(self.options[b].precisions) for _ in self.options[a].precisions)
            costs = {name: tuple(map(tuple, matrices[name])) if name in matrices else zero for name in self.costs}
            out.append(EdgeOptions(a, b, costs))
        return tuple(out)

    @cached_property
    def incident(self) -> tuple[tuple[int, ...], ...]:
        """Per group position, the indices into :attr:`edges` of the edges touching it."""
        touching: list[list[int]] = [[] for _ in self.options]
        for index, edge in enumerate(self.edges):
            touching[edge.producer].append(index)
            touching[edge.consumer].append(index)
        return tuple(tuple(t) for t in touching)

    def float_regions(self, choice: Sequence[int]) -> int:
        """How many float regions ``choice`` has: connected components, through :attr:`edges`, of the
        groups whose candidate is float (fp16/fp32). Without edges every float group is its own region.

        Each region costs a runtime a float island in an integer graph (a dequantize in, a quantize out,
        layout changes), which is what ``max_float_regions`` bounds.
        """
        floating = [opt.precisions[c].is_float for opt, c in zip(self.options, choice)]
        seen = [False] * len(floating)
        regions = 0
        for start, is_float in enumerate(floating):
            if not is_float or seen[start]:
                continue
            regions += 1
            seen[start] = True
            stack = [start]
            while stack:
                position = stack.pop()
                for index in self.incident[position]:
                    edge = self.edges[index]
                    other = edge.consumer if edge.producer == position else edge.producer
                    if floating[other] and not seen[other]:
                        seen[other] = True
                        stack.append(other)
        return regions

    def move_delta(self, name: str, choice: Sequence[int], moves: Mapping[int, int]) -> float:
        """How much cost ``name`` changes when the groups at the positions of ``moves`` take the candidates
        it maps them to (the others keep ``choice``): their own costs plus every edge touching them."""
        option_costs = [self.options[i].costs[name] for i in moves]
        delta = math.fsum(costs[c] - costs[choice[i]] for costs, (i, c) in zip(option_costs, moves.items()))
        seen: set[int] = set()
        terms = []
        for position in moves:
            for index in self.incident[position]:
                if index in seen:
                    continue
                seen.add(index)
                edge = self.edges[index]
                matrix = edge.costs[name]
                a, b = edge.producer, edge.consumer
                terms.append(matrix[moves.get(a, choice[a])][moves.get(b, choice[b])] - matrix[choice[a]][choice[b]])
        return delta + math.fsum(terms)

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
        """The lowest total any assignment reaches: every group at its cheapest candidate.

        With edge costs it is a lower bound (every group and every edge at its own cheapest, which one
        assignment may not reach at once): a budget below it is surely unreachable, so reachability
        checks stay sound, but a budget above it may still be (the ILP then says so).
        """
        total = self.fixed(name) + math.fsum(min(opt.costs[name]) for opt in self.options)
        if self.edges:
            total += math.fsum(min(min(row) for row in edge.costs[name]) for edge in self.edges)
        return total

    def max_cost(self, name: str) -> float:
        """The highest total: exact without edge costs, an upper bound with them (see :meth:`min_cost`)."""
        total = self.fixed(name) + math.fsum(max(opt.costs[name]) for opt in self.options)
        if self.edges:
            total += math.fsum(max(max(row) for row in edge.costs[name]) for edge in self.edges)
        return total

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

    def point_from_choice(
        self, choice: Sequence[int], step: Step | None = None, region: tuple[GroupId, ...] = ()
    ) -> CurvePoint:
        """The curve point where group ``i`` takes candidate ``choice[i]`` (fast path for solvers; the
        same totals as :meth:`cost_of`, edge costs included)."""
        options = self.options
        assignment = Assignment({opt.group: opt.precisions[c] for opt, c in zip(options, choice)})
        edges = self.edges
        if edges:
            costs = {
                name: self.fixed(name) + math.fsum([
                    *(opt.costs[name][c] for opt, c in zip(options, choice)),
                    *(e.costs[name][choice[e.producer]][choice[e.consumer]] for e in edges),
                ])
                for name in self.costs
            }
        else:
            costs = {
                name: self.fixed(name) + math.fsum(opt.costs[name][c] for opt, c in zip(options, choice))
                for name in self.costs
            }
        noise = math.fsum(opt.noise[c] for opt, c in zip(options, choice))
        return self._point(assignment, costs, noise, step, region)

    def _point(
        self, assignment: Assignment, costs: dict[str, float], noise: float, step: Step | None,
        region: tuple[GroupId, ...] = (),
    ) -> CurvePoint:
        ratios = {name: _ratio(value, self.reference(name)) for name, value in costs.items()}
        return CurvePoint(assignment, costs, ratios, nsr_to_db(noise), step, region)


def _ratio(total: float, reference: float) -> float:
    return total / reference if reference > 0 else math.nan


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


__all__ = ["AllocationProblem", "CurvePoint", "EdgeOptions", "GroupOptions", "ParetoCurve", "Solver", "Step",
           "check_max_float_regions", "within"]
