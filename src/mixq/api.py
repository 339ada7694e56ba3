"""The public verbs: ``search``, ``evaluate``, ``apply``, ``inspect_model``. Orchestration only: the
strategies, cost totals, checks and the prepared model live in the modules that own them."""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mixq import backends
from mixq.backends import TUNERS
from mixq.backends.base import CALIBRATION_BATCH, Progress
from mixq.config import SearchConfig
from mixq.core.assignment import Assignment, resolve, uniform
from mixq.core.graph import QuantGraph
from mixq.core.precision import Precision, QuantScheme
from mixq.core.quality import measure_quality
from mixq.core.synthetic import SyntheticData
from mixq.core.tables import SensitivityTable
from mixq.core.tuned import TUNED_FILE, TunedQuantizers
from mixq.cost.base import CostModel
from mixq.cost.measured_latency import TABLE_FILE as LATENCY_TABLE
from mixq.cost.deployed import MODEL_FILE as LATENCY_MODEL
from mixq.cost.measured_latency import MeasuredLatency, measure_for, table_report
from mixq.cost.totals import plan_costs
from mixq.data.dataset import Dataset
from mixq.determinism import check_determinism, described
from mixq.errors import ConfigError
from mixq.evaluation import Evaluator, ScoreFn
from mixq.hardware import latency_needed
from mixq.plan import Plan, Provenance
from mixq.prepared import Prepared, as_dataset, prepare, trace_only
from mixq.preflight import check_budgets_given, check_labels, check_reachable, check_solver, check_synthetic
from mixq.rundir import RunDirectory, check_writable
from mixq.solvers.base import ParetoCurve
from mixq.strategies import STRATEGIES
from mixq.strategies.base import SearchContext, Strategy, StrategyOutcome
from mixq.synthetic import DATA as SYNTHETIC_DATA, FILE as SYNTHETIC_FILE, Synthesized, synthesize
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
    #: quantizers a tuning step (``config.tuning``) learned for the plan; also ``RUN/tuned.npz`` with a run directory
    tuned: TunedQuantizers | None = None


def search(
    model: object,
    data: Dataset | np.ndarray | SyntheticData,
    config: SearchConfig,
    out: str | Path | None = None,
    progress: Progress | None = None,
    eval_data: Dataset | None = None,
    command: str | None = None,
    score: ScoreFn | None = None,
) -> SearchResult:
    """Find a plan with ``config.strategy``: Pandey et al.'s two phases (sensitivity per group, then the
    Pareto search with ``config.solver``) by default, or TuneQn's decremental exclusion (``"tuneqn"``).

    Args:
        model: the float model (a torch ``nn.Module``, or a ``.onnx`` file / ``onnx.ModelProto``).
        data: unlabeled calibration data; its first ``config.num_samples`` samples are used. Without images,
            ``SyntheticData(shape)``: ``config.num_samples`` inputs distilled from the float model's batch-norm
            statistics (ZeroQ; torch models with BatchNorm) calibrate ranges, sensitivity and rounding, and are
            the evaluation data unless ``eval_data`` is given (agreement with the float model; no labels).
        config: candidates, budgets and settings.
        out: run directory; an existing one is resumed (finished measurements are not repeated).
        eval_data: data for quality targets (default: ``data``, first ``config.eval_samples``).
        command: the command line, stored for reproduction.
        score: your own accuracy measurement for ``drop<=`` targets: called with the quantized model
            (an ``nn.Module``), returns a score in [0, 1]; used instead of labels.
    """
    check_budgets_given(config)
    check_solver(config)
    started = time.perf_counter()
    if out is not None:
        check_writable(out)
    synthesized: Synthesized | None = None
    if isinstance(data, SyntheticData):
        check_synthetic(config.quality_target, eval_data, score)
        synthetic_started = time.perf_counter()
        synthesized = synthesize(model, data, config.num_samples, config.seed, config.threads, out, progress)
        synthetic_s = time.perf_counter() - synthetic_started
        data = synthesized.dataset
    check_labels(config.quality_target, as_dataset(eval_data if eval_data is not None else data), score)
    strategy: Strategy = STRATEGIES.create(config.strategy)
    measure_latency = latency_needed(config.cost, config.cost_budgets, config.hardware)
    if measure_latency:  # before calibration: a torch model cannot be timed in ORT
        backends.resolve(model).require_latency()
    if config.tuning is not None:  # before calibration: e.g. distillation needs a torch model
        backends.require_tuner(backends.resolve(model), config.tuning)
    prepared = prepare(model, data, config.candidates, config.scheme, config.num_samples, config.threads, progress)
    prepared, nondeterminism = check_determinism(prepared, config.nondeterministic, config.average_runs)
    timings: dict[str, float] = dict(prepared.timings)
    if synthesized is not None and not synthesized.reused:
        timings["synthetic_s"] = synthetic_s
    measured: dict[str, CostModel] = {}
    latency_files: dict[str, Any] = {}
    if measure_latency and config.latency_model == "deployed":
        latency_started = time.perf_counter()
        deployed = prepared.backend.measure_deployed_latency(prepared.sim, prepared.calibration, runtime=config.runtime,
                                                             threads=config.threads, progress=progress, seed=config.seed)
        measured["latency"] = deployed
        latency_files[LATENCY_MODEL] = deployed.to_records()
        timings["latency_model_s"] = time.perf_counter() - latency_started
    elif measure_latency:
        latency = measure_for(prepared.backend, prepared.traced, threads=config.threads, progress=progress,
                              scheme=config.scheme)
        measured["latency"] = MeasuredLatency(latency)
        latency_files[LATENCY_TABLE] = table_report(prepared.graph, latency)
        timings["latency_table_s"] = latency.seconds
    check_reachable(prepared.graph, config, measured)
    strategy.check(prepared)
    evaluator = _evaluator(prepared, data, eval_data, config, progress, score)
    job = _Job(strategy, SearchContext(prepared, config, None, evaluator, progress, measured), latency_files, command,
               timings, started, described(nondeterminism), model, synthesized)
    if out is None:
        return _search_in(job)
    with RunDirectory(out, command) as run:  # locked: one search at a time in a run directory
        return _search_in(replace(job, context=replace(job.context, run=run)))


