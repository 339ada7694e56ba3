"""Solvers by name: each builds its own settings dataclass from the search; every curve solver takes budgets."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from mixq.config import SearchConfig
from mixq.core.budget import CostBudget, CostUnit
from mixq.errors import ConfigError
from mixq.solvers import (
    COMPARED,
    SOLVERS,
    EvolutionConfig,
    GreedyConfig,
    IlpConfig,
    IqpConfig,
    Loop,
    get_solver,
    solver_config,
)
from mixq.solvers.base import AllocationProblem, CurvePoint, ParetoCurve
from mixq.solvers.loop import ClosedLoopSolver
from mixq.solvers.run import allocate
from mixq.testing.problems import random_problem


def test_the_registry_lists_every_solver_once_in_help_order() -> None:
    assert SOLVERS.names() == ["greedy", "ilp", "iqp", "fallback", "evolution", "exhaustive"]
    assert SOLVERS.names(tag=COMPARED) == ["greedy", "ilp", "iqp", "fallback", "evolution"]
    assert all(entry.help for entry in SOLVERS.entries())
    for name in SOLVERS:
        solver = get_solver(name, solver_config(name))
        closed_loop = isinstance(solver, ClosedLoopSolver)
        assert solver.name == name and closed_loop == (name in ("iqp", "fallback", "evolution"))
        assert closed_loop or (callable(solver.curve) and callable(solver.solve))


def test_each_solver_config_is_built_from_the_search_settings() -> None:
    search = SearchConfig(seed=5, pair_groups=4, time_limit_s=7.0, max_evaluations=11)
    assert search.solver_config("greedy") == GreedyConfig() and search.solver_config("exhaustive") is None
    assert search.solver_config("ilp") == IlpConfig(time_limit_s=7.0)
    assert search.solver_config("iqp") == IqpConfig(top_k=4, ilp=IlpConfig(time_limit_s=7.0))
    assert search.solver_config("evolution") == EvolutionConfig(max_evaluations=11, seed=5,
                                                                ilp=IlpConfig(time_limit_s=7.0))
    assert SearchConfig().solver_config("evolution").max_evaluations == 30, "the evolution's own default"
    chosen = SearchConfig(solver="iqp", pair_groups=3)
    assert chosen.solver_settings() == chosen.solver_config("iqp")
    assert get_solver(chosen.solver, chosen.solver_settings()).config.top_k == 3


def test_solver_options_override_and_survive_the_config_json_round_trip() -> None:
    config = SearchConfig(solver="iqp", time_limit_s=9.0,
                          solver_options={"top_k": "3", "ilp.curve_points": 12, "evolution": {"population": "2"}})
    assert config.solver_options == {"iqp": {"top_k": 3}, "ilp": {"curve_points": 12}, "evolution": {"population": 2}}
    assert config.solver_settings() == IqpConfig(top_k=3, ilp=IlpConfig(time_limit_s=9.0))
    assert config.solver_config("ilp") == IlpConfig(time_limit_s=9.0, curve_points=12)
    assert config.solver_config("evolution").population == 2
    again = SearchConfig.from_dict(config.to_dict())
    assert again == config and again.to_dict()["solver_options"] == config.solver_options
    nested = SearchConfig(solver="iqp", solver_options={"iqp.ilp.curve_points": 5})
    assert nested.solver_settings().ilp.curve_points == 5
    old = {k: v for k, v in SearchConfig().to_dict().items() if k != "solver_options"}
    assert SearchConfig.from_dict(old) == SearchConfig(), "a config.json written before solver_options loads"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"solver": "gredy"}, "unknown solver 'gredy'; did you mean 'greedy'\\?"),
    ({"solver": "ilp", "solver_options": {"curve_point": 3}},
     ("solver ilp has no setting 'curve_point'; did you mean 'curve_points'\\? known: time_limit_s, curve_points, "
      "mip_rel_gap, max_float_regions")),
    ({"solver_options": {"steps": 3}}, "solver greedy has no setting 'steps'; known: max_region, max_float_regions"),
    ({"solver": "exhaustive", "solver_options": {"steps": 3}}, "solver exhaustive takes no settings; drop steps"),
    ({"solver": "ilp", "solver_options": {"curve_points": "many"}}, "must be an integer, got 'many'"),
    ({"solver": "ilp", "solver_options": {"curve_points": 1}}, "curve_points must be at least 2"),
    ({"solver_options": {"anneal": {"steps": 3}}}, "unknown solver 'anneal'"),
    ({"cost": "memory"}, "--cost must be bops, size or latency, got 'memory'"),
])
def test_bad_names_and_settings_are_one_clear_config_error(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SearchConfig(**kwargs)  # type: ignore[arg-type]


class RecordingSolver:
    """A curve solver that records the budgets its curve was asked to honour."""

    name = "recording"

    def __init__(self) -> None:
        self.asked: list[tuple[CostBudget, ...]] = []

    def curve(self, problem: AllocationProblem, budgets: Sequence[CostBudget] = ()) -> ParetoCurve:
        self.asked.append(tuple(budgets))
        return get_solver("greedy").curve(problem, budgets)  # type: ignore[union-attr]

    def solve(self, problem: AllocationProblem, budgets: Sequence[CostBudget]) -> CurvePoint:
        return get_solver("greedy").solve(problem, budgets)  # type: ignore[union-attr]


def test_allocate_hands_every_curve_solver_the_budgets() -> None:
    from mixq.core.budget import parse_budget
    from mixq.core.quality import Quality

    problem = random_problem(6, seed=1)
    budgets = (CostBudget("bops", 0.5, CostUnit.RATIO),)
    solver = RecordingSolver()
    loop = Loop(lambda a: Quality(n_samples=1, sqnr_db=problem.predicted_sqnr_db(a)))
    outcome = allocate(problem, solver, budgets, parse_budget("sqnr>=0"), loop)  # type: ignore[arg-type]
    assert solver.asked == [budgets] and math.isfinite(outcome.point.costs["bops"])
    for name in ("greedy", "ilp", "exhaustive"):
        curve = get_solver(name).curve(random_problem(4, seed=2), budgets)  # type: ignore[union-attr]
        assert isinstance(curve, ParetoCurve)
