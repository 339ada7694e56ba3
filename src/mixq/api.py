"""The public verbs: ``search``, ``evaluate``, ``apply``. Orchestration only, no math."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from mixq import backends
from mixq.backends.base import Progress, Simulation, Traced
from mixq.config import SearchConfig, scheme_to_dict
from mixq.core.assignment import Assignment, uniform
from mixq.core.budget import CostUnit, QualityTarget
from mixq.core.graph import QuantGraph
from mixq.core.precision import Precision, QuantScheme, parse_candidates
from mixq.core.tables import SensitivityTable
from mixq.cost import COST_MODELS, total_cost
from mixq.cost.measured_latency import TABLE_FILE as LATENCY_TABLE
from mixq.cost.measured_latency import MeasuredLatency, check_measurable, latency_needed, measure_for, table_report
from mixq.data.dataset import ArrayDataset, Dataset
from mixq.errors import CapabilityError, ConfigError, DataError, UnsupportedModelError
from mixq.evaluation import Evaluator, ScoreFn
from mixq.plan import Plan
from mixq.rundir import MEASUREMENTS, JsonlMeasurementLog, RunDirectory, check_writable
from mixq.sensitivity.pairs import SimulationPairs
from mixq.sensitivity.sqnr import MeasurementLog, MemoryLog, chunk_size, measure_sensitivity
from mixq.solvers import Loop, get_solver
from mixq.solvers.base import AllocationProblem, ParetoCurve, within
from mixq.solvers.loop import LoopResult
from mixq.solvers.memory import float_peak_bytes, peak_activation_bytes
from mixq.solvers.run import allocate, build_problem, timed
from mixq.strategies.tuneqn import STATE_FILE as TUNEQN_STATE
from mixq.strategies.tuneqn import run_tuneqn, tuneqn_outcome
from mixq.solvers.select import infeasible_cost_error
from mixq.version import __version__

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchResult:
    """Everything a search produced; the same content is in the run directory."""

    plan: Plan
    graph: QuantGraph
    sensitivity: SensitivityTable
    curve: ParetoCurve
    evaluations: tuple[dict[str, Any], ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)
    run_dir: Path | None = None


@dataclass
class Session:
    """A traced and calibrated model: reused by search, evaluation and apply."""

    backend: Any
    traced: Traced
    sim: Simulation
    calibration: np.ndarray
    timings: dict[str, float]
    costs: dict[str, Any] = field(default_factory=dict)  # cost models measured for this model (latency)

    @property
    def graph(self) -> QuantGraph:
        return self.traced.graph

    @cached_property
    def fingerprint(self) -> str:
        """Identifies model + preprocessing: the graph's structure and the float outputs on two samples."""
        digest = hashlib.sha256(json.dumps(graph_records(self.graph)).encode())
        digest.update(np.ascontiguousarray(self.sim.run(self.calibration[:2])).round(5).tobytes())
        return digest.hexdigest()[:16]


def as_dataset(data: Dataset | np.ndarray) -> Dataset:
    if isinstance(data, np.ndarray):
        return ArrayDataset(data.astype(np.float32, copy=False))
    return data


def prepare(model: object, data: Dataset | np.ndarray, candidates: Any, scheme: QuantScheme, num_samples: int,
            threads: int | None = None, progress: Progress | None = None) -> Session:
    """Trace and calibrate ``model`` on the first ``num_samples`` samples of ``data``."""
    data = as_dataset(data)
    if len(data) == 0:
        raise DataError("the data set is empty: give at least one sample")
    backend = backends.resolve(model)
    if threads is not None:
        backend.set_threads(threads)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    calibration = data.subset(min(num_samples, len(data))).load(0, min(num_samples, len(data)))
    timings["load_calibration_s"] = time.perf_counter() - started
    started = time.perf_counter()
    traced = backend.trace(model, calibration[:1], parse_candidates(candidates))
    timings["trace_s"] = time.perf_counter() - started
    started = time.perf_counter()
    sim = traced.prepare(calibration, scheme, progress)
    timings["calibration_s"] = time.perf_counter() - started
    return Session(backend, traced, sim, calibration, timings)