@dataclass(frozen=True)
class _Job:
    """A search after its checks: what ``_search_in`` runs once the run directory (if any) is locked."""

    strategy: Strategy
    context: SearchContext
    latency_files: Mapping[str, Any]  # the measured latency model or table, by file name in the run directory
    command: str | None
    timings: dict[str, float]
    started: float
    extra_quality: Mapping[str, Any]  # recorded next to the measured quality (nondeterminism)
    model: object = None  # the float model, for the judge's exports
    synthesized: Synthesized | None = None  # distilled calibration data (--data synthetic), stored in the run


def _search_in(job: _Job) -> SearchResult:
    """The search proper, once the run directory (if any) is locked."""
    context, strategy, timings = job.context, job.strategy, job.timings
    run, prepared, config, evaluator = context.run, context.prepared, context.config, context.evaluator
    measured = context.measured_costs
    if run is not None:
        resume_key = getattr(strategy, "resume_key", None)
        if resume_key is not None:  # refuse a resume with other settings before changing anything in the run
            run.check_key(resume_key(context))
        synthetic = job.synthesized
        data_record = {} if synthetic is None else {"data": SYNTHETIC_DATA, "synthetic": dict(synthetic.record)}
        if synthetic is not None and not synthetic.reused:
            run.write_bytes(SYNTHETIC_FILE, synthetic.npz_bytes())
        run.write_json("config.json", {"mixq_version": __version__, "command": job.command, **config.to_dict(),
                                       **data_record})
        run.write_json("graph.json", prepared.graph.records())
        for name, records in job.latency_files.items():
            run.write_json(name, records)
    outcome = strategy.run(context)
    timings.update(outcome.timings)
    judged_plans = config.judged_plans("latency" in measured)
    measured_file: dict[str, Any] = {}
    if judged_plans:
        outcome, measured_file = _judged(job, outcome, judged_plans)
        timings.update(outcome.timings)
    if run is not None:
        run.write_json("sensitivity.json", outcome.sensitivity.to_records())
        run.write_json("curve.json", outcome.result.curve.to_records())
    tuned = None
    if config.tuning is not None:
        tuning_started = time.perf_counter()
        tuned = _tune(context, outcome.result.point.assignment)
        timings["tuning_s"] = time.perf_counter() - tuning_started
    evaluation_started = time.perf_counter()
    quality = (None if tuned is not None else outcome.result.quality) or evaluator.quality(
        outcome.result.point.assignment, "evaluating the chosen configuration")
    timings["evaluation_s"] = timings.get("evaluation_s", 0.0) + time.perf_counter() - evaluation_started
    timings["total_s"] = time.perf_counter() - job.started
    file_quality = {"file": measured_file} if measured_file else {}
    plan = _plan(prepared, config, outcome, {**quality.to_dict(), "evaluations": evaluator.count,
                                               **job.extra_quality, **file_quality}, measured)
    evaluations = list(outcome.result.evaluations)
    if run is not None:
        if tuned is not None:  # the plan names its file only once the file is there
            tuned.save(run.path / TUNED_FILE)
            plan = replace(plan, tuned=TUNED_FILE, folder=run.path)
        run.write_json("plan.json", plan.to_dict())
        run.write_json("evaluations.json", evaluations)
        run.write_json("timings.json", timings)
    return SearchResult(plan, prepared.graph, outcome.sensitivity, outcome.result.curve, tuple(evaluations), timings,
                        run.path if run else None, tuned)


