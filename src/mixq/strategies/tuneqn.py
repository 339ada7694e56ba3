"""TuneQn (Louloudakis et al. 2025, section IV): rank layers by measured error, exclude them one by one.

1. Layer analysis (IV-C): with every group at its cheapest candidate (the "fully quantized" model),
   measure per group the QDQ error (the group alone quantized, on float inputs: its own rounding
   damage) and the cross-model error (its outputs in the fully quantized model against the float
   model's: damage accumulated up to it), both relative, ``|out_fp32 - out_q| / |out_fp32|``. Each is
   normalized to [0, 1] over the groups and ``score = 0.5 * qdq + 0.5 * xmodel``; groups are ranked
   by descending score.
2. Decremental selective quantization (IV-B): configuration k keeps the k top-ranked groups at their
   highest candidate (float, in the paper's setting ``--candidates w8a8,fp32``) and the rest at the
   cheapest; every k from 0 (fully quantized) up is evaluated for real.
3. Benchmarking (IV-E): each configuration's quality, size and BOPs (and measured latency when a
   measurement hook is given) are written to ``tuneqn.json`` after every iteration, which is also the
   checkpoint a resumed run continues from; non-dominated sorting gives the top three Pareto fronts.

Written against the backend-neutral ``Simulation``; any backend that offers ``probe`` and
``IsolatedRuns.local`` runs it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mixq.backends.base import Progress, Simulation
from mixq.core.assignment import Assignment
from mixq.core.budget import CostBudget, QualityTarget
from mixq.core.graph import GroupId, QuantGraph
from mixq.core.precision import Precision
from mixq.core.quality import Quality
from mixq.atomic import write_json
from mixq.core.tables import SensitivityTable
from mixq.cost.bops import Bops
from mixq.schema import read_json, validate
from mixq.schema.tuneqn import TuneQnStateFile
from mixq.errors import CapabilityError, InfeasibleBudgetError, RunDirectoryError
from mixq.prepared import Prepared
from mixq.solvers.base import AllocationProblem, ParetoCurve
from mixq.solvers.loop import LoopResult
from mixq.solvers.pareto import non_dominated_sort
from mixq.strategies.base import SearchContext, StrategyOutcome

logger = logging.getLogger(__name__)

STATE_FILE = "tuneqn.json"
TOP_FRONTS = 3

#: ``measure(assignment) -> {"latency_ms": ..., "file_bytes": ...}``: objectives only a runtime can give.
MeasureFn = Callable[[Assignment], Mapping[str, float]]


@dataclass(frozen=True)
class LayerError:
    """TuneQn's two errors of one group, raw (relative) and combined after normalization."""

    group: GroupId
    qdq_err: float
    xmodel_err: float
    score: float = 0.0
    local_sqnr_db: dict[str, float] = field(default_factory=dict)  # per candidate: the group's own output SQNR


def _lowest(graph: QuantGraph) -> Assignment:
    """Every group at its lowest precision (by BOPs: bit widths, whatever cost the search budgets)."""
    bops = Bops()
    return Assignment({g.id: min(g.candidates, key=lambda p: bops.cost(g, p)) for g in graph})


def _highest(graph: QuantGraph) -> Assignment:
    """Every group at its highest precision (a measured latency can rank float below int8)."""
    bops = Bops()
    return Assignment({g.id: max(g.candidates, key=lambda p: bops.cost(g, p)) for g in graph})


