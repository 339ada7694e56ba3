from __future__ import annotations

import itertools

import pytest

from mixq.core.assignment import Assignment
from mixq.core.budget import CostBudget, CostUnit, parse_budget
from mixq.errors import ConfigError, InfeasibleBudgetError
from mixq.solvers import ExhaustiveSolver
from mixq.solvers.base import AllocationProblem
from mixq.solvers.pareto import dominates
from mixq.testing.problems import random_problem


def every_assignment(problem: AllocationProblem) -> list[Assignment]:
    groups = list(problem.graph)
    return [
        Assignment({g.id: p for g, p in zip(groups, combo)})
        for combo in itertools.product(*(g.candidates for g in groups))
    ]


def test_solve_matches_a_plain_python_brute_force() -> None:
    for seed in range(4):
        problem = random_problem(5, ("w4a8", "w8a8", "w8a16"), seed, varied_candidates=True)
        everything = every_assignment(problem)
        for ratio in (0.3, 0.45, 0.6, 0.9):
            limit = CostBudget("bops", ratio, CostUnit.RATIO)
            allowed = [a for a in everything if problem.ratio_of("bops", a) <= ratio]
            if not allowed:
                with pytest.raises(InfeasibleBudgetError):
                    ExhaustiveSolver().solve(problem, [limit])
                continue
            best = min(problem.predicted_noise(a) for a in allowed)
            point = ExhaustiveSolver().solve(problem, [limit])
            assert point.predicted_noise == pytest.approx(best, rel=1e-9)
            assert point.ratios["bops"] <= ratio


def test_curve_is_the_exact_front() -> None:
    problem = random_problem(5, ("w4a8", "w8a8", "w8a16"), seed=1)
    curve = ExhaustiveSolver().curve(problem)
    pairs = [(p.costs["bops"], -p.predicted_noise) for p in curve.points]
    assert all(b[0] < a[0] and b[1] < a[1] for a, b in zip(pairs, pairs[1:]))  # cheaper and noisier
    for assignment in every_assignment(problem):
        candidate = (problem.cost_of("bops", assignment), -problem.predicted_noise(assignment))
        assert not any(dominates(candidate, (c, q + 1e-12 * abs(q))) for c, q in pairs)  # front is optimal
        assert any(c <= candidate[0] and q >= candidate[1] - 1e-12 * abs(q) for c, q in pairs)  # and complete
    assert curve.points[-1].costs["bops"] == pytest.approx(problem.min_cost("bops"))
    assert all(p.step is None for p in curve.points)


def test_two_budgets_at_once() -> None:
    problem = random_problem(6, ("w4a8", "w8a8", "w8a16"), seed=3)
    budgets = [CostBudget("bops", 0.6, CostUnit.RATIO), CostBudget("size", 0.15, CostUnit.RATIO)]
    point = ExhaustiveSolver().solve(problem, budgets)
    allowed = [a for a in every_assignment(problem) if problem.ratio_of("bops", a) <= 0.6]
    allowed = [a for a in allowed if problem.ratio_of("size", a) <= 0.15]
    assert point.predicted_noise == pytest.approx(min(problem.predicted_noise(a) for a in allowed), rel=1e-9)


def test_infeasible_budget_reports_the_minimum() -> None:
    problem = random_problem(4, ("w4a8", "w8a8"), seed=0)
    budget = parse_budget("bops<=0.1")
    assert isinstance(budget, CostBudget)
    with pytest.raises(InfeasibleBudgetError, match="reaches bops 0.250") as info:
        ExhaustiveSolver().solve(problem, [budget])
    assert info.value.reachable == pytest.approx(0.25)


def test_refuses_problems_too_big_to_enumerate() -> None:
    problem = random_problem(21, ("w4a8", "w8a8"), seed=0)
    with pytest.raises(ConfigError, match="2097152 assignments.*--solver ilp"):
        ExhaustiveSolver().curve(problem)


def test_front_records_store_every_assignment() -> None:
    problem = random_problem(4, ("w4a8", "w8a8", "w8a16"), seed=2)
    curve = ExhaustiveSolver().curve(problem)
    records = curve.to_records()
    assert all("assignment" in r and r["step"] is None for r in records)
    again = type(curve).from_records(records, problem.graph)
    assert [p.assignment for p in again.points] == [p.assignment for p in curve.points]
