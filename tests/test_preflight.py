"""Checks made before phase 1: a solver that needs a quality target is refused without one, at once."""

from __future__ import annotations

import pytest

from mixq.api import search
from mixq.backends.torch.testing import TinyConvNet, random_images
from mixq.config import SearchConfig
from mixq.errors import ConfigError
from mixq.preflight import check_solver


def test_fallback_with_only_a_cost_budget_is_refused_with_the_alternatives() -> None:
    with pytest.raises(ConfigError, match=r"--solver fallback .*quality target.*greedy, ilp, iqp, evolution"):
        check_solver(SearchConfig(budgets=("bops<=0.5",), solver="fallback"))


def test_fallback_with_a_target_and_other_solvers_pass() -> None:
    check_solver(SearchConfig(budgets=("bops<=0.5", "agreement>=0.9"), solver="fallback"))
    check_solver(SearchConfig(budgets=("bops<=0.5",), solver="greedy"))
    check_solver(SearchConfig(budgets=("bops<=0.5",), solver="fallback", strategy="tuneqn"))


def test_search_refuses_before_preparing_the_model() -> None:
    class Untraceable(TinyConvNet):
        def forward(self, x):  # type: ignore[no-untyped-def]
            raise AssertionError("the model ran: the check came after phase 1")

    with pytest.raises(ConfigError, match="quality target"):
        search(Untraceable().eval(), random_images(4), SearchConfig(budgets=("bops<=0.5",), solver="fallback"))