def layer_errors(sim: Simulation, inputs: np.ndarray, quantized: Assignment, batch_size: int = 8,
                 progress: Progress | None = None) -> list[LayerError]:
    """QDQ and cross-model errors of every group (section IV-C), accumulated over ``inputs``.

    The QDQ error is measured for every candidate of a group (a cheap run of the group's own ops),
    which gives the layer-level sensitivity table the report shows; the ranking uses the candidate
    of ``quantized``.
    """
    graph = sim.graph
    groups = list(graph.ids)
    local_noise = {(g.id, p): 0.0 for g in graph for p in g.candidates if not p.keeps_float32}
    cross_noise = dict.fromkeys(groups, 0.0)
    signal = dict.fromkeys(groups, 0.0)
    for start in range(0, len(inputs), batch_size):
        if progress:
            progress("tuneqn: layer errors", start, len(inputs))
        batch = inputs[start:start + batch_size]
        isolated = sim.isolate(batch)
        in_quantized_model = sim.probe(batch, quantized)
        for group in groups:
            reference = isolated.float_outputs(group).astype(np.float64)
            signal[group] += float(np.sum(reference ** 2))
            cross_noise[group] += float(np.sum((reference - in_quantized_model[group]) ** 2))
            for precision in graph[group].candidates:
                if not precision.keeps_float32:
                    local = isolated.local(group, precision)
                    local_noise[(group, precision)] += float(np.sum((reference - local) ** 2))
    if progress:
        progress("tuneqn: layer errors", len(inputs), len(inputs))

    def relative(noise: float, group: GroupId) -> float:
        return float(np.sqrt(noise / max(signal[group], 1e-30)))

    def db(noise: float, group: GroupId) -> float:
        return float(10 * np.log10(max(signal[group], 1e-30) / noise)) if noise > 0 else math.inf

    raw = []
    for group in groups:
        candidates = [p for p in graph[group].candidates]
        table = {str(p): math.inf if p.keeps_float32 else db(local_noise[(group, p)], group) for p in candidates}
        low = quantized[group]
        qdq = 0.0 if low.keeps_float32 else relative(local_noise[(group, low)], group)
        raw.append(LayerError(group, qdq, relative(cross_noise[group], group), local_sqnr_db=table))
    return combine(raw)