def _tune(context: SearchContext, assignment: Assignment) -> TunedQuantizers:
    """The post-search tuning step (``config.tuning``) on the prepared simulation, which keeps its result: the
    plan's quality is then measured with the learned quantizers. Top-1 agreement and SQNR against the float
    model on the calibration samples, before and after, go into the result's details (for the report)."""
    prepared, config = context.prepared, context.config
    sim, calibration = prepared.sim, prepared.calibration
    tuner = TUNERS.create(config.tuning, config.tuning_settings())  # type: ignore[arg-type]

    def quality(with_assignment: Assignment | None) -> np.ndarray:
        return np.concatenate([sim.run(calibration[start:start + CALIBRATION_BATCH], with_assignment)
                               for start in range(0, len(calibration), CALIBRATION_BATCH)])

    reference = quality(None)
    before = measure_quality(quality(assignment), reference, None)
    started = time.perf_counter()
    tuned = tuner.tune(sim, assignment, calibration, context.progress)
    seconds = time.perf_counter() - started
    sim.tune(tuned)
    after = measure_quality(quality(assignment), reference, None)
    details = {**tuned.details, "seconds": round(seconds, 3), "calibration_samples": len(calibration),
               "agreement_before": before.agreement, "agreement_after": after.agreement,
               "sqnr_db_before": before.sqnr_db, "sqnr_db_after": after.sqnr_db}
    logger.info("%s tuning: top-1 agreement on the calibration samples %s -> %s in %.1f s", tuned.method,
                before.agreement, after.agreement, seconds)
    return replace(tuned, details=details)