def search(
    model: object,
    data: Dataset | np.ndarray,
    config: SearchConfig,
    out: str | Path | None = None,
    progress: Progress | None = None,
    eval_data: Dataset | None = None,
    command: str | None = None,
    score: ScoreFn | None = None,
) -> SearchResult:
    """Find a plan: Pandey et al.'s two phases (sensitivity per group, then the Pareto search with
    ``config.solver``), or TuneQn's decremental exclusion with ``config.strategy="tuneqn"``.

    Args:
        model: the float model (a torch ``nn.Module``).
        data: unlabeled calibration data; its first ``config.num_samples`` samples are used.
        config: candidates, budgets and settings.
        out: run directory; an existing one is resumed (finished measurements are not repeated).
        eval_data: data for quality targets (default: ``data``, first ``config.eval_samples``).
        command: the command line, stored for reproduction.
        score: your own accuracy measurement for ``drop<=`` targets: called with the quantized model
            (an ``nn.Module``), returns a score in [0, 1]; used instead of labels.
    """
    if not config.budgets:
        raise ConfigError('give at least one budget, e.g. --budget "bops<=0.375" or --budget "agreement>=0.99"')
    started_all = time.perf_counter()
    if out is not None:
        check_writable(out)
    _check_labels(config.quality_target, as_dataset(eval_data if eval_data is not None else data), score)
    measure_latency = latency_needed(config.cost, config.cost_budgets, config.hardware)
    if measure_latency:  # before calibration: a torch model cannot be timed in ORT
        check_measurable(backends.resolve(model))
    session = prepare(model, data, config.candidates, config.scheme, config.num_samples, config.threads, progress)
    graph = session.graph
    latency = None
    if measure_latency:
        latency = measure_for(session.backend, session.traced, threads=config.threads, progress=progress,
                              scheme=config.scheme)
        session.costs["latency"] = MeasuredLatency(latency)
        session.timings["latency_table_s"] = latency.seconds
    _check_reachable(graph, config, session.costs)
    if config.strategy == "tuneqn" and not hasattr(session.sim, "probe"):
        raise UnsupportedModelError(
            f"the tuneqn strategy reads each layer's outputs, which the {session.backend.name} backend does not "
            "provide yet; use --strategy two-phase (the default) for this model")
    run = RunDirectory(out) if out is not None else None
    if run is not None:
        run.write_json("config.json", {"mixq_version": __version__, "command": command, **config.to_dict()})
        run.write_json("graph.json", graph_records(graph))
        if latency is not None:
            run.write_json(LATENCY_TABLE, table_report(graph, latency))
    evaluator = _evaluator(session, data, eval_data, config, progress, score)
    run_strategy = _tuneqn if config.strategy == "tuneqn" else _two_phase
    sensitivity, problem, outcome = run_strategy(session, config, run, evaluator, progress)
    curve, point, evaluations = outcome.curve, outcome.point, list(outcome.evaluations)
    if run is not None:
        run.write_json("sensitivity.json", sensitivity.to_records())
        run.write_json("curve.json", curve.to_records())
    started = time.perf_counter()
    quality = outcome.quality or evaluator.quality(point.assignment, "evaluating the chosen configuration")
    session.timings["evaluation_s"] = session.timings.get("evaluation_s", 0.0) + time.perf_counter() - started
    session.timings["total_s"] = time.perf_counter() - started_all
    plan = Plan(
        assignment=point.assignment,
        costs=costs_of(problem.graph, point.assignment, session.costs),
        predicted_sqnr_db=point.predicted_sqnr_db,
        quality={**quality.to_dict(), "evaluations": evaluator.count},
        budgets=tuple(str(b) for b in config.budgets),
        provenance={"mixq_version": __version__, "model_fingerprint": session.fingerprint, "seed": config.seed,
                    "strategy": config.strategy, "solver": config.solver, "num_samples": len(session.calibration),
                    "scheme": scheme_to_dict(config.scheme), "hardware": config.hardware,
                    "restrictions": [str(r) for r in config.restrictions], "solver_details": dict(outcome.details)},
    )
    if run is not None:
        plan.save(run.file("plan.json"))
        run.write_json("evaluations.json", evaluations)
        run.write_json("timings.json", session.timings)
    return SearchResult(plan, graph, sensitivity, curve, tuple(evaluations), dict(session.timings),
                        run.path if run else None)


def _run_key(session: Session, config: SearchConfig) -> dict[str, Any]:
    """What stored measurements depend on: settings, model and calibration data."""
    return {**config.measurement_key(), "model": session.fingerprint, "data": _hash_array(session.calibration)}


