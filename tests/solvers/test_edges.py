"""AllocationProblem with edge costs: the fast totals, bounds, move deltas, float regions, region records."""

from __future__ import annotations

import itertools
import random
from itertools import pairwise

import pytest

from mixq.cost import Bops, WeightSize
from mixq.cost.base import total_cost
from mixq.errors import ConfigError
from mixq.solvers import ExhaustiveSolver, GreedySolver, ParetoCurve
from mixq.solvers.base import AllocationProblem, CurvePoint
from mixq.testing.problems import (
    pairwise_latency,
    pairwise_problem,
    problem_from_sqnr,
    transition,
    with_costs,
)


def choices(problem: AllocationProblem) -> list[list[int]]:
    return [list(c) for c in itertools.product(*(range(len(o.precisions)) for o in problem.options))]


def chain(n: int, candidates: dict[str, float], ms: float, unary: dict[str, float]) -> AllocationProblem:
    """``n`` groups in a chain, each with ``candidates`` (precision -> SQNR dB), a latency per candidate
    (``unary``) and ``ms`` on every edge whose two ends differ in being float."""
    names = [f"g{i}" for i in range(n)]
    base = problem_from_sqnr({g: dict(candidates) for g in names})
    graph = base.graph
    latency = pairwise_latency(graph, {(g, p): unary[str(p)] for g in names for p in graph[g].candidates},
                               list(pairwise(names)), transition(ms), reference_ms=10.0)
    return with_costs(base, {"latency": latency, "bops": Bops()}, "latency")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_totals_agree_with_the_cost_models_on_every_assignment(seed: int) -> None:
    problem = pairwise_problem(6, seed=seed)
    assert problem.edges and all(o.costs for o in problem.options)
    for choice in choices(problem):
        point = problem.point_from_choice(choice)
        for name, model in problem.costs.items():
            assert point.costs[name] == pytest.approx(total_cost(model, problem.graph, point.assignment),
                                                      rel=1e-12, abs=1e-12)
            assert point.costs[name] == pytest.approx(problem.cost_of(name, point.assignment), rel=1e-12, abs=1e-12)


def test_fast_totals_are_exactly_equal_on_integral_costs() -> None:
    """Integers add without rounding, so any disagreement (a missed or doubled edge) shows exactly."""
    problem = chain(4, {"w8a8": 30.0, "fp16": 60.0}, ms=3.0, unary={"w8a8": 1.0, "fp16": 2.0})
    for choice in choices(problem):
        point = problem.point_from_choice(choice)
        assert point.costs["latency"] == problem.cost_of("latency", point.assignment)
    mixed = problem.point_from_choice([0, 1, 0, 1])  # three transitions
    assert mixed.costs["latency"] == 2 * 1.0 + 2 * 2.0 + 3 * 3.0


def test_min_and_max_cost_bound_every_assignment() -> None:
    problem = pairwise_problem(6, seed=4)
    totals = [problem.point_from_choice(c).costs["latency"] for c in choices(problem)]
    assert problem.min_cost("latency") <= min(totals) + 1e-12
    assert problem.max_cost("latency") >= max(totals) - 1e-12
    # BOPs charges no edge: its bounds stay exact
    bops = [problem.point_from_choice(c).costs["bops"] for c in choices(problem)]
    assert problem.min_cost("bops") == pytest.approx(min(bops)) and problem.max_cost("bops") == pytest.approx(max(bops))


def test_move_delta_is_the_change_of_the_total() -> None:
    problem = pairwise_problem(7, seed=5)
    rng = random.Random(0)
    for _ in range(50):
        choice = [rng.randrange(len(o.precisions)) for o in problem.options]
        moved = rng.sample(range(len(choice)), rng.randint(1, 3))
        moves = {m: rng.randrange(len(problem.options[m].precisions)) for m in moved}
        after = [moves.get(i, c) for i, c in enumerate(choice)]
        expected = problem.point_from_choice(after).costs["latency"] - problem.point_from_choice(choice).costs["latency"]
        assert problem.move_delta("latency", choice, moves) == pytest.approx(expected, abs=1e-12)


