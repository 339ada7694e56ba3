"""The cross-layer IQP: exact on the quadratic objective, equal to the ILP without interactions."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from mixq.core.assignment import Assignment
from mixq.core.budget import CostBudget, CostUnit, parse_budget
from mixq.core.graph import GroupId
from mixq.core.precision import Precision
from mixq.core.quality import Quality
from mixq.errors import ConfigError, InfeasibleBudgetError
from mixq.sensitivity.pairs import PairInteractions, select_groups
from mixq.solvers import ExhaustiveSolver, IlpSolver, IqpConfig, IqpSolver, Loop
from mixq.solvers.base import AllocationProblem
from mixq.solvers.iqp import quadratic_noise
from mixq.testing.problems import random_problem

STANDARD = ("w4a8", "w8a8", "w8a16")
W4A8, W8A8, W8A16 = (Precision.parse(t) for t in STANDARD)


def brute_force(problem: AllocationProblem, terms: Mapping, budgets: Sequence[CostBudget]) -> float:
    groups = list(problem.graph)
    values = []
    for combo in itertools.product(*(g.candidates for g in groups)):
        assignment = Assignment({g.id: p for g, p in zip(groups, combo)})
        if problem.meets(problem.point(assignment).costs, budgets):
            values.append(quadratic_noise(problem, terms, assignment))
    return min(values)


def random_terms(problem: AllocationProblem, rng: np.random.Generator, scale: float) -> dict:
    """Interactions of both signs between random pairs, at the non-top candidates."""
    terms = {}
    ids = problem.graph.ids
    for i, j in itertools.combinations(range(len(ids)), 2):
        if rng.random() < 0.5:
            continue
        for a in problem.graph[ids[i]].candidates[:-1]:
            for b in problem.graph[ids[j]].candidates[:-1]:
                single = problem.sensitivity.noise(ids[i], a) + problem.sensitivity.noise(ids[j], b)
                terms[(ids[i], a, ids[j], b)] = float(rng.uniform(-0.5, scale)) * single
    return terms


def test_zero_interactions_give_the_ilp_and_exhaustive_optimum() -> None:
    for seed in range(6):
        problem = random_problem(6, STANDARD, seed, varied_candidates=seed % 2 == 0)
        zeros = {(g, p, h, q): 0.0 for g, h in itertools.combinations(problem.graph.ids, 2)
                 for p in problem.graph[g].candidates for q in problem.graph[h].candidates}
        for ratio in (0.35, 0.5, 0.8):
            budgets = [CostBudget("bops", max(ratio * problem.reference("bops"), problem.min_cost("bops")),
                                  CostUnit.ABSOLUTE)]
            iqp = IqpSolver().solve_quadratic(problem, zeros, budgets)
            exact = ExhaustiveSolver().solve(problem, budgets)
            assert iqp.predicted_noise == pytest.approx(exact.predicted_noise, rel=1e-7)
            assert iqp.predicted_noise == pytest.approx(IlpSolver().solve(problem, budgets).predicted_noise, rel=1e-7)


def test_planted_interactions_iqp_finds_the_brute_force_optimum() -> None:
    rng = np.random.default_rng(5)
    for seed in range(8):
        problem = random_problem(5, STANDARD, seed)
        terms = random_terms(problem, rng, scale=5.0)
        budgets = [CostBudget("bops", float(rng.uniform(0.3, 0.7)), CostUnit.RATIO)]
        if seed % 3 == 0:
            budgets.append(CostBudget("size", float(rng.uniform(0.15, 0.3)), CostUnit.RATIO))
        try:
            best = brute_force(problem, terms, budgets)
        except ValueError:  # nothing meets the budgets
            with pytest.raises(InfeasibleBudgetError):
                IqpSolver().solve_quadratic(problem, terms, budgets)
            continue
        point = IqpSolver().solve_quadratic(problem, terms, budgets)
        assert quadratic_noise(problem, terms, point.assignment) == pytest.approx(best, rel=1e-7, abs=1e-15)
        if best > 0:  # the point carries the quadratic prediction (a negative sum shows as noiseless)
            assert point.predicted_noise == pytest.approx(best, rel=1e-7)
        assert problem.meets(point.costs, budgets)


def test_a_large_interaction_moves_the_answer_away_from_the_ilp() -> None:
    problem = random_problem(5, STANDARD, seed=2)
    budgets = [CostBudget("bops", 0.3, CostUnit.RATIO)]
    ilp = IlpSolver().solve(problem, budgets)
    low = [g for g in problem.graph.ids if ilp.assignment[g] == W4A8]
    assert len(low) >= 2
    g, h = low[:2]
    penalty = 100 * problem.predicted_noise(ilp.assignment)
    terms = {(g, W4A8, h, W4A8): penalty}  # both low together is much worse than the sum says
    iqp = IqpSolver().solve_quadratic(problem, terms, budgets)
    assert not (iqp.assignment[g] == W4A8 and iqp.assignment[h] == W4A8)
    assert quadratic_noise(problem, terms, iqp.assignment) == pytest.approx(brute_force(problem, terms, budgets))
    assert quadratic_noise(problem, terms, iqp.assignment) < quadratic_noise(problem, terms, ilp.assignment)


def test_curve_points_meet_every_budget_and_are_quadratic_optima() -> None:
    problem = random_problem(5, STANDARD, seed=1)
    terms = random_terms(problem, np.random.default_rng(0), scale=3.0)
    budgets = [CostBudget("size", 0.25, CostUnit.RATIO)]
    curve = IqpSolver(IqpConfig(ilp=IlpSolver().config)).curve_quadratic(problem, terms, budgets)
    costs = [p.costs["bops"] for p in curve.points]
    assert all(b < a for a, b in zip(costs, costs[1:]))
    for point in curve.points:
        assert problem.meets(point.costs, budgets)
        at_cost = [*budgets, CostBudget("bops", point.costs["bops"], CostUnit.ABSOLUTE)]
        best = brute_force(problem, terms, at_cost)
        assert quadratic_noise(problem, terms, point.assignment) == pytest.approx(best, rel=1e-7, abs=1e-15)


def test_infeasible_budget_reports_the_minimum() -> None:
    problem = random_problem(4, STANDARD, seed=0)
    with pytest.raises(InfeasibleBudgetError, match="reaches bops 0.250") as info:
        IqpSolver().solve_quadratic(problem, {}, [CostBudget("bops", 0.2, CostUnit.RATIO)])
    assert info.value.reachable == pytest.approx(0.25)


def test_select_groups_takes_the_most_sensitive_and_drops_their_top_candidate() -> None:
    problem = random_problem(12, STANDARD, seed=4)
    chosen = select_groups(problem.graph, problem.sensitivity, k=4)
    worst = max(problem.sensitivity.noise(g, W4A8) for g in problem.graph.ids if g not in chosen)
    assert len(chosen) == 4 and list(chosen) == [g for g in problem.graph.ids if g in chosen]  # graph order
    for group, below in chosen.items():
        assert problem.sensitivity.noise(group, W4A8) >= worst
        assert W8A16 not in below and set(below) == {W4A8, W8A8}
    with pytest.raises(ConfigError):
        select_groups(problem.graph, problem.sensitivity, k=1)


class PlantedPairs:
    """A PairMeasurer whose 'measurements' are the table plus planted interactions."""

    def __init__(self, problem: AllocationProblem, terms: Mapping) -> None:
        self.problem, self.terms, self.calls = problem, terms, []

    def __call__(self, candidates: Mapping[GroupId, Sequence[Precision]]) -> PairInteractions:
        self.calls.append(dict(candidates))
        noise = self.problem.sensitivity.noise
        single = {(g, p): noise(g, p) for g, ps in candidates.items() for p in ps}
        joint = {}
        for g, h in itertools.combinations(candidates, 2):
            for p in candidates[g]:
                for q in candidates[h]:
                    joint[(g, p, h, q)] = single[(g, p)] + single[(h, q)] + self.terms.get((g, p, h, q), 0.0)
        return PairInteractions(single, joint, n_samples=8, runs=len(single) + len(joint))


def test_search_measures_the_top_k_and_reports_interaction_size_and_ilp_difference() -> None:
    problem = random_problem(10, STANDARD, seed=2)
    budgets = [CostBudget("bops", 0.4, CostUnit.RATIO)]
    ilp = IlpSolver().solve(problem, budgets)
    top = select_groups(problem.graph, problem.sensitivity, k=4)
    low = [g for g in top if ilp.assignment[g] == W4A8]
    terms = {(low[0], W4A8, low[1], W4A8): 50 * problem.predicted_noise(ilp.assignment)} if len(low) >= 2 else {}
    measurer = PlantedPairs(problem, terms)
    result = IqpSolver(IqpConfig(top_k=4)).search(problem, budgets, None, Loop(lambda a: Quality(1), None, measurer))
    assert measurer.calls == [top]
    details = result.details
    assert details["groups"] == list(top) and details["pairs_measured"] == 6 * 4
    expected_ratio = sum(abs(v) for v in terms.values()) / sum(
        problem.sensitivity.noise(g, p) for g, ps in top.items() for p in ps)
    assert details["interaction_ratio"] == pytest.approx(expected_ratio)
    assert details["differs_from_ilp"] is bool(terms)
    assert result.evaluations == () and result.quality is None
    assert result.point.costs["bops"] <= 0.4 * problem.reference("bops") * (1 + 1e-9)


def test_search_with_a_target_binary_searches_the_iqp_curve() -> None:
    problem = random_problem(8, STANDARD, seed=3)
    calls: list[Assignment] = []

    def evaluate(assignment: Assignment) -> Quality:
        calls.append(assignment)
        return Quality(1, sqnr_db=problem.predicted_sqnr_db(assignment))

    target = parse_budget("sqnr>=25")
    result = IqpSolver(IqpConfig(top_k=3)).search(problem, [], target, Loop(evaluate, None, PlantedPairs(problem, {})))
    assert result.quality is not None and result.quality.sqnr_db >= 25
    assert len(calls) == result.details["evaluations"] <= 2 + int(np.ceil(np.log2(len(result.curve))))
    assert all(e["index"] is not None for e in result.evaluations)


def test_search_without_a_pair_measurer_says_so() -> None:
    problem = random_problem(4, STANDARD, seed=0)
    with pytest.raises(ConfigError, match="pairs"):
        IqpSolver().search(problem, [CostBudget("bops", 0.5, CostUnit.RATIO)], None, Loop(lambda a: Quality(1)))


def test_pairwise_costs_are_refused_naming_the_solvers_that_handle_them() -> None:
    from mixq.solvers import IlpConfig
    from mixq.testing.problems import pairwise_problem

    problem = pairwise_problem(5, seed=0)
    with pytest.raises(ConfigError, match="--solver iqp cannot optimise costs charged between groups.*--solver ilp"):
        IqpSolver().solve_quadratic(problem, {}, [])
    with pytest.raises(ConfigError, match="use --solver ilp"):
        IqpSolver().search(problem, [], None, Loop(lambda a: Quality(1, sqnr_db=30.0)))
    with pytest.raises(ConfigError, match="does not bound float regions"):
        IqpConfig(ilp=IlpConfig(max_float_regions=1))