def _two_phase(session: Session, config: SearchConfig, run: RunDirectory | None, evaluator: Evaluator,
               progress: Progress | None) -> tuple[SensitivityTable, AllocationProblem, LoopResult]:
    """Pandey et al.: phase 1 (sensitivity list, resumable), then phase 2 with ``config.solver``."""
    log: MeasurementLog = MemoryLog()
    if run is not None:
        resumed = run.bind({**_run_key(session, config),
                            "chunk": chunk_size(session.sim, len(session.calibration), config.cache_mb)})
        log = JsonlMeasurementLog(run.file(MEASUREMENTS))
        if resumed:
            logger.info("resuming: %d measurements already in %s", len(list(log.done())), run.path)
    sensitivity = measure_sensitivity(session.sim, session.calibration, config.cache_mb, log, progress)
    session.timings["phase1_s"] = sensitivity.seconds
    # phase 2: the solver decides between curve-then-select and a closed loop (mixq.solvers.run.allocate)
    problem = build_problem(session.graph, sensitivity, config.cost, config.restrictions, config.hardware,
                           config.memory_budgets, session.costs)
    target = config.quality_target
    started = time.perf_counter()
    float_quality = evaluator.float_quality() if target is not None and target.needs_labels else None
    pairs = SimulationPairs(session.sim, session.calibration, run.file("pairs.json") if run else None, progress)
    spent: dict[str, float] = {}
    loop = Loop(timed(evaluator.quality, spent, "evaluation_s"), float_quality, timed(pairs, spent, "pairs_s"))
    outcome = allocate(problem, get_solver(config.solver, config.solver_settings()), config.cost_budgets, target,
                       loop)
    session.timings["phase2_s"] = time.perf_counter() - started - sum(spent.values())
    session.timings.update(spent)
    return sensitivity, problem, outcome


def _tuneqn(session: Session, config: SearchConfig, run: RunDirectory | None, evaluator: Evaluator,
            progress: Progress | None) -> tuple[SensitivityTable, AllocationProblem, LoopResult]:
    """TuneQn (mixq.strategies.tuneqn): its checkpoint is RUN/tuneqn.json, updated every iteration."""
    graph = session.graph
    noiseless = SensitivityTable({(g.id, p): math.inf for g in graph for p in g.candidates})
    problem = build_problem(graph, noiseless, config.cost, config.restrictions, config.hardware,
                           config.memory_budgets, session.costs)
    target = config.quality_target
    started = time.perf_counter()
    float_quality = evaluator.float_quality() if target is not None and target.needs_labels else None
    key = {**_run_key(session, config), "candidates": [str(p) for p in config.candidates],
           "restrictions": [str(r) for r in config.restrictions], "hardware": config.hardware,
           "cost": config.cost, "eval_samples": len(evaluator.data)}
    try:  # the paper's runtime objectives: the exported file's size and latency, where the backend can deploy
        measure = session.backend.deployed_costs(session.sim, session.calibration, config.threads)
    except CapabilityError:
        measure = None
    result = run_tuneqn(session.sim, session.calibration, problem, evaluator.quality, config.cost_budgets, target,
                        float_quality, run.file(TUNEQN_STATE) if run else None, key, measure=measure,
                        max_iterations=config.max_evaluations, progress=progress)
    session.timings["tuneqn_s"] = time.perf_counter() - started
    sensitivity, outcome = tuneqn_outcome(result, problem, len(session.calibration))
    return sensitivity, problem, outcome


def _check_labels(target: QualityTarget | None, data: Dataset, score: ScoreFn | None) -> None:
    if target is not None and target.needs_labels and score is None and data.labels is None:
        raise ConfigError(
            f"{target} compares accuracy with the float model's, which needs labels: give a folder with labels.csv, "
            "--labels CSV, an .npz with y, or (in Python) search(..., score=fn); or use a label-free target "
            'such as --budget "agreement>=0.99"')


def _check_reachable(graph: QuantGraph, config: SearchConfig, costs: Mapping[str, Any] | None = None) -> None:
    """Cost budgets, restrictions and hardware depend on the graph alone: refuse an impossible one
    before phase 1, not after."""
    noiseless = SensitivityTable({(g.id, p): math.inf for g in graph for p in g.candidates})
    problem = build_problem(graph, noiseless, config.cost, config.restrictions, config.hardware,
                           config.memory_budgets, costs)
    for budget in config.cost_budgets:
        if budget.unit is CostUnit.ABSOLUTE and budget.cost == "latency" and problem.model("latency").unit != "ms":
            raise ConfigError(f"{budget} is in milliseconds but the latency table of --hardware {config.hardware} is "
                              "relative time per MAC: give a fraction such as latency<=0.6, or drop --hardware to "
                              "measure milliseconds in ONNX Runtime (ONNX models)")
        if not within(problem.min_cost(budget.cost), problem.limit(budget)):
            raise infeasible_cost_error(problem, [budget])