def _judged(job: _Job, outcome: StrategyOutcome, plans: int) -> tuple[StrategyOutcome, dict[str, Any]]:
    """The exported file as the judge (:mod:`mixq.verify`): the best plans written and run; the fastest file
    meeting the target replaces the search's choice, and ``verified.json`` says what was measured. Also
    returns the chosen file's measured figures for the plan's quality (``file``)."""
    from mixq.backends.base import ExportSettings
    from mixq.core.quality import Quality
    from mixq.solvers.loop import LoopResult, key_of
    from mixq.verify import FILE, FOLDER, JudgeSettings, candidates, judge

    context = job.context
    prepared, config, run, evaluator = context.prepared, context.config, context.run, context.evaluator
    result, problem = outcome.result, outcome.problem
    curve = result.curve
    predicted = {key_of(curve.points[row["index"]].assignment): Quality.from_dict(row)
                 for row in result.evaluations if row.get("index") is not None}
    if result.quality is not None:
        predicted[key_of(result.point.assignment)] = result.quality
    target = config.quality_target
    float_quality = evaluator.float_quality() if target is not None and target.needs_labels else None
    picked = candidates(problem, curve.points, predicted, target, config.cost_budgets, float_quality, result.point,
                        plans)
    settings = JudgeSettings(plans=plans, runtime=config.runtime, threads=config.threads)
    export_settings = ExportSettings(scheme=config.scheme, check_samples=0, threads=config.threads)

    def export(assignment: Assignment, path: Path) -> None:
        prepared.backend.export(job.model, assignment, prepared.calibration, path, export_settings)

    started = time.perf_counter()
    with contextlib.ExitStack() as stack:  # without a run directory the files live only as long as the judge
        folder = (run.path / FOLDER if run is not None
                  else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mixq-verified-"))))
        verdict = judge(prepared, problem, picked, evaluator, target, config.cost_budgets, folder, settings, export,
                        predicted, context.progress)
    logger.info("%s", verdict.note)
    if run is not None:
        run.write_json(FILE, verdict.to_dict(run.path))
    timings = {**outcome.timings, "verify_s": time.perf_counter() - started}
    chosen = verdict.chosen
    details = {**result.details, "verified": {"chosen": chosen.name if chosen else None, "note": verdict.note,
                                              "faster_than_float": verdict.faster_than_float}}
    if chosen is None or chosen.assignment is None:
        return replace(outcome, result=replace(result, details=details), timings=timings), {}
    point = problem.point(chosen.assignment)
    measured_file = {**(chosen.quality.to_dict() if chosen.quality else {}), "latency_ms": chosen.latency_ms,
                     "float_latency_ms": verdict.float_ms}
    return (replace(outcome, result=LoopResult(point, result.curve, chosen.predicted_quality, result.evaluations,
                                               details), timings=timings), measured_file)


def _plan(prepared: Prepared, config: SearchConfig, outcome: StrategyOutcome, quality: Mapping[str, Any],
          measured: Mapping[str, CostModel]) -> Plan:
    point = outcome.result.point
    return Plan(
        assignment=point.assignment,
        costs=plan_costs(outcome.problem.graph, point.assignment, measured),
        predicted_sqnr_db=point.predicted_sqnr_db,
        quality=dict(quality),
        budgets=tuple(str(b) for b in config.budgets),
        scheme=config.scheme,
        num_samples=len(prepared.calibration),
        provenance=Provenance(mixq_version=__version__, model_fingerprint=prepared.fingerprint, seed=config.seed,
                              strategy=config.strategy, solver=config.solver, hardware=config.hardware,
                              restrictions=tuple(str(r) for r in config.restrictions),
                              solver_details=dict(outcome.result.details)),
    )


def _evaluator(prepared: Prepared, data: Dataset | np.ndarray, eval_data: Dataset | None, config: SearchConfig,
               progress: Progress | None, score: ScoreFn | None = None) -> Evaluator:
    chosen = as_dataset(eval_data if eval_data is not None else data)
    samples = config.evaluation_samples()
    if samples is not None:
        if samples < len(chosen) and config.eval_samples is None:
            logger.info("--solver %s evaluates on the first %d of %d samples (its default; --eval-samples N to "
                        "change)", config.solver, samples, len(chosen))
        chosen = chosen.subset(min(samples, len(chosen)))
    return Evaluator(prepared.sim, chosen, progress, score=score)


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
    runtime: str | None = None,
) -> dict[str, Any]:
    """Measure one configuration: a plan, a uniform precision (``"w6a8"``), or ``None`` for float.

    Quantizer ranges are calibrated on the first ``num_samples`` of ``calibration`` (default:
    ``data``), exactly as in ``search``, so uniform and mixed configurations compare fairly.

    ``reference``: the float model (torch module, ``.onnx`` path or proto) to measure ``model`` against.
    ``model`` is then run as given (e.g. a file written by ``mixq export``; ``assignment`` must be
    ``None``), and agreement and SQNR compare its outputs with the reference's on the same data; the
    result also has a ``reference`` field. An exported file is refused with a plan or precision (it is
    quantized already) and, as float without a reference, is compared with itself (a warning says so).

    ``runtime``: the ``mixq.runtimes.RUNTIMES`` entry (``"onnxruntime"``, ``"openvino"``) the file run as
    given runs in; the result then has a ``runtime`` field (an exported file without ``runtime`` runs in
    ONNX Runtime). Refused for a plan, a precision or float evaluation, which are simulated, not run as files.
    """
    from mixq.reference import describe, evaluate_as_given, is_quantized_file

    data = as_dataset(data)
    quantized_file = is_quantized_file(model)
    if reference is not None or (quantized_file and assignment is None):
        if assignment is not None:
            raise ConfigError("with a reference the model is evaluated as given: drop the plan or precision "
                              "(--plan/--uniform), or evaluate the float model with them and no --reference")
        return evaluate_as_given(model, data, reference, quantized_file, progress, threads, runtime)
    if runtime is not None:
        raise ConfigError(f"--runtime {runtime} runs a file as given (mixq eval FILE --reference FLOAT_MODEL "
                          "--runtime NAME), but a plan, a uniform precision or the float model is evaluated in "
                          "simulation: export it first (mixq export) and evaluate the file, or drop --runtime")
    if quantized_file:
        raise ConfigError(f"{describe(model)} is already quantized (an exported QDQ file), so it cannot be quantized "
                          "again: evaluate it as given with --reference FLOAT_MODEL (reference= in the API)")
    calib = as_dataset(calibration) if calibration is not None else data
    tuned = assignment.load_tuned() if isinstance(assignment, Plan) else None  # a bad file: refused before work
    prepared = prepare(model, calib, _precisions_of(assignment), scheme or QuantScheme(), num_samples, threads,
                       progress)
    if tuned is not None:
        prepared.sim.tune(tuned)
    resolved = resolve(prepared.graph, assignment.assignment if isinstance(assignment, Plan) else assignment)
    evaluator = Evaluator(prepared.sim, data, progress)
    if resolved is None:
        quality = {**evaluator.float_quality().to_dict(), "agreement": 1.0}
        resolved = uniform(prepared.graph, Precision.parse("fp32"))
    else:
        quality = evaluator.quality(resolved).to_dict()
    costs = plan_costs(prepared.graph, resolved)
    return {**quality, "bops_ratio": costs["bops"].ratio, "weight_bytes": costs["size"].value}


