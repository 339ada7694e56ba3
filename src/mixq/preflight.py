"""Checks a search makes before any measurement: what depends on the settings and the graph alone is
refused in seconds, not after a phase 1 of minutes."""

from __future__ import annotations

from collections.abc import Mapping

from mixq.config import SearchConfig
from mixq.core.budget import CostUnit, QualityTarget
from mixq.core.graph import QuantGraph
from mixq.core.tables import SensitivityTable
from mixq.cost.base import CostModel
from mixq.data.dataset import Dataset
from mixq.errors import ConfigError
from mixq.evaluation import ScoreFn
from mixq.solvers import SOLVERS
from mixq.solvers.base import within
from mixq.solvers.run import build_problem
from mixq.solvers.select import infeasible_cost_error


def check_budgets_given(config: SearchConfig) -> None:
    if not config.budgets:
        raise ConfigError('give at least one budget, e.g. --budget "bops<=0.375" or --budget "agreement>=0.99"')


def check_solver(config: SearchConfig) -> None:
    """A solver whose class declares ``needs_quality_target`` (fallback) is refused without a quality target
    here, before phase 1, rather than by the solver after it."""
    if config.strategy != "two-phase" or config.quality_target is not None:
        return
    if _needs_target(config.solver):
        others = [name for name in SOLVERS.names() if not _needs_target(name)]
        raise ConfigError(f"--solver {config.solver} is driven by a measured quality target and none was given: add "
                          f'one, e.g. --budget "agreement>=0.99", or for cost budgets alone use --solver '
                          f"{', '.join(others)}")


def _needs_target(name: str) -> bool:
    return bool(getattr(SOLVERS.get(name).load(), "needs_quality_target", False))


def check_labels(target: QualityTarget | None, data: Dataset, score: ScoreFn | None) -> None:
    """A ``drop<=`` target needs labels or the user's own score function."""
    if target is not None and target.needs_labels and score is None and data.labels is None:
        raise ConfigError(
            f"{target} compares accuracy with the float model's, which needs labels: give a folder with labels.csv, "
            "--labels CSV, an .npz with y, or (in Python) search(..., score=fn); or use a label-free target "
            'such as --budget "agreement>=0.99"')


def check_synthetic(target: QualityTarget | None, eval_data: Dataset | None, score: ScoreFn | None) -> None:
    """Distilled inputs have no labels: a ``drop<=`` target needs labelled --eval-data or a score function."""
    if target is not None and target.needs_labels and score is None and (eval_data is None or eval_data.labels is None):
        raise ConfigError(
            f"{target} compares accuracy, which needs labels, and synthetic data (--data synthetic) has none: use a "
            'label-free target such as --budget "agreement>=0.99" (agreement with the float model on the synthetic '
            "samples), or give labelled --eval-data")


def check_reachable(graph: QuantGraph, config: SearchConfig, costs: Mapping[str, CostModel] | None = None) -> None:
    """Cost budgets, restrictions and hardware depend on the graph alone: refuse an impossible one."""
    problem = build_problem(graph, SensitivityTable.noiseless(graph), config.cost, config.restrictions, config.hardware,
                            config.memory_budgets, costs)
    for budget in config.cost_budgets:
        if budget.unit is CostUnit.ABSOLUTE and budget.cost == "latency" and problem.model("latency").unit != "ms":
            raise ConfigError(f"{budget} is in milliseconds but the latency table of --hardware {config.hardware} is "
                              "relative time per MAC: give a fraction such as latency<=0.6, or drop --hardware to "
                              "measure milliseconds in ONNX Runtime (ONNX models)")
        if not within(problem.min_cost(budget.cost), problem.limit(budget)):
            raise infeasible_cost_error(problem, [budget])
