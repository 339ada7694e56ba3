"""Pandey et al.'s two phases as a strategy: the phase-1 sensitivity list (resumable), then phase 2
with the configured solver, which either walks a curve and selects on it or searches in a closed loop
(:func:`mixq.solvers.run.allocate`)."""

from __future__ import annotations

from typing import Any

import logging
import time

from mixq.prepared import Prepared
from mixq.rundir import MEASUREMENTS, JsonlMeasurementLog
from mixq.sensitivity.pairs import SimulationPairs
from mixq.sensitivity import METRICS
from mixq.sensitivity.sqnr import MeasurementLog, MemoryLog
from mixq.solvers import Loop, get_solver
from mixq.solvers.run import allocate, timed
from mixq.strategies.base import SearchContext, StrategyOutcome

logger = logging.getLogger(__name__)


class TwoPhase:
    """Phase 1 measures every group at every candidate alone; phase 2 allocates with ``config.solver``."""

    name = "two-phase"
    #: The phase-1 metric (an entry of :data:`mixq.sensitivity.METRICS`).
    metric = "sqnr"

    def check(self, prepared: Prepared) -> None:
        """Every backend runs isolated measurements: nothing to refuse."""

    def resume_key(self, context: SearchContext) -> dict[str, Any]:
        """What the stored measurements depend on; ``search`` checks it before writing into the run directory."""
        prepared = context.prepared
        metric = METRICS.create(self.metric, METRICS.settings(self.metric, context.config))
        return {**context.measurement_key(), **metric.key(prepared.sim, len(prepared.calibration))}

    def run(self, context: SearchContext) -> StrategyOutcome:
        prepared, config, run = context.prepared, context.config, context.run
        metric = METRICS.create(self.metric, METRICS.settings(self.metric, config))
        log: MeasurementLog = MemoryLog()
        if run is not None:
            resumed = run.bind(self.resume_key(context))
            log = JsonlMeasurementLog(run.file(MEASUREMENTS))
            if resumed:
                logger.info("resuming: %d measurements already in %s", len(list(log.done())), run.path)
        sensitivity = metric.measure(prepared.sim, prepared.calibration, log, context.progress)
        problem = context.problem(sensitivity)
        target = config.quality_target
        started = time.perf_counter()
        evaluator = context.evaluator
        float_quality = evaluator.float_quality() if target is not None and target.needs_labels else None
        pairs = SimulationPairs(prepared.sim, prepared.calibration, run.file("pairs.json") if run else None,
                                context.progress)
        spent: dict[str, float] = {}
        loop = Loop(timed(evaluator.quality, spent, "evaluation_s"), float_quality, timed(pairs, spent, "pairs_s"),
                    context.progress)
        result = allocate(problem, get_solver(config.solver, config.solver_settings()), config.cost_budgets, target,
                          loop)
        timings = {"phase1_s": sensitivity.seconds,
                   "phase2_s": time.perf_counter() - started - sum(spent.values()), **spent}
        return StrategyOutcome(sensitivity, problem, result, timings)
