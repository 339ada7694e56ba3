"""Restrictions narrow candidates before solving, so every solver respects them."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mixq.core.assignment import Assignment
from mixq.core.budget import CostBudget, CostUnit, parse_budget
from mixq.core.graph import OpKind, QuantOp
from mixq.core.precision import Precision, parse_candidates
from mixq.core.quality import Quality
from mixq.core.restrictions import Restriction, apply_restrictions, at_least, parse_restrictions
from mixq.core.tables import nsr_to_db
from mixq.errors import ConfigError, InfeasibleBudgetError
from mixq.solvers import (
    EvolutionConfig, EvolutionSolver, ExhaustiveSolver, FallbackSolver, GreedySolver, IlpSolver, IqpSolver, Loop,
)
from mixq.solvers.base import AllocationProblem
from mixq.testing.problems import graph_of, random_problem

ALL = ("w4a8", "w8a8", "w8a16", "fp16")
W8A8 = Precision.parse("w8a8")


def restricted(problem: AllocationProblem, restrictions: tuple[Restriction, ...]) -> AllocationProblem:
    graph = apply_restrictions(problem.graph, restrictions)
    return AllocationProblem(graph, problem.sensitivity, problem.costs, problem.primary)


def sqnr_of(problem: AllocationProblem):
    """A measured quality that is exactly the additive prediction (a stand-in for a real model)."""
    return lambda assignment: Quality(n_samples=1, sqnr_db=problem.predicted_sqnr_db(assignment))


@pytest.mark.parametrize(
    ("text", "patterns", "minimum", "allowed"),
    [
        ("first,last>=w8a8", ("first", "last"), "w8a8", None),
        (" layer1.* >= W8A16 ", ("layer1.*",), "w8a16", None),
        ("conv1=w8a8|fp32", ("conv1",), None, ("w8a8", "fp32")),
    ],
)
def test_parse_and_print_round_trip(text: str, patterns: tuple[str, ...], minimum: str | None,
                                    allowed: tuple[str, ...] | None) -> None:
    rule = Restriction.parse(text)
    assert rule.patterns == patterns
    assert rule.min_precision == (Precision.parse(minimum) if minimum else None)
    assert rule.allowed == (parse_candidates(allowed) if allowed else None)
    assert Restriction.parse(str(rule)) == rule


@pytest.mark.parametrize("text", ["w8a8", "first>", ">=w8a8", "first>=w9", "first<=w8a8", "a=b=c"])
def test_malformed_restrictions_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        Restriction.parse(text)


def test_at_least_is_per_bit_width() -> None:
    p = Precision.parse
    assert at_least(p("w8a16"), p("w8a8")) and at_least(p("fp16"), p("w8a8")) and at_least(p("fp32"), p("fp16"))
    assert not at_least(p("w4a16"), p("w8a8")) and not at_least(p("w8a8"), p("w8a16"))


def test_first_last_and_wildcards_pick_the_right_groups() -> None:
    problem = random_problem(6, ALL, seed=0)
    graph = apply_restrictions(problem.graph, parse_restrictions(["first,last>=w8a8", "layer00[23]=w8a16|fp16"]))
    candidates = {g.id: [str(p) for p in g.candidates] for g in graph}
    assert candidates["layer000"] == ["w8a8", "w8a16", "fp16"] == candidates["layer005"]
    assert candidates["layer002"] == ["w8a16", "fp16"] == candidates["layer003"]
    assert candidates["layer001"] == list(ALL) == candidates["layer004"]


def test_patterns_match_any_op_of_a_group() -> None:
    a = QuantOp("stem", OpKind.CONV, 100, 10, 4, inputs=("x",), weight="stem.w")
    b = QuantOp("side", OpKind.CONV, 100, 10, 4, inputs=("x",), weight="side.w")  # same input: one group
    from mixq.core.graph import QuantGraph, QuantizerGroup

    graph = QuantGraph({"stem": QuantizerGroup("stem", (a, b), parse_candidates(ALL))}, 20)
    narrowed = apply_restrictions(graph, parse_restrictions(["side=w8a8"]))
    assert narrowed["stem"].candidates == (W8A8,)


def test_a_pattern_matching_nothing_is_an_error_unless_optional() -> None:
    problem = random_problem(3, ALL, seed=0)
    with pytest.raises(ConfigError, match="matches no quantizer group.*layer000"):
        apply_restrictions(problem.graph, parse_restrictions(["lyer*>=w8a8"]))
    optional = Restriction(("lyer*",), min_precision=W8A8, required=False)
    assert apply_restrictions(problem.graph, (optional,)) == problem.graph


def test_no_candidate_left_names_the_group_and_the_rule() -> None:
    problem = random_problem(3, ("w4a8", "w8a8"), seed=0)
    with pytest.raises(ConfigError, match=r"restriction last>=w8a16 leaves group 'layer002' with no candidate"):
        apply_restrictions(problem.graph, parse_restrictions(["last>=w8a16"]))


def test_restriction_raising_the_cheapest_cost_is_reported_as_infeasible() -> None:
    problem = restricted(random_problem(4, ("w4a8", "w8a8"), seed=0), parse_restrictions(["first,last>=w8a8"]))
    lowest = problem.min_cost("bops") / problem.reference("bops")
    assert lowest > 0.25
    with pytest.raises(InfeasibleBudgetError) as info:
        IlpSolver().solve(problem, [CostBudget("bops", 0.25, CostUnit.RATIO)])
    assert info.value.reachable == pytest.approx(lowest)


def test_every_solver_respects_random_restrictions() -> None:
    """Property test: random problems, random restrictions, every solver, every returned point."""
    rng = np.random.default_rng(7)
    for seed in range(12):
        base = random_problem(int(rng.integers(3, 7)), ALL, seed, varied_candidates=seed % 2 == 0)
        ids = base.graph.ids
        rules = []
        for _ in range(int(rng.integers(1, 3))):
            pattern = str(rng.choice([*ids, "first", "last", "layer00*"]))
            name = ids[0] if pattern in ("first", "layer00*") else ids[-1] if pattern == "last" else pattern
            group = base.graph[name]
            keep = [p for p in group.candidates if rng.random() < 0.6] or [group.candidates[-1]]
            rules.append(Restriction((pattern,), allowed=tuple(keep)))
        try:
            problem = restricted(base, tuple(rules))
        except ConfigError:
            continue  # two rules on one group with disjoint sets: reported, nothing to solve
        allowed = {g.id: set(g.candidates) for g in problem.graph}
        ratio = float(rng.uniform(0.3, 0.9))
        limit = max(ratio * problem.reference("bops"), problem.min_cost("bops"))
        budgets = [CostBudget("bops", limit, CostUnit.ABSOLUTE)]
        evaluate = sqnr_of(problem)
        points = [solver.solve(problem, budgets) for solver in (GreedySolver(), IlpSolver(), ExhaustiveSolver())]
        points += list(GreedySolver().curve(problem).points) + list(IlpSolver().front(problem).points)
        first, last = base.graph[ids[0]].candidates, base.graph[ids[-1]].candidates
        terms = {(ids[0], p, ids[-1], q): 0.01 for p in first for q in last}
        points.append(IqpSolver().solve_quadratic(problem, terms, budgets))
        points.append(EvolutionSolver(EvolutionConfig(max_evaluations=8, seed=seed)).search(
            problem, budgets, None, Loop(evaluate)).point)
        target = parse_budget(f"sqnr>={problem.predicted_sqnr_db(points[1].assignment) - 1:.3f}")
        points.append(FallbackSolver().search(problem, [], target, Loop(evaluate)).point)  # type: ignore[arg-type]
        for point in points:
            assert all(point.assignment[g] in allowed[g] for g in allowed), (seed, point.assignment.counts())


def test_restricted_ilp_equals_brute_force_with_two_budgets() -> None:
    base = random_problem(5, ALL[:3], seed=3)
    problem = restricted(base, parse_restrictions(["first>=w8a8", "layer002=w4a8|w8a16"]))
    budgets = [CostBudget("bops", 0.5, CostUnit.RATIO), CostBudget("size", 0.2, CostUnit.RATIO)]
    groups = list(problem.graph)
    best = min(
        problem.predicted_noise(a)
        for combo in itertools.product(*(g.candidates for g in groups))
        if problem.meets(problem.point(a := Assignment({g.id: p for g, p in zip(groups, combo)})).costs, budgets)
    )
    assert IlpSolver().solve(problem, budgets).predicted_noise == pytest.approx(best, rel=1e-9)
    assert ExhaustiveSolver().solve(problem, budgets).predicted_noise == pytest.approx(best, rel=1e-9)
    assert nsr_to_db(best) < nsr_to_db(IlpSolver().solve(base, budgets).predicted_noise) + 1e-9


def test_graph_of_helper_keeps_candidates_order() -> None:
    ops = [QuantOp("a", OpKind.CONV, 10, 10, 1, inputs=("a:in",))]
    graph = graph_of(ops, {"a": parse_candidates("w8a16,w4a8,w8a8")})
    narrowed = apply_restrictions(graph, parse_restrictions(["a>=w8a8"]))
    assert [str(p) for p in narrowed["a"].candidates] == ["w8a16", "w8a8"]