def _evaluator(session: Session, data: Dataset | np.ndarray, eval_data: Dataset | None, config: SearchConfig,
               progress: Progress | None, score: ScoreFn | None = None) -> Evaluator:
    chosen = as_dataset(eval_data if eval_data is not None else data)
    if config.eval_samples is not None:
        chosen = chosen.subset(min(config.eval_samples, len(chosen)))
    return Evaluator(session.sim, chosen, progress, score=score)


def costs_of(graph: QuantGraph, assignment: Assignment, measured: Mapping[str, Any] | None = None) -> dict[str, float]:
    """BOPs, weight bytes and peak activation bytes, absolute and relative (BOPs to all-W8A16, the
    others to float32); plus ``latency_ms`` and ``latency_ratio`` with a ``measured`` latency model."""
    peak = peak_activation_bytes(graph, dict(assignment.items()))
    out: dict[str, float] = {"peak_activation_bytes": peak,
                             "peak_activation_ratio": peak / max(float_peak_bytes(graph), 1e-30)}
    for name, cls in COST_MODELS.items():
        model = cls()
        value = total_cost(model, graph, assignment)
        key = "weight_bytes" if name == "size" else name
        out[key] = value
        out[f"{name}_ratio"] = value / max(model.reference(graph), 1e-30)
    for name, model in (measured or {}).items():
        value = total_cost(model, graph, assignment)
        out[f"{name}_{model.unit}"] = value
        out[f"{name}_ratio"] = value / max(model.reference(graph), 1e-30)
    return out


def evaluate(
    model: object,
    data: Dataset | np.ndarray,
    assignment: Assignment | Plan | Precision | str | None,
    calibration: Dataset | np.ndarray | None = None,
    num_samples: int = 64,
    scheme: QuantScheme | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
    reference: object | None = None,
) -> dict[str, Any]:
    """Measure one configuration: a plan, a uniform precision (``"w6a8"``), or ``None`` for float.

    Quantizer ranges are calibrated on the first ``num_samples`` of ``calibration`` (default:
    ``data``), exactly as in ``search``, so uniform and mixed configurations compare fairly.

    ``reference``: the float model (torch module, ``.onnx`` path or proto) to measure ``model`` against.
    ``model`` is then run as given (e.g. a file written by ``mixq export``; ``assignment`` must be
    ``None``), and agreement and SQNR compare its outputs with the reference's on the same data; the
    result also has a ``reference`` field. An exported file is refused with a plan or precision (it is
    quantized already) and, as float without a reference, is compared with itself (a warning says so).
    """
    from mixq.reference import describe, is_quantized_file

    data = as_dataset(data)
    quantized_file = is_quantized_file(model)
    if reference is not None or (quantized_file and assignment is None):
        if assignment is not None:
            raise ConfigError("with a reference the model is evaluated as given: drop the plan or precision "
                              "(--plan/--uniform), or evaluate the float model with them and no --reference")
        from mixq.reference import evaluate_as_given

        return evaluate_as_given(model, data, reference, quantized_file, progress, threads)
    if quantized_file:
        raise ConfigError(f"{describe(model)} is already quantized (an exported QDQ file), so it cannot be quantized "
                          "again: evaluate it as given with --reference FLOAT_MODEL (reference= in the API)")
    calib = as_dataset(calibration) if calibration is not None else data
    session = prepare(model, calib, ["w8a8"], scheme or QuantScheme(), num_samples, threads, progress)
    resolved = resolve_assignment(session.graph, assignment)
    evaluator = Evaluator(session.sim, data, progress)
    if resolved is None:
        quality_dict = {**evaluator.float_quality().to_dict(), "agreement": 1.0}
        costs = costs_of(session.graph, uniform(session.graph, Precision.parse("fp32")))
    else:
        quality_dict = evaluator.quality(resolved).to_dict()
        costs = costs_of(session.graph, resolved)
    return {**quality_dict, "bops_ratio": costs["bops_ratio"], "weight_bytes": costs["weight_bytes"]}


