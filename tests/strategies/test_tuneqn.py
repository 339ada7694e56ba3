"""TuneQn's ranking, decremental walk, fronts and checkpoint on models with known answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mixq import api
from mixq.prepared import prepare
from mixq.core.assignment import Assignment
from mixq.core.budget import parse_budget
from mixq.core.precision import Precision, QuantScheme
from mixq.core.tables import SensitivityTable
from mixq.cost import default_cost_models
from mixq.errors import InfeasibleBudgetError, RunDirectoryError
from mixq.data.dataset import ArrayDataset
from mixq.evaluation import Evaluator
from mixq.solvers.base import AllocationProblem
from mixq.strategies.tuneqn import (LayerError, combine, decremental, layer_errors, load_state, ranking,
                                    run_tuneqn)
from mixq.backends.torch.testing import ResidualNet, outlier_net, random_images


def session(model, candidates: str = "w8a8,fp32", n: int = 16):
    images = random_images(n, seed=4)
    return prepare(model, images, candidates, QuantScheme(), n), images


def problem_of(graph) -> AllocationProblem:
    table = SensitivityTable({(g.id, p): math.inf for g in graph for p in g.candidates})
    return AllocationProblem(graph, table, default_cost_models(), "bops")


def test_combine_normalizes_both_errors_and_weighs_them_equally() -> None:
    errors = combine([LayerError("a", 0.1, 1.0), LayerError("b", 0.3, 0.0), LayerError("c", 0.2, 0.5)])
    scores = {e.group: e.score for e in errors}
    assert scores == pytest.approx({"a": 0.5, "b": 0.5, "c": 0.5})
    errors = combine([LayerError("a", 0.1, 0.2), LayerError("b", 0.3, 0.4)])
    assert [e.score for e in errors] == pytest.approx([0.0, 1.0])
    assert ranking(errors) == ["b", "a"]


@pytest.mark.parametrize(("index", "kind", "candidates"),
                         [(1, "weights", "w4a8,w8a8"), (2, "weights", "w8a8,fp32"), (2, "activations", "w8a8,fp32")])
def test_outlier_layer_ranks_first(index: int, kind: str, candidates: str) -> None:
    model = outlier_net(index, kind)
    s, images = session(model, candidates)
    low = Assignment({g.id: min(g.candidates, key=lambda p: p.bits_per_mac) for g in s.graph})
    errors = layer_errors(s.sim, images, low)
    assert ranking(errors)[0] == model.outlier_layer
    by_group = {e.group: e for e in errors}
    assert by_group[model.outlier_layer].qdq_err > 5 * np.median([e.qdq_err for e in errors])


def test_decremental_walk_goes_from_fully_quantized_to_none() -> None:
    low = Assignment({"a": Precision.parse("w8a8"), "b": Precision.parse("w8a8")})
    high = Assignment({"a": Precision.parse("fp32"), "b": Precision.parse("fp32")})
    assert decremental(low, high, ["b", "a"], 0) == low
    assert decremental(low, high, ["b", "a"], 1).to_dict() == {"a": "w8a8", "b": "fp32"}
    assert decremental(low, high, ["b", "a"], 2) == high


def _run(model, tmp_path: Path | None, calls: list[Assignment], target=None, budgets=(), key=None, **kwargs):
    s, images = session(model)
    evaluator = Evaluator(s.sim, ArrayDataset(images))

    def evaluate(assignment: Assignment):
        calls.append(assignment)
        return evaluator.quality(assignment)

    state = tmp_path / "tuneqn.json" if tmp_path else None
    return run_tuneqn(s.sim, images, problem_of(s.graph), evaluate, list(budgets), target, None, state,
                      key or {"model": "x"}, **kwargs)


def test_walk_evaluates_every_configuration_and_keeps_three_fronts(tmp_path: Path) -> None:
    calls: list[Assignment] = []
    result = _run(ResidualNet().eval(), tmp_path, calls, target=parse_budget("agreement>=0.9"))
    groups = len(result.state.ranking)
    assert len(calls) == groups + 1 and [it.k for it in result.state.iterations] == list(range(groups + 1))
    sizes = [it.costs["size"] for it in result.state.iterations]
    assert sizes == sorted(sizes)  # each exclusion keeps one more group in float
    assert 1 <= len(result.state.fronts) <= 3
    assert result.chosen.quality["agreement"] >= 0.9
    cheaper = [it for it in result.state.iterations if it.costs["bops"] < result.chosen.costs["bops"]]
    assert all(it.quality["agreement"] < 0.9 for it in cheaper)
    stored = json.loads((tmp_path / "tuneqn.json").read_text())
    assert len(stored["iterations"]) == groups + 1 and stored["ranking"] == result.state.ranking


def test_interrupted_walk_resumes_without_repeating_evaluations(tmp_path: Path) -> None:
    first: list[Assignment] = []
    complete = _run(ResidualNet().eval(), tmp_path, first, budgets=[parse_budget("bops<=0.75")])
    path = tmp_path / "tuneqn.json"
    stored = json.loads(path.read_text())
    stored["iterations"] = stored["iterations"][:2]  # killed after two iterations
    path.write_text(json.dumps(stored))
    second: list[Assignment] = []
    resumed = _run(ResidualNet().eval(), tmp_path, second, budgets=[parse_budget("bops<=0.75")])
    assert len(second) == len(first) - 2
    assert second == first[2:]
    assert resumed.chosen.k == complete.chosen.k
    with pytest.raises(RunDirectoryError, match="changed: model"):
        load_state(path, {"model": "other"})


def test_cost_budget_picks_the_best_quality_that_fits_and_infeasible_says_what_is_reachable() -> None:
    result = _run(ResidualNet().eval(), None, [], budgets=[parse_budget("bops<=0.75")])
    assert result.chosen.costs["bops_ratio"] <= 0.75 + 1e-9
    with pytest.raises(InfeasibleBudgetError, match="ratio 0.5"):
        _run(ResidualNet().eval(), None, [], budgets=[parse_budget("bops<=0.2")])


def test_max_iterations_limits_the_walk() -> None:
    calls: list[Assignment] = []
    result = _run(ResidualNet().eval(), None, calls, budgets=[parse_budget("bops<=8")], max_iterations=3)
    assert len(calls) == 3 and [it.k for it in result.state.iterations] == [0, 1, 2]


def test_search_with_the_tuneqn_strategy_writes_a_plan_a_checkpoint_and_a_report(tmp_path: Path) -> None:
    from mixq.config import SearchConfig
    from mixq.report import write_report

    images = random_images(16, seed=5)
    config = SearchConfig(candidates="w8a8,fp32", budgets=("agreement>=0.9",), num_samples=16, strategy="tuneqn")
    first = api.search(ResidualNet().eval(), images, config, out=tmp_path / "run")
    assert first.plan.quality["agreement"] >= 0.9 and first.plan.provenance.strategy == "tuneqn"
    groups = len(first.graph)
    assert first.plan.quality["evaluations"] == groups + 1  # every decremental configuration, nothing more
    state = json.loads((tmp_path / "run" / "tuneqn.json").read_text())
    assert len(state["iterations"]) == groups + 1 and len(state["fronts"]) <= 3
    assert set(first.sensitivity.sqnr_db) == {(g.id, p) for g in first.graph for p in g.candidates}
    second = api.search(ResidualNet().eval(), images, config, out=tmp_path / "run")
    assert second.plan.quality["evaluations"] == 0  # resumed from the checkpoint
    assert second.plan.assignment == first.plan.assignment
    assert write_report(tmp_path / "run", png=False).html.exists()


# The refusal of a backend without layer outputs is tested in test_tuneqn_onnx.py (ONNX now has them).