def test_float_regions_are_connected_float_groups() -> None:
    problem = chain(5, {"w8a8": 30.0, "fp16": 60.0}, ms=1.0, unary={"w8a8": 1.0, "fp16": 2.0})
    assert problem.float_regions([1, 1, 0, 1, 1]) == 2
    assert problem.float_regions([1, 1, 1, 1, 1]) == 1
    assert problem.float_regions([0, 1, 0, 1, 0]) == 2
    assert problem.float_regions([0, 0, 0, 0, 0]) == 0
    plain = problem_from_sqnr({g: {"w8a8": 30.0, "fp16": 60.0} for g in "abc"})
    assert plain.edges == () and plain.float_regions([1, 1, 1]) == 3, "without edges each float group stands alone"


def test_an_edge_to_an_unknown_group_is_a_config_error() -> None:
    problem = chain(2, {"w8a8": 30.0, "fp16": 60.0}, ms=1.0, unary={"w8a8": 1.0, "fp16": 2.0})
    smaller = problem_from_sqnr({"g0": {"w8a8": 30.0, "fp16": 60.0}})
    latency = problem.costs["latency"]
    with pytest.raises(ConfigError, match="charges edge"):
        _ = AllocationProblem(smaller.graph, smaller.sensitivity,
                              {"latency": _Unfiltered(latency), "size": WeightSize()}, "latency").edges


class _Unfiltered:
    """A pairwise model that (wrongly) names edges whatever graph it is asked about."""

    name, unit = "latency", "ms"

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def __getattr__(self, item: str) -> object:
        return getattr(self.inner, item)

    def edges(self, graph: object) -> list[tuple[str, str]]:
        return [("g0", "g1")]

    def edge_cost(self, edge: tuple[str, str], producer: object, consumer: object) -> float:
        return 1.0


def test_exhaustive_front_includes_edge_costs() -> None:
    problem = pairwise_problem(6, seed=6)
    curve = ExhaustiveSolver().curve(problem)
    everything = [problem.point_from_choice(c) for c in choices(problem)]
    cheapest = min(p.costs["latency"] for p in everything)
    assert curve[-1].costs["latency"] == pytest.approx(cheapest)
    for point in curve.points:
        assert point.costs["latency"] == pytest.approx(problem.cost_of("latency", point.assignment))
        assert not any(o.costs["latency"] < point.costs["latency"] - 1e-12
                       and o.predicted_noise < point.predicted_noise * (1 - 1e-12) for o in everything)


def test_a_region_step_round_trips_through_records() -> None:
    problem = chain(4, {"w8a8": 30.0, "fp16": 60.0}, ms=1.5, unary={"w8a8": 1.0, "fp16": 2.0})
    curve = GreedySolver().curve(problem)
    regions = [p for p in curve.points if p.region]
    assert regions, "the chain can only be lowered as one region"
    records = curve.to_records()
    region_records = [r for r in records if "region" in r]
    assert region_records and all("assignment" in r for r in region_records), "old readers still rebuild it"
    again = ParetoCurve.from_records(records, problem.graph)
    assert [p.assignment for p in again.points] == [p.assignment for p in curve.points]
    assert [p.region for p in again.points] == [p.region for p in curve.points]
    assert [p.step for p in again.points] == [p.step for p in curve.points]
    # a record without the assignment is rebuilt from its step and region
    for record in records[1:]:
        record.pop("assignment", None)
    assert [p.assignment for p in ParetoCurve.from_records(records, problem.graph).points] == \
        [p.assignment for p in curve.points]


def test_single_steps_still_write_compact_records() -> None:
    problem = pairwise_problem(6, seed=7)
    curve = GreedySolver().curve(problem)
    records = curve.to_records()
    singles = [r for r, p in zip(records[1:], curve.points[1:]) if not p.region]
    assert singles and all("assignment" not in r for r in singles)
    assert isinstance(curve.points[0], CurvePoint) and curve.points[0].region == ()
