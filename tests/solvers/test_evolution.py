"""Closed-loop evolution: seeded with greedy and ILP, bounded, deterministic, never worse than its seeds."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from mixq.core.assignment import Assignment
from mixq.core.budget import CostBudget, CostUnit, QualityTarget, parse_budget
from mixq.core.precision import Precision
from mixq.core.quality import Quality
from mixq.core.tables import nsr_to_db
from mixq.errors import ConfigError, InfeasibleBudgetError
from mixq.solvers import EvolutionConfig, EvolutionSolver, GreedySolver, IlpSolver, Loop
from mixq.solvers.base import AllocationProblem
from mixq.solvers.iqp import quadratic_noise
from mixq.testing.problems import random_problem

STANDARD = ("w4a8", "w8a8", "w8a16")
W8A16 = Precision.parse("w8a16")


class Measured:
    """A 'real' quality the table does not fully predict: the additive noise plus hidden interactions."""

    def __init__(self, problem: AllocationProblem, hidden: Mapping | None = None) -> None:
        self.problem, self.hidden, self.calls = problem, hidden or {}, []

    def __call__(self, assignment: Assignment) -> Quality:
        self.calls.append(assignment)
        return self.truth(assignment)

    def truth(self, assignment: Assignment) -> Quality:
        """The same figure without counting a call (for the test's own checks)."""
        noise = quadratic_noise(self.problem, self.hidden, assignment)
        return Quality(1, sqnr_db=nsr_to_db(noise), agreement=min(1.0, noise ** -0.05 / 2))


def budgets(ratio: float) -> list[CostBudget]:
    return [CostBudget("bops", ratio, CostUnit.RATIO)]


def planted(problem: AllocationProblem, limits: list[CostBudget]) -> dict:
    """Make the ILP's answer bad in reality: a large hidden interaction between two of its lowered groups."""
    ilp = IlpSolver().solve(problem, limits).assignment
    low = [g for g in problem.graph.ids if ilp[g] != W8A16]
    g, h = sorted(low, key=lambda group: -problem.sensitivity.noise(group, ilp[group]))[:2]
    return {(g, ilp[g], h, ilp[h]): 30 * problem.predicted_noise(ilp)}


def test_same_seed_same_search_other_seed_other_path() -> None:
    problem = random_problem(12, STANDARD, seed=3)
    hidden = planted(problem, budgets(0.35))
    runs = []
    for seed in (11, 11, 12):
        evaluate = Measured(problem, hidden)
        result = EvolutionSolver(EvolutionConfig(max_evaluations=15, seed=seed)).search(
            problem, budgets(0.35), None, Loop(evaluate))
        runs.append((result.point.assignment, [a.to_dict() for a in evaluate.calls]))
    assert runs[0] == runs[1]
    assert runs[0][1] != runs[2][1]


def test_stays_in_budget_and_never_below_its_seeds() -> None:
    for seed in range(4):
        problem = random_problem(10, STANDARD, seed)
        limits = budgets(0.4) + [CostBudget("size", 0.2, CostUnit.RATIO)]
        hidden = planted(problem, limits) if seed % 2 else {}
        evaluate = Measured(problem, hidden)
        result = EvolutionSolver(EvolutionConfig(max_evaluations=12, seed=seed)).search(
            problem, limits, None, Loop(evaluate))
        assert len(evaluate.calls) == len({tuple(sorted(a.to_dict().items())) for a in evaluate.calls}) <= 12
        assert result.details["evaluations"] == len(evaluate.calls) == len(result.evaluations)
        measured = [evaluate.truth(a).sqnr_db for a in evaluate.calls]
        assert result.quality is not None and result.quality.sqnr_db == max(measured)
        seeds = [IlpSolver().solve(problem, limits), GreedySolver().solve(problem, limits)]
        assert result.quality.sqnr_db >= max(evaluate.truth(s.assignment).sqnr_db for s in seeds)
        for point in result.curve.points:
            assert problem.meets(point.costs, limits)


def test_finds_what_the_table_cannot_predict() -> None:
    problem = random_problem(10, STANDARD, seed=5)
    limits = budgets(0.35)
    hidden = planted(problem, limits)
    evaluate = Measured(problem, hidden)
    ilp_value = evaluate.truth(IlpSolver().solve(problem, limits).assignment).sqnr_db
    result = EvolutionSolver(EvolutionConfig(max_evaluations=20, seed=0)).search(problem, limits, None, Loop(evaluate))
    assert result.quality is not None and result.quality.sqnr_db > ilp_value + 3
    assert result.details["best_from"] == "offspring"


def test_with_a_target_it_lowers_the_cost_while_meeting_it() -> None:
    problem = random_problem(12, STANDARD, seed=1)
    goal = parse_budget("agreement>=0.6")
    assert isinstance(goal, QualityTarget)
    evaluate = Measured(problem)
    result = EvolutionSolver(EvolutionConfig(max_evaluations=25, seed=0)).search(problem, [], goal, Loop(evaluate))
    assert result.quality is not None and goal.met(result.quality)
    met = [a for a in evaluate.calls if goal.met(evaluate.truth(a))]
    assert result.point.costs["bops"] == min(problem.cost_of("bops", a) for a in met)
    seeded = [r for r in result.evaluations if r["index"] is not None]
    assert len(seeded) == len(result.evaluations) == result.details["evaluations"] <= 25


def test_errors_are_clear() -> None:
    problem = random_problem(5, STANDARD, seed=0)
    with pytest.raises(ConfigError, match="cost budget or a quality target"):
        EvolutionSolver().search(problem, [], None, Loop(Measured(problem)))
    with pytest.raises(InfeasibleBudgetError, match="reaches bops 0.250"):
        EvolutionSolver().search(problem, budgets(0.2), None, Loop(Measured(problem)))
    with pytest.raises(InfeasibleBudgetError, match="cannot be met"):
        unreachable = parse_budget("sqnr>=500")
        assert isinstance(unreachable, QualityTarget)
        EvolutionSolver().search(problem, [], unreachable, Loop(Measured(problem)))
    with pytest.raises(ConfigError, match="max_evaluations"):
        EvolutionConfig(max_evaluations=0)


def test_evolution_reports_each_evaluation_with_its_total(caplog: pytest.LogCaptureFixture) -> None:
    from mixq.core.quality import Quality
    from mixq.solvers.evolution import EVALUATIONS_STAGE, reporting

    calls: list[tuple[str, int, int]] = []
    evaluate = reporting(lambda assignment: Quality(n_samples=1, sqnr_db=1.0), 3, lambda *call: calls.append(call))
    with caplog.at_level("INFO", logger="mixq.solvers.evolution"):
        for _ in range(4):  # one more than planned (the seeding search may add some)
            evaluate(Assignment({}))
    assert calls[0] == (EVALUATIONS_STAGE, 0, 3)
    assert [done for _, done, _ in calls[1:]] == [1, 2, 3, 4]
    assert all(done <= total for _, done, total in calls)
    assert "evaluation 1 of up to 3" in caplog.text and "left" in caplog.text


def test_evolution_evaluates_a_default_subset_unless_told() -> None:
    from mixq.config import SearchConfig
    from mixq.solvers.evolution import DEFAULT_EVAL_SAMPLES

    assert SearchConfig(solver="evolution").evaluation_samples() == DEFAULT_EVAL_SAMPLES
    assert SearchConfig(solver="evolution", eval_samples=1000).evaluation_samples() == 1000
    assert SearchConfig(solver="greedy").evaluation_samples() is None


def test_pairwise_totals_and_max_float_regions_hold_for_every_measured_configuration() -> None:
    from mixq.solvers.base import within
    from mixq.testing.problems import pairwise_problem

    problem = pairwise_problem(8, ("w4a8", "w8a8", "fp16"), seed=2, skip_rate=0.0)
    limit = CostBudget("latency", 0.8 * IlpSolver().curve(problem)[0].costs["latency"], CostUnit.ABSOLUTE)
    evaluate = Measured(problem)
    free = EvolutionSolver(EvolutionConfig(max_evaluations=12, seed=1)).search(problem, [limit], None, Loop(evaluate))
    choices = [[o.precisions.index(a[o.group]) for o in problem.options] for a in evaluate.calls]
    assert max(problem.float_regions(c) for c in choices) > 1, "without the bound some children have two regions"
    evaluate = Measured(problem)
    result = EvolutionSolver(EvolutionConfig(max_evaluations=12, seed=1, max_float_regions=1)).search(
        problem, [limit], None, Loop(evaluate))
    assert evaluate.calls
    for assignment in evaluate.calls:
        choice = [o.precisions.index(assignment[o.group]) for o in problem.options]
        assert problem.float_regions(choice) <= 1
        assert within(problem.cost_of("latency", assignment), problem.limit(limit))
    assert result.point.costs["latency"] == pytest.approx(problem.cost_of("latency", result.point.assignment))
    assert free.point.costs["latency"] == pytest.approx(problem.cost_of("latency", free.point.assignment))


def test_the_float_region_bound_may_come_from_either_setting_but_not_two_values() -> None:
    from mixq.solvers import IlpConfig

    assert EvolutionConfig(ilp=IlpConfig(max_float_regions=2)).float_region_bound == 2
    assert EvolutionConfig(max_float_regions=1).float_region_bound == 1
    with pytest.raises(ConfigError, match="disagree"):
        EvolutionConfig(max_float_regions=1, ilp=IlpConfig(max_float_regions=2))
