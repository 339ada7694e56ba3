from __future__ import annotations

import math

import numpy as np
import pytest

from mixq.core.assignment import Assignment
from mixq.core.budget import CostBudget, QualityTarget, parse_budget
from mixq.core.quality import Quality
from mixq.errors import ConfigError, InfeasibleBudgetError
from mixq.solvers import ExhaustiveSolver, GreedySolver, IlpSolver
from mixq.solvers.base import AllocationProblem, ParetoCurve
from mixq.solvers.select import feasible_indices, select_by_cost, select_by_quality
from mixq.testing.problems import problem_from_sqnr, random_problem

STANDARD = ("w4a8", "w8a8", "w8a16")


def budget(text: str) -> CostBudget:
    parsed = parse_budget(text)
    assert isinstance(parsed, CostBudget)
    return parsed


def target(text: str) -> QualityTarget:
    parsed = parse_budget(text)
    assert isinstance(parsed, QualityTarget)
    return parsed


# --- select_by_cost -------------------------------------------------------------------------------


def test_select_by_cost_takes_the_first_point_meeting_every_budget() -> None:
    problem = random_problem(10, STANDARD, seed=2)
    curve = GreedySolver().curve(problem)
    budgets = [budget("bops<=0.5"), budget("size<=20%")]
    point = select_by_cost(curve, problem, budgets)
    index = curve.points.index(point)
    assert point.ratios["bops"] <= 0.5 and point.ratios["size"] <= 0.2
    assert index == feasible_indices(curve, problem, budgets)[0]
    assert select_by_cost(curve, problem, []) is curve.points[0]


def test_budget_below_the_cheapest_configuration_reports_the_true_minimum() -> None:
    problem = random_problem(6, STANDARD, seed=0)
    curve = GreedySolver().curve(problem)
    with pytest.raises(InfeasibleBudgetError) as info:
        select_by_cost(curve, problem, [budget("bops<=0.2")])
    assert "bops<=0.2 cannot be met: the cheapest configuration reaches bops 0.250" in str(info.value)
    assert "raise the budget" in str(info.value) and "w4a8" in str(info.value)
    assert info.value.reachable == pytest.approx(0.25)


@pytest.mark.parametrize(("text", "shown"), [("size<=1%", "%"), ("size<=0.001", "MB")])
def test_size_minimum_is_reported_in_the_unit_the_budget_was_written_in(text: str, shown: str) -> None:
    problem = random_problem(6, STANDARD, seed=1)
    lowest = problem.min_cost("size")
    with pytest.raises(InfeasibleBudgetError) as info:
        select_by_cost(GreedySolver().curve(problem), problem, [budget(text)])
    expected = lowest / problem.reference("size") if shown == "%" else lowest
    assert info.value.reachable == pytest.approx(expected)
    value = f"{expected * 100:.1f}%" if shown == "%" else f"{expected / 1e6:.4g}MB"
    assert f"the cheapest configuration reaches size {value}" in str(info.value)


def test_minimum_reachable_is_over_every_assignment_with_varied_candidates() -> None:
    problem = random_problem(7, ("w4a8", "w8a8", "w8a16", "fp16"), seed=5, varied_candidates=True)
    brute = min(p.costs["bops"] for p in ExhaustiveSolver().curve(problem).points)
    assert problem.min_cost("bops") == pytest.approx(brute)
    with pytest.raises(InfeasibleBudgetError) as info:
        GreedySolver().solve(problem, [budget(f"bops<={0.99 * brute / problem.reference('bops')}")])
    assert info.value.reachable == pytest.approx(brute / problem.reference("bops"))


def test_hint_names_a_cheaper_candidate_that_is_missing() -> None:
    problem = random_problem(4, ("w8a8", "w8a16"), seed=0)
    with pytest.raises(InfeasibleBudgetError, match="such as w4a8") as info:
        GreedySolver().solve(problem, [budget("bops<=0.3")])
    assert info.value.reachable == pytest.approx(0.5)


def _detour_problem(sqnr_w4a16: float) -> AllocationProblem:
    # w4a16 halves the weight bytes but not the BOPs of w8a4; greedy on BOPs may never visit it.
    return problem_from_sqnr(
        {"a": {"w8a16": 40.0, "w4a16": sqnr_w4a16, "w8a4": 30.0}}, macs={"a": 1000}, weight_numel={"a": 1000}
    )


def test_size_budget_reachable_only_off_the_bops_curve_says_so() -> None:
    problem = _detour_problem(sqnr_w4a16=10.0)  # greedy jumps w8a16 -> w8a4
    size = budget("size<=0.0006")  # 600 bytes: only w4a16 (500 + 16 scales * 4 = 564) fits
    with pytest.raises(InfeasibleBudgetError) as info:
        GreedySolver().solve(problem, [size])
    message = str(info.value)
    assert "not along the bops trade-off curve" in message and "--cost size" in message
    assert "the cheapest configuration reaches size 0.000564MB" in message
    assert info.value.reachable == pytest.approx(1064)
    for solver in (ExhaustiveSolver(), IlpSolver()):
        assert str(solver.solve(problem, [size]).assignment["a"]) == "w4a16"
    along_size = problem_from_sqnr(
        {"a": {"w8a16": 40.0, "w4a16": 10.0, "w8a4": 30.0}}, macs={"a": 1000}, weight_numel={"a": 1000}, primary="size"
    )
    assert str(GreedySolver().solve(along_size, [size]).assignment["a"]) == "w4a16"


