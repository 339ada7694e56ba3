"""The greedy walk with edge costs: neighbour-aware savings, region moves, the float-region bound."""

from __future__ import annotations

from itertools import pairwise

import pytest

from mixq.core.precision import Precision
from mixq.cost import Bops
from mixq.errors import ConfigError
from mixq.solvers import ExhaustiveSolver, GreedyConfig, GreedySolver, get_solver, solver_config
from mixq.solvers.base import AllocationProblem, CurvePoint
from mixq.testing.problems import (
    pairwise_latency,
    pairwise_problem,
    problem_from_sqnr,
    random_problem,
    transition,
    with_costs,
)

W8A8, FP16 = Precision.parse("w8a8"), Precision.parse("fp16")


def latency_problem(sqnr: dict[str, dict[str, float]], edges: list[tuple[str, str]], ms: float,
                    unary: dict[str, float] | None = None) -> AllocationProblem:
    """Groups from ``sqnr``; latency fp16 2 ms, w8a8 1 ms (or ``unary``), ``ms`` per int/float transition."""
    base = problem_from_sqnr(sqnr)
    times = unary or {"fp16": 2.0, "w8a8": 1.0}
    latency = pairwise_latency(base.graph, {(g, p): times[str(p)] for g in sqnr for p in base.graph[g].candidates},
                               edges, transition(ms), reference_ms=10.0)
    return with_costs(base, {"latency": latency, "bops": Bops()}, "latency")


def choice_of(problem: AllocationProblem, point: CurvePoint) -> list[int]:
    return [o.precisions.index(point.assignment[o.group]) for o in problem.options]


def test_a_move_that_pays_a_transition_ranks_by_its_true_saving() -> None:
    """x looks cheapest per unit of its own kernel, but flipping it puts an int8 group next to float y and
    pays 0.8 of its 1 ms saving back on the edge; z, alone, keeps its whole saving and goes first."""
    problem = latency_problem(
        {"x": {"w8a8": 30.0, "fp16": 90.0}, "y": {"w8a8": 20.0, "fp16": 90.0}, "z": {"w8a8": 28.2, "fp16": 90.0}},
        edges=[("x", "y")], ms=0.8,
    )
    dn = {g: problem.sensitivity.noise(g, W8A8) - problem.sensitivity.noise(g, FP16) for g in "xz"}
    assert dn["x"] < dn["z"], "ignoring the edge, x is the better move"
    curve = GreedySolver(GreedyConfig(max_region=1)).curve(problem)
    assert curve[1].step == ("z", "fp16", "w8a8")
    # z's move adds less noise per millisecond really saved than x's would
    x_first = problem.point_from_choice([0, 1, 1])  # x at w8a8 (candidates in the order given: w8a8, fp16)
    assert x_first.assignment["x"] == W8A8 and x_first.assignment["z"] == FP16
    rate = (curve[1].predicted_noise - curve[0].predicted_noise) / (curve[0].costs["latency"] - curve[1].costs["latency"])
    x_rate = (x_first.predicted_noise - curve[0].predicted_noise) / (curve[0].costs["latency"] - x_first.costs["latency"])
    assert rate < x_rate


def test_neighbours_are_rescored_after_a_move() -> None:
    """Once x is int8, flipping y removes the transition instead of adding one: y's saving grows from
    1 - 0.8 to 1 + 0.8, and the walk must see that (y goes next, before the cheaper-noise w)."""
    problem = latency_problem(
        {"x": {"w8a8": 40.0, "fp16": 90.0}, "y": {"w8a8": 30.0, "fp16": 90.0}, "w": {"w8a8": 32.0, "fp16": 90.0}},
        edges=[("x", "y")], ms=0.8, unary=None,
    )
    curve = GreedySolver(GreedyConfig(max_region=1)).curve(problem)
    steps = [p.step[0] for p in curve.points[1:] if p.step]
    assert steps.index("y") < steps.index("w")
    for point in curve.points:
        assert point.costs["latency"] == pytest.approx(problem.cost_of("latency", point.assignment))


def test_a_region_move_lowers_a_run_no_single_flip_pays_for() -> None:
    """Every single flip adds transitions worth more than its 1 ms (1.5 per new int/float edge), so only
    the whole chain, moved at once, saves anything."""
    names = [f"g{i}" for i in range(4)]
    problem = latency_problem({g: {"w8a8": 30.0 + i, "fp16": 90.0} for i, g in enumerate(names)},
                              edges=list(pairwise(names)), ms=1.5)
    for position in range(4):
        assert problem.move_delta("latency", [1, 1, 1, 1], {position: 0}) > 0, "a single flip costs more"
    singles = GreedySolver(GreedyConfig(max_region=1)).curve(problem)
    assert len(singles) == 1, "without region moves the walk cannot leave the start"
    curve = GreedySolver().curve(problem)
    assert len(curve) == 2
    assert set(curve[1].region) == set(names) and curve[1].step is not None
    assert curve[1].step[1:] == ("fp16", "w8a8") and curve[1].region[0] == curve[1].step[0]
    assert curve[1].assignment.counts() == {"w8a8": 4}
    assert curve[1].costs["latency"] == pytest.approx(4.0)