def _normalized(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    span = array.max() - array.min() if array.size else 0.0
    return np.zeros_like(array) if span <= 0 else (array - array.min()) / span


def combine(errors: Sequence[LayerError], weight_xmodel: float = 0.5) -> list[LayerError]:
    """``score = 0.5 * norm(xmodel) + 0.5 * norm(qdq)``, the paper's equal weighting."""
    qdq = _normalized([e.qdq_err for e in errors])
    xmodel = _normalized([e.xmodel_err for e in errors])
    return [LayerError(e.group, e.qdq_err, e.xmodel_err, float(weight_xmodel * x + (1 - weight_xmodel) * q),
                       e.local_sqnr_db) for e, q, x in zip(errors, qdq, xmodel)]


def ranking(errors: Sequence[LayerError]) -> list[GroupId]:
    """Groups by descending score; ties keep graph order (stable), so runs are reproducible."""
    order = sorted(range(len(errors)), key=lambda i: -errors[i].score)
    return [errors[i].group for i in order]


def decremental(low: Assignment, high: Assignment, ranked: Sequence[GroupId], k: int) -> Assignment:
    """Configuration k: the k top-ranked groups excluded (at ``high``), the rest at ``low``."""
    excluded = set(ranked[:k])
    return Assignment({g: high[g] if g in excluded else low[g] for g in low})


@dataclass
class Iteration:
    """One evaluated configuration of the decremental walk."""

    k: int
    excluded: list[GroupId]
    quality: dict[str, float]
    costs: dict[str, float]
    measured: dict[str, float] = field(default_factory=dict)


@dataclass
class TuneQnState:
    """The JSON report of section IV-E; also the checkpoint a resumed run continues from."""

    key: dict[str, Any]
    errors: list[LayerError]
    ranking: list[GroupId]
    iterations: list[Iteration] = field(default_factory=list)
    fronts: list[list[int]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "errors": [asdict(e) for e in self.errors], "ranking": self.ranking,
                "iterations": [asdict(i) for i in self.iterations], "fronts": self.fronts}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TuneQnState:
        return cls(dict(data["key"]), [LayerError(**e) for e in data["errors"]], list(data["ranking"]),
                   [Iteration(**i) for i in data["iterations"]], [list(f) for f in data.get("fronts", [])])

    def save(self, path: Path) -> None:
        write_json(path, self.to_dict())


def load_state(path: Path, key: Mapping[str, Any]) -> TuneQnState | None:
    """The stored state if it was made with the same settings; refuse a mismatch clearly."""
    if not path.exists():
        return None
    fix = "use a new --out directory"
    raw = validate(TuneQnStateFile, read_json(path, "TuneQn state", RunDirectoryError, fix), f"TuneQn state {path}",
                   RunDirectoryError, fix)
    state = TuneQnState(dict(raw.key), [LayerError(e.group, e.qdq_err, e.xmodel_err, e.score, dict(e.local_sqnr_db))
                                        for e in raw.errors], list(raw.ranking),
                        [Iteration(i.k, list(i.excluded), dict(i.quality), dict(i.costs), dict(i.measured))
                         for i in raw.iterations], [list(f) for f in raw.fronts])
    if state.key != json.loads(json.dumps(dict(key))):
        changed = sorted(k for k in set(state.key) | set(key) if state.key.get(k) != key.get(k))
        raise RunDirectoryError(f"{path} was made with other settings (changed: {', '.join(changed)}); "
                                "use a new --out directory")
    return state


def objectives(iterations: Sequence[Iteration], target: QualityTarget | None) -> tuple[np.ndarray, list[bool]]:
    """Columns to minimize: quality lost, weight bytes, and each runtime measurement present in all."""
    def loss(it: Iteration) -> float:
        if "top1" in it.quality:
            return -it.quality["top1"]
        if "agreement" in it.quality:
            return -it.quality["agreement"]
        return -it.quality.get("sqnr_db", 0.0)

    measured = sorted(set.intersection(*(set(it.measured) for it in iterations))) if iterations else []
    rows = [[loss(it), it.costs["size"], *(it.measured[m] for m in measured)] for it in iterations]
    return np.asarray(rows, dtype=np.float64), [True] * (2 + len(measured))


@dataclass(frozen=True)
class TuneQnResult:
    state: TuneQnState
    chosen: Iteration
    low: Assignment
    high: Assignment

    def assignment(self, k: int) -> Assignment:
        return decremental(self.low, self.high, self.state.ranking, k)


def run_tuneqn(
    sim: Simulation,
    calibration: np.ndarray,
    problem: AllocationProblem,
    evaluate: Callable[[Assignment], Quality],
    cost_budgets: Sequence[CostBudget],
    target: QualityTarget | None,
    float_quality: Quality | None,
    state_path: Path | None,
    key: Mapping[str, Any],
    measure: MeasureFn | None = None,
    max_iterations: int | None = None,
    progress: Progress | None = None,
) -> TuneQnResult:
    """The whole strategy; every finished iteration is saved before the next starts."""
    graph = problem.graph
    low, high = _lowest(graph), _highest(graph)
    state = load_state(state_path, key) if state_path is not None else None
    if state is None:
        errors = layer_errors(sim, calibration, low, progress=progress)
        state = TuneQnState(dict(key), errors, ranking(errors))
        if state_path is not None:
            state.save(state_path)
    done = {it.k for it in state.iterations}
    last = len(state.ranking) if max_iterations is None else min(len(state.ranking), max_iterations - 1)
    for k in range(last + 1):
        if progress:
            progress("tuneqn: decremental exclusion", k, last + 1)
        if k in done:
            continue
        assignment = decremental(low, high, state.ranking, k)
        quality = evaluate(assignment)
        state.iterations.append(Iteration(k, list(state.ranking[:k]), quality.to_dict(), _costs(problem, assignment),
                                          dict(measure(assignment)) if measure else {}))
        state.iterations.sort(key=lambda it: it.k)
        state.fronts = non_dominated_sort(*objectives(state.iterations, target))[:TOP_FRONTS]
        if state_path is not None:
            state.save(state_path)
    if progress:
        progress("tuneqn: decremental exclusion", last + 1, last + 1)
    chosen = select(state.iterations, problem, cost_budgets, target, float_quality)
    return TuneQnResult(state, chosen, low, high)


def select(iterations: Sequence[Iteration], problem: AllocationProblem, cost_budgets: Sequence[CostBudget],
           target: QualityTarget | None, float_quality: Quality | None) -> Iteration:
    """Within the cost budgets: the cheapest meeting the quality target, or else the best quality."""
    primary = problem.primary
    affordable = [it for it in iterations if problem.meets(it.costs, cost_budgets)]
    if not affordable:
        cheapest = min(iterations, key=lambda it: it.costs[primary])
        raise InfeasibleBudgetError(
            f"no configuration of the decremental walk meets {', '.join(map(str, cost_budgets))}; the cheapest, "
            f"fully quantized one reaches {primary} ratio {cheapest.costs[primary + '_ratio']:.3g}",
            reachable=cheapest.costs[primary + "_ratio"])
    if target is None:
        return max(affordable, key=lambda it: (_quality_key(it), -it.k))
    meeting = [it for it in affordable if target.met(Quality.from_dict(it.quality), float_quality)]
    if not meeting:
        best = max(affordable, key=_quality_key)
        value = target.value(Quality.from_dict(best.quality), float_quality)
        raise InfeasibleBudgetError(
            f"{target} is not met by any configuration of the decremental walk within the cost budgets; the best "
            f"reaches {value:.4g} (with {best.k} groups excluded)", reachable=value)
    return min(meeting, key=lambda it: (it.costs[primary], it.k))


def tuneqn_outcome(result: TuneQnResult, problem: AllocationProblem,
                   n_samples: int) -> tuple[SensitivityTable, LoopResult]:
    """The walk in ``search``'s terms: layer-level sensitivity table, curve (measured SQNR), evaluations."""
    table = {(e.group, Precision.parse(p)): db for e in result.state.errors for p, db in e.local_sqnr_db.items()}
    sensitivity = SensitivityTable(table, metric="layer_sqnr (TuneQn QDQ error)", n_samples=n_samples)
    walk = sorted(result.state.iterations, key=lambda it: (-it.costs[problem.primary], -it.k))
    points = [replace(problem.point(result.assignment(it.k)), predicted_sqnr_db=it.quality.get("sqnr_db", math.nan))
              for it in walk]
    curve = ParetoCurve(tuple(points), problem.primary)
    evaluations = tuple({"index": i, **it.quality, "k": it.k, "excluded": len(it.excluded), **it.measured}
                        for i, it in enumerate(walk))
    chosen = next(i for i, it in enumerate(walk) if it.k == result.chosen.k)
    details = {"curve_sqnr": "measured", "ranking": result.state.ranking,
               "fronts_k": [[result.state.iterations[i].k for i in front] for front in result.state.fronts],
               "layer_errors": {e.group: {"qdq": e.qdq_err, "xmodel": e.xmodel_err, "score": e.score}
                                for e in result.state.errors}}
    return sensitivity, LoopResult(points[chosen], curve, Quality.from_dict(result.chosen.quality), evaluations, details)


def _costs(problem: AllocationProblem, assignment: Assignment) -> dict[str, float]:
    """Absolute totals under the cost models' names, and ``<name>_ratio`` of their references."""
    point = problem.point(assignment)
    return {**point.costs, **{f"{name}_ratio": value for name, value in point.ratios.items()}}


def _quality_key(it: Iteration) -> tuple[float, float]:
    return (it.quality.get("top1", it.quality.get("agreement", 0.0)), it.quality.get("sqnr_db", 0.0))


class TuneQn:
    """TuneQn as a search strategy (``--strategy tuneqn``); its checkpoint is ``RUN/tuneqn.json``."""

    name = "tuneqn"

    def check(self, prepared: Prepared) -> None:
        if not hasattr(prepared.sim, "probe"):
            raise CapabilityError(
                f"the tuneqn strategy reads each layer's outputs, which the {prepared.backend.name} backend does not "
                "provide yet; use --strategy two-phase (the default) for this model")

    def resume_key(self, context: SearchContext) -> dict[str, Any]:
        """What the stored state depends on; ``search`` checks it before writing into the run directory (a
        run made before ``measurement_key.json`` was written for TuneQn is checked against its state file)."""
        config = context.config
        key = {**context.measurement_key(), "candidates": [str(p) for p in config.candidates],
               "restrictions": [str(r) for r in config.restrictions], "hardware": config.hardware,
               "cost": config.cost, "eval_samples": len(context.evaluator.data)}
        if context.run is not None:
            load_state(context.run.file(STATE_FILE), key)  # raises on other settings
        return key

    def run(self, context: SearchContext) -> StrategyOutcome:
        prepared, config, evaluator = context.prepared, context.config, context.evaluator
        problem = context.noiseless_problem()
        target = config.quality_target
        started = time.perf_counter()
        key = self.resume_key(context)
        if context.run is not None:
            context.run.bind(key)
        float_quality = evaluator.float_quality() if target is not None and target.needs_labels else None
        try:  # the paper's runtime objectives, where the backend can write and time the file: size, latency
            measure: MeasureFn | None = prepared.backend.deployed_costs(prepared.sim, prepared.calibration,
                                                                         config.threads, runtime=config.runtime)
        except CapabilityError:
            measure = None
        run = context.run
        result = run_tuneqn(prepared.sim, prepared.calibration, problem, evaluator.quality, config.cost_budgets,
                            target, float_quality, run.file(STATE_FILE) if run else None, key, measure=measure,
                            max_iterations=config.max_evaluations, progress=context.progress)
        seconds = time.perf_counter() - started
        sensitivity, outcome = tuneqn_outcome(result, problem, len(prepared.calibration))
        return StrategyOutcome(sensitivity, problem, outcome, {"tuneqn_s": seconds})


__all__ = ["LayerError", "TuneQn", "TuneQnResult", "TuneQnState", "combine", "decremental", "layer_errors", "ranking",
           "run_tuneqn", "select", "tuneqn_outcome"]