def _precisions_of(what: Assignment | Plan | Precision | str | None) -> list[str]:
    """The precisions an evaluation uses, as the traced graph's candidates: what is computed ahead per
    candidate (AdaRound's integers) is then computed for these bit-widths only."""
    assignment = what.assignment if isinstance(what, Plan) else what
    if isinstance(assignment, Assignment):
        return sorted({str(precision) for _, precision in assignment.items()}) or ["w8a8"]
    return [str(assignment)] if assignment is not None else ["w8a8"]


def apply(model: object, plan: Plan | Assignment, calibration: Dataset | np.ndarray, num_samples: int = 64,
          scheme: QuantScheme | None = None) -> Any:
    """A quantized (fake-quant) copy of ``model`` following ``plan`` (with its tuned quantizers, if it has
    any); the original is untouched."""
    tuned = plan.load_tuned() if isinstance(plan, Plan) else None
    prepared = prepare(model, calibration, ["w8a8"], scheme or QuantScheme(), num_samples)
    if tuned is not None:
        prepared.sim.tune(tuned)
    resolved = resolve(prepared.graph, plan.assignment if isinstance(plan, Plan) else plan)
    return prepared.sim.module(resolved)  # type: ignore[arg-type]


def inspect_model(model: object, data: Dataset | np.ndarray | None, preprocess: Any = None) -> dict[str, Any]:
    """What mixq sees in a model: groups, ops, MACs, parameters, ops left in float."""
    if data is not None:
        sample = as_dataset(data).load(0, 1)
    elif preprocess is not None and getattr(preprocess, "crop", None):
        height, width = preprocess.crop
        sample = np.zeros((1, 3, height, width), np.float32)
    else:
        raise ConfigError("inspect needs --data (one sample is enough) to know the model's input size")
    graph = trace_only(model, sample).graph
    return {
        "groups": graph.records(),
        "total_macs": graph.total_macs,
        "float_params": graph.float_params,
        "quantized_ops": sum(len(g.ops) for g in graph),
        "kept_in_float": list(graph.unquantized),
    }