def test_budgets_met_alone_but_not_together_say_so() -> None:
    problem = _detour_problem(sqnr_w4a16=35.0)  # curve: w8a16, w4a16 (small), w8a4 (few BOPs)
    curve = GreedySolver().curve(problem)
    assert [str(p.assignment["a"]) for p in curve.points] == ["w8a16", "w4a16", "w8a4"]
    budgets = [budget("bops<=0.3"), budget("size<=0.0006")]
    with pytest.raises(InfeasibleBudgetError) as info:
        select_by_cost(curve, problem, budgets)
    assert "bops<=0.3 and size<=0.0006MB cannot be met together" in str(info.value)
    assert info.value.reachable == pytest.approx(0.5)  # best BOPs while meeting the size budget
    with pytest.raises(InfeasibleBudgetError, match="cannot be met together") as info:
        IlpSolver().solve(problem, budgets)
    assert info.value.reachable == pytest.approx(0.5)


def test_unknown_cost_name_is_a_config_error() -> None:
    problem = random_problem(3, STANDARD, seed=0)
    with pytest.raises(ConfigError, match="no cost model named 'latency'"):
        GreedySolver().solve(problem, [CostBudget("latency", 1.0, budget("bops<=1").unit)])


# --- select_by_quality ----------------------------------------------------------------------------


class Oracle:
    """Measured agreement per curve index, counting calls."""

    def __init__(self, curve: ParetoCurve, values: list[float]) -> None:
        self.index = {tuple(sorted(p.assignment.to_dict().items())): i for i, p in enumerate(curve.points)}
        self.values = values
        self.calls: list[int] = []

    def __call__(self, assignment: Assignment) -> Quality:
        i = self.index[tuple(sorted(assignment.to_dict().items()))]
        self.calls.append(i)
        return Quality(n_samples=1000, agreement=self.values[i], sqnr_db=40.0 - i, top1=0.8 - 0.01 * i)


@pytest.fixture(scope="module")
def curve() -> ParetoCurve:
    return GreedySolver().curve(random_problem(12, STANDARD, seed=7))


def test_monotone_quality_finds_the_cheapest_passing_point_in_log_steps(curve: ParetoCurve) -> None:
    n = len(curve)
    values = list(np.linspace(1.0, 0.9, n))
    for threshold in (0.999, 0.97, 0.95, 0.93, 0.9):
        oracle = Oracle(curve, values)
        chosen = select_by_quality(curve, target(f"agreement>={threshold}"), oracle)
        expected = max(i for i, v in enumerate(values) if v >= threshold)
        assert chosen.index == expected
        assert chosen.point is curve.points[expected]
        assert chosen.quality.agreement == values[expected]
        assert len(oracle.calls) == len(set(oracle.calls))  # cached: never measured twice
        assert len(oracle.calls) <= 1 + math.ceil(math.log2(n))
        assert [i for i, _ in chosen.evaluations] == oracle.calls


def test_non_monotone_quality_never_returns_a_failing_point(curve: ParetoCurve) -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        values = list(rng.choice([0.95, 0.999], size=len(curve)))
        values[0] = 0.999
        oracle = Oracle(curve, values)
        chosen = select_by_quality(curve, target("agreement>=0.99"), oracle)
        assert chosen.index in oracle.calls
        assert values[chosen.index] >= 0.99
        measured = dict(chosen.evaluations)
        assert all(measured[i].agreement < 0.99 for i in measured if i > chosen.index)


def test_unreachable_target_reports_the_best_measured_value(curve: ParetoCurve) -> None:
    oracle = Oracle(curve, [0.984] + [0.95] * (len(curve) - 1))
    with pytest.raises(InfeasibleBudgetError) as info:
        select_by_quality(curve, target("agreement>=0.999"), oracle)
    message = str(info.value)
    assert "agreement>=0.999 cannot be met: the best configuration on the curve reaches 0.984" in message
    assert "lower the target" in message and "fp16" in message
    assert info.value.reachable == pytest.approx(0.984)
    assert oracle.calls == [0]


def test_candidates_restrict_the_search(curve: ParetoCurve) -> None:
    values = list(np.linspace(1.0, 0.9, len(curve)))
    oracle = Oracle(curve, values)
    allowed = list(range(4, 9))
    chosen = select_by_quality(curve, target("agreement>=0.5"), oracle, candidates=allowed)
    assert chosen.index == 8
    assert oracle.calls[0] == 4 and set(oracle.calls) <= set(allowed)
    with pytest.raises(InfeasibleBudgetError, match="cost budgets"):
        select_by_quality(curve, target("agreement>=0.5"), oracle, candidates=[])
    with pytest.raises(ConfigError, match="candidate indices"):
        select_by_quality(curve, target("agreement>=0.5"), oracle, candidates=[len(curve)])


def test_sqnr_and_drop_targets(curve: ParetoCurve) -> None:
    oracle = Oracle(curve, [1.0] * len(curve))
    assert select_by_quality(curve, target("sqnr>=35"), oracle).index == 5  # sqnr = 40 - index
    float_quality = Quality(n_samples=1000, top1=0.8)
    chosen = select_by_quality(curve, target("drop<=3.5"), Oracle(curve, [1.0] * len(curve)), float_quality)
    assert chosen.index == 3  # drop = index points
    with pytest.raises(InfeasibleBudgetError, match="drop of 2.00 points") as info:
        late = list(range(2, len(curve)))
        select_by_quality(curve, target("drop<=1"), Oracle(curve, [1.0] * len(curve)), float_quality, late)
    assert info.value.reachable == pytest.approx(2.0)