def resolve_assignment(graph: QuantGraph, what: Assignment | Plan | Precision | str | None) -> Assignment | None:
    if what is None:
        return None
    if isinstance(what, Plan):
        return Assignment.from_dict(what.assignment.to_dict(), graph)
    if isinstance(what, Assignment):
        return Assignment.from_dict(what.to_dict(), graph)
    precision = what if isinstance(what, Precision) else Precision.parse(what)
    return uniform(graph, precision)


def apply(model: object, plan: Plan | Assignment, calibration: Dataset | np.ndarray, num_samples: int = 64,
          scheme: QuantScheme | None = None) -> Any:
    """A quantized (fake-quant) copy of ``model`` following ``plan``; the original is untouched."""
    session = prepare(model, calibration, ["w8a8"], scheme or QuantScheme(), num_samples)
    resolved = resolve_assignment(session.graph, plan)
    return session.sim.module(resolved)  # type: ignore[attr-defined]


def graph_records(graph: QuantGraph) -> list[dict[str, Any]]:
    return [{"id": g.id, "ops": [op.name for op in g.ops], "kinds": [k.value for k in g.kinds], "macs": g.macs,
             "weight_params": g.weight_numel, "candidates": [str(p) for p in g.candidates]} for g in graph]


def _hash_array(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def inspect_model(model: object, data: Dataset | np.ndarray | None, preprocess: Any = None) -> dict[str, Any]:
    """What mixq sees in a model: groups, ops, MACs, parameters, ops left in float."""
    if data is not None:
        sample = as_dataset(data).load(0, 1)
    elif preprocess is not None and getattr(preprocess, "crop", None):
        height, width = preprocess.crop
        sample = np.zeros((1, 3, height, width), np.float32)
    else:
        raise ConfigError("inspect needs --data (one sample is enough) to know the model's input size")
    traced = backends.resolve(model).trace(model, sample, parse_candidates("w8a8"))
    graph = traced.graph
    return {
        "groups": graph_records(graph),
        "total_macs": graph.total_macs,
        "float_params": graph.float_params,
        "quantized_ops": sum(len(g.ops) for g in graph),
        "kept_in_float": list(graph.unquantized),
    }


@dataclass(frozen=True)
class SolverComparison:
    """Every solver's plan on one sensitivity table, measured on the same evaluation data."""

    results: Mapping[str, SearchResult]
    winner: str
    metric: str
    skipped: Mapping[str, str] = field(default_factory=dict)  # solver -> why it does not apply here

    def rows(self) -> list[dict[str, Any]]:
        return [{"solver": name, "winner": name == self.winner, **result.plan.costs, **result.plan.quality,
                 "seconds": result.timings.get("total_s", 0.0)} for name, result in self.results.items()]


def compare_solvers(model: object, data: Dataset | np.ndarray, config: SearchConfig, out: str | Path,
                    solvers: tuple[str, ...] = ("greedy", "ilp", "iqp", "fallback", "evolution"),
                    progress: Progress | None = None, eval_data: Dataset | None = None,
                    command: str | None = None) -> SolverComparison:
    """Which solver wins on this model: each searches in turn (phase 1 runs once; the others resume
    from ``out``); the winner has the best measured quality among the plans that meet the budgets
    (top-1 with labels, else output SQNR), ties to the cheaper plan. ``out/plan.json`` is the winner's."""
    if not solvers:
        raise ConfigError("give at least one solver to compare")
    results: dict[str, SearchResult] = {}
    skipped: dict[str, str] = {}
    for name in solvers:
        try:
            results[name] = search(model, data, replace(config, solver=name), out=out, progress=progress,
                                   eval_data=eval_data, command=command)
        except ConfigError as exc:  # e.g. fallback without a quality target
            skipped[name] = str(exc)
    if not results:
        raise ConfigError("no solver applies to these budgets: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    metric = "top1" if all("top1" in r.plan.quality for r in results.values()) else "sqnr_db"
    primary = f"{config.cost}_ratio" if config.cost != "size" else "size_ratio"
    winner = max(results, key=lambda n: (results[n].plan.quality.get(metric, -math.inf),
                                         -results[n].plan.costs.get(primary, 0.0)))
    run = RunDirectory(out)
    results[winner].plan.save(run.file("plan.json"))
    comparison = SolverComparison(results, winner, metric, skipped)
    run.write_json("solvers.json", {"winner": winner, "metric": metric, "rows": comparison.rows(),
                                    "skipped": skipped})
    return comparison
