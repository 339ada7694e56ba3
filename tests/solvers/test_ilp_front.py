"""The ILP beyond one budget: several budgets at once, the whole front, curves that honour budgets."""

from __future__ import annotations

import pytest

from mixq.core.budget import CostBudget, CostUnit
from mixq.errors import InfeasibleBudgetError
from mixq.solvers import ExhaustiveSolver, IlpConfig, IlpSolver
from mixq.testing.problems import random_problem

STANDARD = ("w4a8", "w8a8", "w8a16")


def test_front_is_the_exhaustive_front() -> None:
    for seed in range(4):
        problem = random_problem(6, STANDARD, seed, varied_candidates=seed % 2 == 1)
        exact = ExhaustiveSolver().curve(problem)
        front = IlpSolver().front(problem)
        assert [p.assignment for p in front.points] == [p.assignment for p in exact.points] or (
            [p.costs["bops"] for p in front.points] == pytest.approx([p.costs["bops"] for p in exact.points])
            and [p.predicted_noise for p in front.points] == pytest.approx([p.predicted_noise for p in exact.points])
        )


def test_coarse_front_spans_the_range_with_exact_points() -> None:
    problem = random_problem(9, STANDARD, seed=5)
    front = IlpSolver().front(problem, resolution=0.05)
    assert len(front) <= 21
    assert front.points[0].predicted_noise == pytest.approx(ExhaustiveSolver().curve(problem).points[0].predicted_noise)
    assert front.points[-1].costs["bops"] == pytest.approx(problem.min_cost("bops"))
    for point in front.points:
        exact = ExhaustiveSolver().solve(problem, [CostBudget("bops", point.costs["bops"], CostUnit.ABSOLUTE)])
        assert point.predicted_noise == pytest.approx(exact.predicted_noise, rel=1e-7)


def test_curve_and_front_under_a_second_budget_meet_it_everywhere() -> None:
    problem = random_problem(7, STANDARD, seed=2)
    budgets = [CostBudget("size", 0.2, CostUnit.RATIO), CostBudget("bops", 0.6, CostUnit.RATIO)]
    for curve in (IlpSolver(IlpConfig(curve_points=10)).curve(problem, budgets), IlpSolver().front(problem, budgets)):
        assert all(problem.meets(p.costs, budgets) for p in curve.points)
        for point in curve.points:
            limits = [*budgets, CostBudget("bops", point.costs["bops"], CostUnit.ABSOLUTE)]
            exact = ExhaustiveSolver().solve(problem, limits)
            assert point.predicted_noise == pytest.approx(exact.predicted_noise, rel=1e-7)


def test_budgets_each_reachable_but_not_together_are_reported() -> None:
    # w8a4 is the cheaper in BOPs, w4a16 the smaller: the two budgets pull in opposite directions
    problem = random_problem(5, ("w8a4", "w4a16"), seed=1)
    bops = CostBudget("bops", problem.min_cost("bops") * 1.01, CostUnit.ABSOLUTE)
    size = CostBudget("size", problem.min_cost("size") * 1.01, CostUnit.ABSOLUTE)
    assert problem.meets(IlpSolver().solve(problem, [bops]).costs, [bops])
    assert problem.meets(IlpSolver().solve(problem, [size]).costs, [size])
    with pytest.raises(InfeasibleBudgetError, match="cannot be met together although each can be met alone") as info:
        IlpSolver().solve(problem, [bops, size])
    assert info.value.reachable is not None and info.value.reachable > bops.limit / problem.reference("bops")
