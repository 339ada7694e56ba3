from __future__ import annotations

import json
import time

import pytest

from mixq.core.budget import CostBudget, CostUnit, parse_budget
from mixq.core.precision import Precision
from mixq.cost import total_cost
from mixq.errors import ConfigError
from mixq.solvers import SOLVERS, ExhaustiveSolver, GreedySolver, ParetoCurve, get_solver
from mixq.solvers.base import AllocationProblem, CurvePoint
from mixq.testing.problems import problem_from_sqnr, random_problem

W4A8, W8A8, W8A16 = Precision(4, 8), Precision(8, 8), Precision(8, 16)
STANDARD = ("w4a8", "w8a8", "w8a16")


def budget(text: str) -> CostBudget:
    parsed = parse_budget(text)
    assert isinstance(parsed, CostBudget)
    return parsed


def check_point(problem: AllocationProblem, point: CurvePoint) -> None:
    for name, model in problem.costs.items():
        assert point.costs[name] == pytest.approx(total_cost(model, problem.graph, point.assignment), rel=1e-12)
        assert point.ratios[name] == pytest.approx(point.costs[name] / model.reference(problem.graph), rel=1e-12)
    assert point.predicted_sqnr_db == pytest.approx(problem.predicted_sqnr_db(point.assignment), rel=1e-12)


def test_sensitive_group_keeps_the_highest_precision_under_a_tight_budget() -> None:
    problem = problem_from_sqnr(
        {
            "robust": {"w4a8": 35.0, "w8a8": 45.0, "w8a16": 50.0},
            "fragile": {"w4a8": 3.0, "w8a8": 12.0, "w8a16": 40.0},
        },
        macs={"robust": 1000, "fragile": 1000},
    )
    # (128 + 32) / 256 = 0.625: room for exactly one group at w8a16 and the other at w4a8.
    point = GreedySolver().solve(problem, [budget("bops<=0.625")])
    assert point.assignment["fragile"] == W8A16
    assert point.assignment["robust"] == W4A8
    assert point.ratios["bops"] == pytest.approx(0.625)


def test_walk_starts_at_the_least_noisy_and_ends_at_the_cheapest_candidates() -> None:
    problem = random_problem(12, seed=3)
    curve = GreedySolver().curve(problem)
    for option in problem.options:  # the top (w8a16), except where phase 1 found w8a8 quieter
        quietest = min(range(len(option.noise)), key=lambda c: option.noise[c])
        assert curve.points[0].assignment[option.group] == option.precisions[quietest]
    assert curve.points[0].assignment.counts()["w8a16"] >= 6
    assert curve.points[-1].assignment.counts() == {"w4a8": 12}
    assert curve.points[0].step is None
    assert 1 + 12 <= len(curve) <= 1 + 12 * 2  # every group moves once or twice
    assert curve.points[-1].costs["bops"] == pytest.approx(problem.min_cost("bops"))


def test_curve_is_monotone_and_every_point_is_consistent() -> None:
    for seed in range(5):
        problem = random_problem(15, ("w4a8", "w8a8", "w8a16", "fp16"), seed, varied_candidates=True)
        curve = GreedySolver().curve(problem)
        bops = [p.costs["bops"] for p in curve.points]
        assert all(after < before for before, after in zip(bops, bops[1:]))
        for before, point in zip(curve.points, curve.points[1:]):
            check_point(problem, point)
            assert point.step is not None
            group, old, new = point.step
            assert str(before.assignment[group]) == old and str(point.assignment[group]) == new
            changed = [g for g in problem.graph.ids if before.assignment[g] != point.assignment[g]]
            assert changed == [group]
            assert point.assignment[group] in problem.graph[group].candidates
        check_point(problem, curve.points[0])


def test_start_ties_go_to_the_least_noisy_candidate() -> None:
    # w8a8 and w4a16 cost the same BOPs; the start must pick the quieter one.
    problem = problem_from_sqnr({"a": {"w4a16": 20.0, "w8a8": 30.0, "w4a8": 10.0}})
    curve = GreedySolver().curve(problem)
    assert str(curve.points[0].assignment["a"]) == "w8a8"
    assert [str(p.assignment["a"]) for p in curve.points] == ["w8a8", "w4a8"]


def test_equal_rates_prefer_the_larger_saving_then_graph_order() -> None:
    same = {"w4a8": 30.0, "w8a16": 30.0}  # dropping costs no noise at all: rate 0 for both
    problem = problem_from_sqnr({"small": same, "big": same}, macs={"small": 1000, "big": 2000})
    assert GreedySolver().curve(problem).points[1].step == ("big", "w8a16", "w4a8")
    twins = {"w4a8": 20.0, "w8a16": 40.0}
    problem = problem_from_sqnr({"first": twins, "second": twins})
    assert GreedySolver().curve(problem).points[1].step == ("first", "w8a16", "w4a8")


