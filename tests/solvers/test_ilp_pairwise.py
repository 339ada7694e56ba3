"""The ILP with linearised edge variables: exact against brute force, edge costs in every budget, float regions."""

from __future__ import annotations

import itertools

import pytest

from mixq.core.budget import CostBudget, CostUnit
from mixq.errors import ConfigError
from mixq.solvers import ExhaustiveSolver, IlpConfig, IlpSolver
from mixq.solvers.base import AllocationProblem, within
from mixq.testing.problems import pairwise_problem, with_costs


def every_choice(problem: AllocationProblem) -> list[list[int]]:
    return [list(c) for c in itertools.product(*(range(len(o.precisions)) for o in problem.options))]


def best_noise(problem: AllocationProblem, limits: dict[str, float], max_regions: int | None = None) -> float | None:
    """Brute force: the least predicted noise meeting every limit (and the region bound)."""
    best = None
    for choice in every_choice(problem):
        if max_regions is not None and problem.float_regions(choice) > max_regions:
            continue
        point = problem.point_from_choice(choice)
        if all(within(point.costs[name], limit) for name, limit in limits.items()):
            best = point.predicted_noise if best is None else min(best, point.predicted_noise)
    return best


def absolute(cost: str, limit: float) -> CostBudget:
    return CostBudget(cost, limit, CostUnit.ABSOLUTE)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.6, 0.95])
def test_exact_on_random_pairwise_problems_with_negative_edges(seed: int, fraction: float) -> None:
    problem = pairwise_problem(7 if seed % 2 else 6, seed=seed, skip_rate=0.5)
    assert any(v < 0 for e in problem.edges for row in e.costs["latency"] for v in row), "negative edge costs"
    front = ExhaustiveSolver().curve(problem)
    low, high = front[-1].costs["latency"], front[0].costs["latency"]
    limit = low + fraction * (high - low)
    point = IlpSolver().solve(problem, [absolute("latency", limit)])
    assert within(point.costs["latency"], limit)
    assert point.costs["latency"] == pytest.approx(problem.cost_of("latency", point.assignment))
    assert point.predicted_noise == pytest.approx(best_noise(problem, {"latency": limit}), rel=1e-9)


@pytest.mark.parametrize("seed", [10, 11])
def test_a_pairwise_budget_that_is_not_the_primary_cost_includes_its_edges(seed: int) -> None:
    problem = with_costs(pairwise_problem(6, seed=seed), pairwise_problem(6, seed=seed).costs, "bops")
    front = ExhaustiveSolver().curve(with_costs(problem, problem.costs, "latency"))
    latency = (front[-1].costs["latency"] + front[0].costs["latency"]) / 2
    bops = (problem.min_cost("bops") + problem.max_cost("bops")) / 2
    point = IlpSolver().solve(problem, [absolute("latency", latency), absolute("bops", bops)])
    assert within(point.costs["latency"], latency) and within(point.costs["bops"], bops)
    assert point.predicted_noise == pytest.approx(best_noise(problem, {"latency": latency, "bops": bops}), rel=1e-9)


def test_the_curve_sweep_gives_exact_optima_along_the_pairwise_cost() -> None:
    problem = pairwise_problem(7, seed=3)
    curve = IlpSolver(IlpConfig(curve_points=12)).curve(problem)
    assert len(curve) >= 3
    exhaustive = ExhaustiveSolver()
    for point in curve.points:
        assert point.costs["latency"] == pytest.approx(problem.cost_of("latency", point.assignment))
        oracle = exhaustive.solve(problem, [absolute("latency", point.costs["latency"])])
        assert point.predicted_noise == pytest.approx(oracle.predicted_noise, rel=1e-9)
    front = IlpSolver().front(problem, resolution=0.05)
    assert front[-1].costs["latency"] == pytest.approx(exhaustive.curve(problem)[-1].costs["latency"])


@pytest.mark.parametrize(("seed", "bound"), [(0, 0), (1, 1), (2, 1), (3, 2)])
def test_max_float_regions_is_exact_on_a_chain(seed: int, bound: int) -> None:
    """On a chain a region's start is its only float group without a float producer: starts = regions."""
    problem = pairwise_problem(7, ("w4a8", "w8a8", "fp16"), seed=seed, skip_rate=0.0)
    limit = problem.max_cost("latency")  # roomy: the bound, not the budget, is what binds
    solver = IlpSolver(IlpConfig(max_float_regions=bound))
    point = solver.solve(problem, [absolute("latency", limit)])
    choice = [o.precisions.index(point.assignment[o.group]) for o in problem.options]
    assert problem.float_regions(choice) <= bound
    assert point.predicted_noise == pytest.approx(best_noise(problem, {"latency": limit}, bound), rel=1e-9)
    free = IlpSolver().solve(problem, [absolute("latency", limit)])
    free_choice = [o.precisions.index(free.assignment[o.group]) for o in problem.options]
    if problem.float_regions(free_choice) > bound:
        assert point.predicted_noise > free.predicted_noise


def test_max_float_regions_holds_on_every_curve_point_with_skips() -> None:
    problem = pairwise_problem(8, ("w8a8", "fp16"), seed=4, skip_rate=0.6)
    curve = IlpSolver(IlpConfig(max_float_regions=1, curve_points=8)).curve(problem)
    for point in curve.points:
        choice = [o.precisions.index(point.assignment[o.group]) for o in problem.options]
        assert problem.float_regions(choice) <= 1


def test_an_unmeetable_region_bound_is_a_config_error() -> None:
    problem = pairwise_problem(4, ("fp16",), seed=0)  # every group float, one region along the chain
    IlpSolver(IlpConfig(max_float_regions=1)).solve(problem, [])
    with pytest.raises(ConfigError, match="max_float_regions=0 cannot be met"):
        IlpSolver(IlpConfig(max_float_regions=0)).solve(problem, [])
    with pytest.raises(ConfigError, match="at least 0"):
        IlpConfig(max_float_regions=-1)


def test_a_budget_only_the_edges_rule_out_names_the_true_cheapest() -> None:
    from mixq.errors import InfeasibleBudgetError

    problem = pairwise_problem(6, seed=8)
    true_min = ExhaustiveSolver().curve(problem)[-1].costs["latency"]
    assert problem.min_cost("latency") < true_min, "the bound is below the true minimum here"
    limit = (problem.min_cost("latency") + true_min) / 2
    with pytest.raises(InfeasibleBudgetError, match="with the costs between groups the cheapest") as caught:
        IlpSolver().solve(problem, [absolute("latency", limit)])
    assert caught.value.reachable == pytest.approx(true_min)
