"""What every search strategy receives and returns.

A strategy turns a prepared model into a chosen configuration on a trade-off curve. ``search`` builds
the :class:`SearchContext` (the prepared model, settings, run directory, evaluator), runs the strategy
named by ``config.strategy`` from :data:`mixq.strategies.STRATEGIES`, and makes the plan from its
:class:`StrategyOutcome`; it never branches on which strategy ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from mixq.backends.base import Progress
from mixq.config import SearchConfig
from mixq.core.tables import SensitivityTable
from mixq.cost.base import CostModel
from mixq.evaluation import Evaluator
from mixq.prepared import Prepared
from mixq.rundir import RunDirectory
from mixq.solvers.base import AllocationProblem
from mixq.solvers.loop import LoopResult
from mixq.solvers.run import build_problem


@dataclass(frozen=True)
class SearchContext:
    """Everything a strategy may use.

    Attributes:
        prepared: the traced, calibrated model.
        config: the search's settings.
        run: the run directory (checkpoints, measurement logs), or None for an in-memory search.
        evaluator: measures configurations for real on the evaluation data.
        progress: progress callback, or None.
        measured_costs: cost models measured for this model (e.g. latency timed in ONNX Runtime).
    """

    prepared: Prepared
    config: SearchConfig
    run: RunDirectory | None
    evaluator: Evaluator
    progress: Progress | None = None
    measured_costs: Mapping[str, CostModel] = field(default_factory=dict)

    def problem(self, sensitivity: SensitivityTable) -> AllocationProblem:
        """The allocation problem on this model: hardware kernels, restrictions, memory budgets applied."""
        config = self.config
        return build_problem(self.prepared.graph, sensitivity, config.cost, config.restrictions, config.hardware,
                             config.memory_budgets, self.measured_costs)

    def noiseless_problem(self) -> AllocationProblem:
        """The problem with every candidate noiseless: for what depends on costs alone."""
        return self.problem(SensitivityTable.noiseless(self.prepared.graph))

    def measurement_key(self) -> dict[str, Any]:
        """What stored measurements depend on: settings, model and calibration data."""
        return {**self.config.measurement_key(), "model": self.prepared.fingerprint,
                "data": self.prepared.data_hash}


@dataclass(frozen=True)
class StrategyOutcome:
    """One strategy's result, whichever strategy ran.

    Attributes:
        sensitivity: the per-(group, candidate) table the strategy ranked by.
        problem: the allocation problem it solved (costs, narrowed candidates).
        result: the chosen point, the curve, measured quality and evaluations, solver details.
        timings: seconds by stage (``phase1_s``, ``phase2_s``, ``evaluation_s``, ``tuneqn_s``...).
    """

    sensitivity: SensitivityTable
    problem: AllocationProblem
    result: LoopResult
    timings: Mapping[str, float] = field(default_factory=dict)


class Strategy(Protocol):
    """A search strategy, registered in :data:`mixq.strategies.STRATEGIES`."""

    name: str

    def check(self, prepared: Prepared) -> None:
        """Refuse, before any measurement, a model this strategy cannot search (``CapabilityError``)."""
        ...

    def run(self, context: SearchContext) -> StrategyOutcome: ...