def test_a_candidate_both_costlier_and_noisier_is_never_used() -> None:
    # "odd" measures quieter at w4a8 than at w8a16 (as a measured latency can make int8 slower than
    # float): it starts at w4a8 and the curve's first point is the least noisy one
    problem = problem_from_sqnr(
        {"ordinary": {"w4a8": 30.0, "w8a16": 50.0}, "odd": {"w4a8": 40.0, "w8a16": 35.0}},
        macs={"ordinary": 10_000, "odd": 10},
    )
    curve = GreedySolver().curve(problem)
    assert [str(p.assignment["odd"]) for p in curve.points] == ["w4a8", "w4a8"]
    assert curve.points[1].step == ("ordinary", "w8a16", "w4a8")
    noise = [p.predicted_noise for p in curve.points]
    assert noise == sorted(noise)  # a proper trade-off curve: noise only grows as cost falls


def test_greedy_meets_budgets_and_picks_the_first_point_that_does() -> None:
    for seed in range(8):
        problem = random_problem(10, STANDARD, seed)
        curve = GreedySolver().curve(problem)
        for text in ("bops<=0.3", "bops<=0.5", "bops<=0.75", "size<=20%"):
            point = GreedySolver().solve(problem, [budget(text)])
            limit = problem.limit(budget(text))
            name = budget(text).cost
            assert point.costs[name] <= limit * (1 + 1e-9)
            index = next(i for i, p in enumerate(curve.points) if p.assignment == point.assignment)
            assert all(p.costs[name] > limit for p in curve.points[:index])


def test_greedy_is_never_better_than_the_exact_optimum() -> None:
    for seed in range(5):
        problem = random_problem(6, STANDARD, seed)
        for point in GreedySolver().curve(problem).points:
            limit = CostBudget("bops", point.costs["bops"], CostUnit.ABSOLUTE)
            exact = ExhaustiveSolver().solve(problem, [limit])
            assert exact.predicted_noise <= point.predicted_noise * (1 + 1e-9)


def test_curve_records_are_json_compact_and_round_trip() -> None:
    problem = random_problem(20, STANDARD, seed=4)
    curve = GreedySolver().curve(problem)
    records = json.loads(json.dumps(curve.to_records()))
    assert [r["index"] for r in records] == list(range(len(curve)))
    assert "assignment" in records[0] and all("assignment" not in r for r in records[1:])
    assert records[0]["primary"] == "bops"
    assert records[5]["counts"] == curve.points[5].assignment.counts()
    again = ParetoCurve.from_records(records, problem.graph)
    assert again.primary == "bops"
    for a, b in zip(curve.points, again.points):
        assert a.assignment == b.assignment and a.step == b.step
        assert a.costs == pytest.approx(b.costs) and a.predicted_sqnr_db == pytest.approx(b.predicted_sqnr_db)


def test_records_without_assignment_or_step_are_rejected() -> None:
    problem = random_problem(3, STANDARD, seed=0)
    records = GreedySolver().curve(problem).to_records()
    records[2]["step"] = None
    with pytest.raises(ConfigError, match="neither an assignment nor a step"):
        ParetoCurve.from_records(records, problem.graph)


def test_two_hundred_groups_are_fast() -> None:
    problem = random_problem(200, ("w4a8", "w8a8", "w8a16", "fp16"), seed=0)
    started = time.perf_counter()
    curve = GreedySolver().curve(problem)
    assert time.perf_counter() - started < 2.0
    assert len(curve) <= 1 + 200 * 3
    assert curve.points[-1].assignment.counts() == {"w4a8": 200}


def test_registry() -> None:
    assert SOLVERS.names() == ["greedy", "ilp", "iqp", "fallback", "evolution", "exhaustive"]
    assert all(get_solver(name).name == name for name in SOLVERS)
    with pytest.raises(ConfigError, match="greedy, ilp, iqp, fallback, evolution, exhaustive"):
        get_solver("annealing")


def test_problem_validation_names_the_group() -> None:
    problem = random_problem(2, STANDARD, seed=0)
    with pytest.raises(ConfigError, match="primary cost 'latency'"):
        AllocationProblem(problem.graph, problem.sensitivity, problem.costs, primary="latency")
    partial = type(problem.sensitivity)({k: v for k, v in problem.sensitivity.sqnr_db.items() if k[0] != "layer001"})
    with pytest.raises(ConfigError, match="'layer001' at w4a8"):
        AllocationProblem(problem.graph, partial, problem.costs)
