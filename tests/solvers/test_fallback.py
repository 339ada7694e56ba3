"""Accuracy-driven fallback: binary search over the sensitivity ranking, O(log n) real evaluations."""

from __future__ import annotations

import math

import pytest

from mixq.core.assignment import Assignment
from mixq.core.budget import CostBudget, CostUnit, QualityTarget, parse_budget
from mixq.core.quality import Quality
from mixq.errors import ConfigError, InfeasibleBudgetError
from mixq.solvers import FallbackSolver, Loop
from mixq.solvers.base import AllocationProblem
from mixq.solvers.fallback import cheapest_choice, evaluation_bound, ranking
from mixq.solvers.greedy import start_choice
from mixq.testing.problems import random_problem

STANDARD = ("w4a8", "w8a8", "w8a16")


def target(text: str) -> QualityTarget:
    parsed = parse_budget(text)
    assert isinstance(parsed, QualityTarget)
    return parsed


class Counting:
    """A monotone synthetic quality: the predicted SQNR (restoring a group never lowers it)."""

    def __init__(self, problem: AllocationProblem) -> None:
        self.problem, self.calls = problem, 0

    def __call__(self, assignment: Assignment) -> Quality:
        self.calls += 1
        return Quality(1, sqnr_db=self.problem.predicted_sqnr_db(assignment))


def prefix(problem: AllocationProblem, k: int) -> Assignment:
    choice = [cheapest_choice(o, problem.primary) for o in problem.options]
    for position in ranking(problem)[:k]:
        choice[position] = start_choice(problem.options[position], problem.primary)
    return problem.point_from_choice(choice).assignment


@pytest.mark.parametrize("n_groups", [1, 5, 40, 120])
def test_meets_the_target_with_the_shortest_prefix_in_log_n_evaluations(n_groups: int) -> None:
    problem = random_problem(n_groups, STANDARD, seed=n_groups)
    low = problem.predicted_sqnr_db(prefix(problem, 0))
    high = problem.predicted_sqnr_db(prefix(problem, n_groups))
    for fraction in (0.0, 0.3, 0.7, 1.0):
        goal = target(f"sqnr>={low + fraction * (high - low) - 1e-6:.6f}")
        evaluate = Counting(problem)
        result = FallbackSolver().search(problem, [], goal, Loop(evaluate))
        shortest = next(k for k in range(n_groups + 1) if goal.met(evaluate(prefix(problem, k))))
        assert result.point.assignment == prefix(problem, shortest)
        assert result.quality is not None and goal.met(result.quality)
        evaluations = result.details["evaluations"]
        assert evaluations == len(result.evaluations) <= math.ceil(math.log2(n_groups + 1)) + 1
        assert evaluations <= result.details["evaluation_bound"] == evaluation_bound(n_groups + 1)
        assert result.details["restored"] == [problem.options[p].group for p in ranking(problem)[:shortest]]


def test_ranking_puts_the_noisiest_restorable_group_first() -> None:
    problem = random_problem(30, STANDARD, seed=1)
    gains = [problem.options[p].noise[0] - problem.options[p].noise[2] for p in ranking(problem)]
    assert gains == sorted(gains, reverse=True) and len(gains) == 30


def test_cost_budgets_cap_the_prefix() -> None:
    problem = random_problem(20, STANDARD, seed=4)
    budgets = [CostBudget("bops", 0.4, CostUnit.RATIO)]
    goal = target("sqnr>=0")  # met by everything: the cheapest prefix wins
    result = FallbackSolver().search(problem, budgets, goal, Loop(Counting(problem)))
    assert result.point.assignment == prefix(problem, 0)
    high = problem.predicted_sqnr_db(prefix(problem, 20))
    with pytest.raises(InfeasibleBudgetError, match=r"sqnr>=.* cannot be met") as info:
        FallbackSolver().search(problem, budgets, target(f"sqnr>={high}"), Loop(Counting(problem)))
    assert info.value.reachable is not None and info.value.reachable < high
    with pytest.raises(InfeasibleBudgetError, match="reaches bops 0.250"):
        FallbackSolver().search(problem, [CostBudget("bops", 0.2, CostUnit.RATIO)], goal, Loop(Counting(problem)))


def test_unreachable_target_reports_the_best_measured() -> None:
    problem = random_problem(10, STANDARD, seed=2)
    high = problem.predicted_sqnr_db(prefix(problem, 10))
    with pytest.raises(InfeasibleBudgetError) as info:
        FallbackSolver().search(problem, [], target(f"sqnr>={high + 5}"), Loop(Counting(problem)))
    assert info.value.reachable == pytest.approx(high)


def test_needs_a_quality_target() -> None:
    problem = random_problem(3, STANDARD, seed=0)
    with pytest.raises(ConfigError, match="quality target"):
        FallbackSolver().search(problem, [CostBudget("bops", 0.5, CostUnit.RATIO)], None, Loop(Counting(problem)))
