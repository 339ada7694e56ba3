from __future__ import annotations

import sys

import numpy as np
import pytest

from mixq.core.budget import CostBudget, CostUnit
from mixq.errors import ConfigError, InfeasibleBudgetError
from mixq.solvers import ExhaustiveSolver, GreedySolver, IlpConfig, IlpSolver
from mixq.testing.problems import problem_from_sqnr, random_problem

ALL = ("w4a8", "w8a8", "w8a16", "fp16")


def test_ilp_equals_the_exhaustive_optimum_on_random_problems() -> None:
    rng = np.random.default_rng(123)
    for seed in range(20):
        n_groups = int(rng.integers(2, 9))
        candidates = ALL if seed % 2 else ALL[:3]
        problem = random_problem(n_groups, candidates, seed, varied_candidates=seed % 3 == 0)
        low, high = problem.min_cost("bops"), problem.max_cost("bops")
        budgets = [CostBudget("bops", float(rng.uniform(low, high)), CostUnit.ABSOLUTE)]
        if seed % 4 == 0:
            low, high = problem.min_cost("size"), problem.max_cost("size")
            budgets.append(CostBudget("size", float(rng.uniform(low, high)), CostUnit.ABSOLUTE))
        try:
            exact = ExhaustiveSolver().solve(problem, budgets)
        except InfeasibleBudgetError:
            with pytest.raises(InfeasibleBudgetError):
                IlpSolver().solve(problem, budgets)
            continue
        point = IlpSolver().solve(problem, budgets)
        assert point.predicted_noise == pytest.approx(exact.predicted_noise, rel=1e-7)
        assert problem.meets(point.costs, budgets)


def test_noise_spanning_eight_decades_keeps_its_differences() -> None:
    sqnr = {f"g{i}": {"w4a8": 0.0 + 10 * i, "w8a8": 5.0 + 10 * i, "w8a16": 8.0 + 10 * i} for i in range(8)}
    problem = problem_from_sqnr(sqnr, macs={f"g{i}": 1000 * (i + 1) for i in range(8)})
    for ratio in (0.3, 0.4, 0.55, 0.8):
        budgets = [CostBudget("bops", ratio, CostUnit.RATIO)]
        exact = ExhaustiveSolver().solve(problem, budgets)
        assert IlpSolver().solve(problem, budgets).predicted_noise == pytest.approx(exact.predicted_noise, rel=1e-9)


def test_curve_points_are_exact_and_monotone() -> None:
    problem = random_problem(7, ALL[:3], seed=11)
    curve = IlpSolver(IlpConfig(curve_points=12)).curve(problem)
    bops = [p.costs["bops"] for p in curve.points]
    noise = [p.predicted_noise for p in curve.points]
    assert all(b < a for a, b in zip(bops, bops[1:])) and all(b > a for a, b in zip(noise, noise[1:]))
    assert bops[-1] == pytest.approx(problem.min_cost("bops"))
    for point in curve.points:
        exact = ExhaustiveSolver().solve(problem, [CostBudget("bops", point.costs["bops"], CostUnit.ABSOLUTE)])
        assert point.predicted_noise == pytest.approx(exact.predicted_noise, rel=1e-7)


def test_greedy_never_beats_the_ilp() -> None:
    problem = random_problem(40, ALL, seed=2)
    for ratio in (0.3, 0.375, 0.5, 0.7):
        budgets = [CostBudget("bops", ratio, CostUnit.RATIO)]
        greedy, ilp = GreedySolver().solve(problem, budgets), IlpSolver().solve(problem, budgets)
        assert ilp.predicted_noise <= greedy.predicted_noise * (1 + 1e-7)
        assert ilp.ratios["bops"] <= ratio * (1 + 1e-9)


def test_infeasible_budget_reports_the_minimum() -> None:
    problem = random_problem(5, ALL[:3], seed=0)
    with pytest.raises(InfeasibleBudgetError, match="reaches bops 0.250") as info:
        IlpSolver().solve(problem, [CostBudget("bops", 0.2, CostUnit.RATIO)])
    assert info.value.reachable == pytest.approx(0.25)


def test_exact_cost_limit_is_admitted() -> None:
    problem = random_problem(6, ALL[:3], seed=4)
    point = IlpSolver().solve(problem, [CostBudget("bops", 0.25, CostUnit.RATIO)])
    assert point.assignment.counts() == {"w4a8": 6}


def test_highs_chatter_stays_off_stdout(capfd: pytest.CaptureFixture[str]) -> None:
    sys.stdout.write("before\n")
    IlpSolver(IlpConfig(curve_points=8)).curve(random_problem(60, ALL, seed=2))  # makes HiGHS 1.12 chatter
    sys.stdout.write("after\n")
    assert capfd.readouterr().out == "before\nafter\n"


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"time_limit_s": 0}, "time_limit_s"), ({"curve_points": 1}, "curve_points")]
)
def test_config_validation(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        IlpConfig(**kwargs)  # type: ignore[arg-type]