def test_max_region_caps_a_region_move() -> None:
    names = [f"g{i}" for i in range(6)]
    problem = latency_problem({g: {"w8a8": 30.0 + i, "fp16": 90.0} for i, g in enumerate(names)},
                              edges=list(pairwise(names)), ms=0.4)
    curve = GreedySolver(GreedyConfig(max_region=3)).curve(problem)
    assert all(len(p.region) <= 3 for p in curve.points)
    assert curve[-1].assignment.counts() == {"w8a8": 6}


@pytest.mark.parametrize("seed", range(4))
def test_the_walk_is_a_valid_curve_with_true_totals(seed: int) -> None:
    problem = pairwise_problem(7, seed=seed)
    curve = GreedySolver().curve(problem)
    for before, after in zip(curve.points, curve.points[1:]):
        assert after.costs["latency"] < before.costs["latency"]
    for point in curve.points:
        assert point.costs["latency"] == pytest.approx(problem.cost_of("latency", point.assignment))
    # never better than exact, and not absurdly worse at the cheap end
    exact = ExhaustiveSolver().curve(problem)
    assert curve[-1].costs["latency"] >= exact[-1].costs["latency"] - 1e-9


def test_region_moves_help_on_transition_heavy_problems() -> None:
    """On chains where transitions dominate, region moves reach cheaper configurations than single moves."""
    wins = 0
    for seed in range(6):
        base = random_problem(8, ("w8a8", "fp16"), seed=seed)
        ids = base.graph.ids
        latency = pairwise_latency(base.graph, {(g, p): 1.0 if p == W8A8 else 2.0 for g in ids for p in (W8A8, FP16)},
                                   list(pairwise(ids)), transition(1.2), reference_ms=16.0)
        problem = with_costs(base, {"latency": latency}, "latency")
        single = GreedySolver(GreedyConfig(max_region=1)).curve(problem)
        region = GreedySolver().curve(problem)
        assert region[-1].costs["latency"] <= single[-1].costs["latency"] + 1e-12
        wins += region[-1].costs["latency"] < single[-1].costs["latency"] - 1e-9
    assert wins >= 1


def test_without_edges_the_general_walk_is_todays_walk() -> None:
    """A bound no assignment reaches sends a plain problem through the edge-aware walk: same curve."""
    problem = random_problem(20, seed=9)
    plain = GreedySolver().curve(problem)
    general = GreedySolver(GreedyConfig(max_float_regions=10**6)).curve(problem)
    assert [p.assignment for p in general.points] == [p.assignment for p in plain.points]
    assert [p.step for p in general.points] == [p.step for p in plain.points]


@pytest.mark.parametrize("bound", [0, 1, 2])
def test_max_float_regions_holds_along_the_walk(bound: int) -> None:
    problem = pairwise_problem(10, ("w8a8", "fp16"), seed=3, skip_rate=0.0)
    free = GreedySolver().curve(problem)
    assert max(problem.float_regions(choice_of(problem, p)) for p in free.points) > bound, "the bound matters"
    curve = GreedySolver(GreedyConfig(max_float_regions=bound)).curve(problem)
    assert all(problem.float_regions(choice_of(problem, p)) <= bound for p in curve.points)
    if bound == 0:
        assert curve[0].assignment.counts() == {"w8a8": 10}, "repaired start: nothing left in float"
    else:
        assert len(curve) > 1
    for point in curve.points:
        assert point.costs["latency"] == pytest.approx(problem.cost_of("latency", point.assignment))


def test_a_start_over_the_bound_is_repaired_and_an_impossible_bound_refused() -> None:
    names = [f"g{i}" for i in range(5)]
    problem = latency_problem({g: {"w8a8": 30.0 + 5 * i, "fp16": 90.0} for i, g in enumerate(names)},
                              edges=[("g0", "g1"), ("g3", "g4")], ms=0.1)  # g2 alone: three float regions at start
    assert problem.float_regions([1] * 5) == 3
    curve = GreedySolver(GreedyConfig(max_float_regions=2)).curve(problem)
    first = choice_of(problem, curve[0])
    assert problem.float_regions(first) == 2
    assert curve[0].assignment.counts() == {"fp16": 4, "w8a8": 1}, "one group lowered, the least sensitive"
    only_float = latency_problem({g: {"fp16": 90.0} for g in names}, edges=[("g0", "g1")], ms=0.1)
    with pytest.raises(ConfigError, match="max_float_regions=1 cannot be met"):
        GreedySolver(GreedyConfig(max_float_regions=1)).curve(only_float)


def test_greedy_settings_are_solver_options() -> None:
    config = solver_config("greedy", options={"max_region": "4", "max_float_regions": "2"})
    assert config == GreedyConfig(max_region=4, max_float_regions=2)
    assert solver_config("greedy", options={"max_float_regions": "none"}).max_float_regions is None
    assert get_solver("greedy", config).config.max_region == 4  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="max_region must be at least 1"):
        GreedyConfig(max_region=0)
    assert solver_config("ilp", options={"max_float_regions": "3"}).max_float_regions == 3
    assert solver_config("evolution", options={"max_float_regions": "1"}).max_float_regions == 1
