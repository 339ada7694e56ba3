"""Peak-activation-memory budgets narrow candidates, so every solver respects them."""

from __future__ import annotations

import numpy as np
import pytest

from mixq import api
from mixq.config import SearchConfig
from mixq.core.budget import parse_budget
from mixq.core.graph import OpKind, QuantGraph, QuantizerGroup, QuantOp
from mixq.core.precision import parse_candidates
from mixq.errors import InfeasibleBudgetError
from mixq.cost.memory import float_peak_bytes
from mixq.solvers.memory import apply_memory_budgets
from mixq.backends.torch.testing import TinyConvNet, random_images


def graph(*numels: int, candidates: str = "w8a8,w8a16") -> QuantGraph:
    groups = {f"g{i}": QuantizerGroup(f"g{i}", (QuantOp(f"g{i}", OpKind.CONV, 100, 10, 2, (f"x{i}",),
                                                        act_numel=n),), parse_candidates(candidates))
              for i, n in enumerate(numels)}
    return QuantGraph(groups, float_params=30)


def test_only_groups_whose_tensor_does_not_fit_lose_their_wide_candidates() -> None:
    g = graph(1000, 100)  # 1000 values at 16 bits = 2000 bytes, at 8 bits 1000 bytes
    narrowed = apply_memory_budgets(g, [parse_budget("memory<=0.0015")])  # 1500 bytes
    assert [str(p) for p in narrowed["g0"].candidates] == ["w8a8"]
    assert [str(p) for p in narrowed["g1"].candidates] == ["w8a8", "w8a16"]
    assert float_peak_bytes(g) == 4000
    relative = apply_memory_budgets(g, [parse_budget("memory<=25%")])  # of the float peak: 1000 bytes
    assert [str(p) for p in relative["g0"].candidates] == ["w8a8"]


def test_an_unreachable_memory_budget_names_the_group_and_the_minimum() -> None:
    with pytest.raises(InfeasibleBudgetError, match="'g0'.*0.001 MB") as caught:
        apply_memory_budgets(graph(1000, 100), [parse_budget("memory<=0.0005")])
    assert caught.value.reachable == pytest.approx(1000)
    with pytest.raises(InfeasibleBudgetError, match="25%"):
        apply_memory_budgets(graph(1000, 100), [parse_budget("memory<=10%")])


@pytest.mark.parametrize("solver", ["greedy", "ilp"])
def test_search_respects_peak_activation_memory(solver: str) -> None:
    images = random_images(16, seed=8)
    model = TinyConvNet().eval()
    pinned = SearchConfig(candidates="w8a8,w8a16", budgets=("bops<=1",), num_samples=16, solver=solver,
                          restrictions=("*>=w8a16",))
    assert api.search(model, images, pinned).plan.costs["memory"].ratio == pytest.approx(0.5)
    with pytest.raises(InfeasibleBudgetError, match="memory<=25%"):  # 16-bit activations cannot fit
        api.search(model, images, SearchConfig(candidates="w8a8,w8a16", budgets=("bops<=1", "memory<=25%"),
                                               num_samples=16, solver=solver, restrictions=("*>=w8a16",)))
    config = SearchConfig(candidates="w8a8,w8a16", budgets=("bops<=1", "memory<=25%"), num_samples=16,
                          solver=solver)
    capped = api.search(model, images, config)
    assert capped.plan.costs["memory"].ratio <= 0.25 + 1e-9
    largest = max(capped.graph, key=lambda g: g.act_numel)
    assert capped.plan.assignment[largest.id].act_bits == 8
    assert np.isfinite(capped.plan.quality["sqnr_db"])
