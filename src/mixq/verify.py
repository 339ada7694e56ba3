"""The exported file is the judge: the search's best plans written, run in the runtime, timed and scored.

A search predicts latency and simulates quality; the user deploys a file. So after phase 2 the few best
plans near the budget are exported exactly as ``mixq export`` writes them, together with the float model
and uniform int8 as files, and all of them are timed *interleaved* in rounds in the same runtime (so a
machine that slows down mid-run slows every file alike) and scored on the evaluation samples, file
against the float model. The plan returned is the fastest file that meets the target (and the cost
budgets, latency measured); never a plan slower than float without saying so: if no plan beats the
float file, the result is marked and the note says it.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mixq.backends.base import Progress
from mixq.core.assignment import Assignment, uniform
from mixq.core.budget import CostBudget, QualityTarget
from mixq.core.precision import Precision
from mixq.core.quality import Quality, measure_quality
from mixq.evaluation import EVAL_BATCH, Evaluator
from mixq.prepared import Prepared
from mixq.runtimes import get_runtime
from mixq.solvers.base import AllocationProblem, CurvePoint
from mixq.solvers.loop import key_of

logger = logging.getLogger(__name__)

#: The folder of the run directory the judged files are written to.
FOLDER = "verified"
FILE = "verified.json"
#: The precision of the uniform integer file every judge times (the baseline a user compares with).
UNIFORM = Precision.parse("w8a8")
FP32 = Precision.parse("fp32")
#: Real samples the files are timed on in turn (latency depends on the values a little).
TIMING_SAMPLES = 4


@dataclass(frozen=True)
class JudgeSettings:
    """How the judge works.

    Attributes:
        plans: how many of the search's plans are exported and judged (the chosen one included).
        rounds: interleaved timing rounds; each round times every file ``runs`` times.
        runs: timed runs per file and round (after ``warmup`` untimed runs in the first round).
        runtime: the ``mixq.runtimes.RUNTIMES`` entry the files run in.
        threads: intra-op threads of the runtime.
    """

    plans: int = 3
    rounds: int = 5
    runs: int = 20
    warmup: int = 5
    runtime: str = "onnxruntime"
    threads: int | None = None


@dataclass
class Judged:
    """One file: what it is, its measured latency and quality, and the search's predictions for it."""

    name: str
    kind: str  # float | uniform | plan
    assignment: Assignment | None
    path: Path
    predicted_latency_ms: float | None = None
    predicted_quality: Quality | None = None
    samples_ms: list[float] = field(default_factory=list)
    quality: Quality | None = None
    meets_target: bool | None = None

    @property
    def latency_ms(self) -> float:
        return float(statistics.median(self.samples_ms)) if self.samples_ms else math.nan


@dataclass(frozen=True)
class Verdict:
    """The judge's decision and everything it measured (``verified.json``)."""

    files: tuple[Judged, ...]
    chosen: Judged | None
    faster_than_float: bool
    note: str
    settings: JudgeSettings
    target: QualityTarget | None

    @property
    def float_ms(self) -> float:
        return next(f.latency_ms for f in self.files if f.kind == "float")

    def to_dict(self, run_path: Path | None = None) -> dict[str, Any]:
        def rel(path: Path) -> str:
            try:
                return str(path.relative_to(run_path)) if run_path is not None else str(path)
            except ValueError:
                return str(path)

        return {
            "runtime": self.settings.runtime, "threads": self.settings.threads, "rounds": self.settings.rounds,
            "target": str(self.target) if self.target is not None else None,
            "files": [{"name": f.name, "kind": f.kind, "file": rel(f.path), "latency_ms": f.latency_ms,
                       "predicted_latency_ms": f.predicted_latency_ms,
                       "quality": _numbers(f.quality), "predicted_quality": _numbers(f.predicted_quality),
                       "meets_target": f.meets_target,
                       "assignment": f.assignment.to_dict() if f.assignment is not None else None}
                      for f in self.files],
            "chosen": self.chosen.name if self.chosen is not None else None,
            "faster_than_float": self.faster_than_float, "note": self.note,
        }


def _numbers(quality: Quality | None) -> dict[str, float]:
    if quality is None:
        return {}
    return {k: float(v) for k, v in quality.to_dict().items() if v is not None}


def candidates(problem: AllocationProblem, points: Sequence[CurvePoint], evaluations: Mapping[Any, Quality],
               target: QualityTarget | None, budgets: Sequence[CostBudget], float_quality: Quality | None,
               chosen: CurvePoint, count: int) -> list[CurvePoint]:
    """The plans worth exporting: with a quality target, the predicted-cheapest points the simulation found
    meeting it; without one, the best-predicted points that meet the cost budgets. The chosen point is
    always among them."""
    primary = problem.primary
    if target is not None:
        pool = sorted((p for p in points if key_of(p.assignment) in evaluations
                       and target.met(evaluations[key_of(p.assignment)], float_quality)), key=lambda p: p.costs[primary])
    else:
        pool = sorted((p for p in points if problem.meets(p.costs, budgets)), key=lambda p: -p.predicted_sqnr_db)
    picked: list[CurvePoint] = [chosen]
    for point in pool:
        if len(picked) >= count:
            break
        if all(key_of(point.assignment) != key_of(p.assignment) for p in picked):
            picked.append(point)
    return picked


Exporter = Callable[[Assignment, Path], None]


def judge(prepared: Prepared, problem: AllocationProblem, picked: Sequence[CurvePoint], evaluator: Evaluator,
          target: QualityTarget | None, budgets: Sequence[CostBudget], folder: Path, settings: JudgeSettings,
          export: Exporter, predicted: Mapping[Any, Quality], progress: Progress | None = None) -> Verdict:
    """Export ``picked`` plus float and uniform int8 into ``folder``, time them interleaved, score them.

    ``export(assignment, path)`` writes one file as ``mixq export`` does; ``predicted`` holds the
    simulation's quality of assignments already evaluated (the rest are evaluated here).
    """
    graph = prepared.graph
    folder.mkdir(parents=True, exist_ok=True)
    files = [Judged("float", "float", None, folder / "float.onnx")]
    int8 = uniform(graph, UNIFORM)
    plan_keys = {key_of(p.assignment) for p in picked}
    if key_of(int8) not in plan_keys:
        files.append(Judged(f"uniform {UNIFORM}", "uniform", int8, folder / f"uniform-{UNIFORM}.onnx",
                            _predicted_latency(problem, int8)))
    for index, point in enumerate(picked):
        if all(p.keeps_float32 for _, p in point.assignment.items()):
            continue  # the float file itself, timed already
        files.append(Judged(f"plan {index}", "plan", point.assignment, folder / f"plan-{index}.onnx",
                            _predicted_latency(problem, point.assignment)))
    total = len(files)
    for done, judged in enumerate(files):
        if progress:
            progress("exporting the best plans", done, total)
        export(judged.assignment if judged.assignment is not None else uniform(graph, FP32),
               judged.path)
    if progress:
        progress("exporting the best plans", total, total)
    runtime = get_runtime(settings.runtime)
    inputs = np.ascontiguousarray(evaluator.data.load(0, min(TIMING_SAMPLES, len(evaluator.data))), dtype=np.float32)
    runners = [runtime.run_as_given(str(f.path), inputs[:1], settings.threads) for f in files]
    for judged, measured in zip(files, time_interleaved(runners, inputs, settings.rounds, settings.runs,
                                                         settings.warmup, progress)):
        judged.samples_ms = measured
    reference = evaluator.reference
    float_quality = evaluator.float_quality() if target is not None and target.needs_labels else None
    for done, (judged, run) in enumerate(zip(files, runners)):
        if progress:
            progress("scoring the files", done, total)
        outputs = np.concatenate([run(batch) for _, batch in evaluator.data.batches(EVAL_BATCH)])
        judged.quality = measure_quality(outputs, reference, evaluator.labels)
        if judged.assignment is not None:
            judged.predicted_quality = predicted.get(key_of(judged.assignment)) or evaluator.quality(
                judged.assignment, f"simulating {judged.name}")
            judged.meets_target = target.met(judged.quality, float_quality) if target is not None else None
    if progress:
        progress("scoring the files", total, total)
    return _decide(files, problem, target, budgets, settings)


def _predicted_latency(problem: AllocationProblem, assignment: Assignment) -> float | None:
    return problem.cost_of("latency", assignment) if "latency" in problem.costs else None


def time_interleaved(runners: Sequence[Callable[[np.ndarray], np.ndarray]], inputs: np.ndarray, rounds: int = 5,
                     runs: int = 20, warmup: int = 5, progress: Progress | None = None) -> list[list[float]]:
    """Per runner, the median milliseconds of ``runs`` timed batch-1 calls in each of ``rounds`` rounds.

    Calls cycle through the samples of ``inputs``: a float kernel's speed can depend on the values (denormal
    activations), so every file is timed on the same few real samples rather than on noise. Every round times every runner in turn and the order
    rotates from round to round, so a machine that slows down slows every file alike and none always runs first.
    """
    samples = [np.ascontiguousarray(inputs[i:i + 1], dtype=np.float32) for i in range(len(inputs))]
    for run in runners:
        for call in range(warmup):
            run(samples[call % len(samples)])
    measured: list[list[float]] = [[] for _ in runners]
    order = list(range(len(runners)))
    for round_ in range(rounds):
        if progress:
            progress("timing the files (interleaved)", round_, rounds)
        shift = round_ % max(len(order), 1)
        for index in order[shift:] + order[:shift]:
            times = []
            for call in range(runs):
                sample = samples[call % len(samples)]
                started = time.perf_counter()
                runners[index](sample)
                times.append((time.perf_counter() - started) * 1e3)
            measured[index].append(float(statistics.median(times)))
    if progress:
        progress("timing the files (interleaved)", rounds, rounds)
    return measured


def _latency_ok(judged: Judged, float_ms: float, budgets: Sequence[CostBudget]) -> bool:
    """Whether the measured latency meets every latency budget (a ratio is of the measured float file)."""
    for budget in budgets:
        if budget.cost != "latency":
            continue
        if judged.latency_ms > budget.absolute(float_ms):
            return False
    return True


def _decide(files: list[Judged], problem: AllocationProblem, target: QualityTarget | None,
            budgets: Sequence[CostBudget], settings: JudgeSettings) -> Verdict:
    float_ms = next(f.latency_ms for f in files if f.kind == "float")
    plans = [f for f in files if f.kind in ("plan", "uniform") and f.assignment is not None
             and all(p in problem.graph[g].candidates for g, p in f.assignment.items())]
    float_plan = uniform(problem.graph, FP32)
    if all(FP32 in group.candidates for group in problem.graph):
        float_file = next(f for f in files if f.kind == "float")  # a valid plan too: never return a slower one
        float_file.assignment, float_file.meets_target = float_plan, True
        plans.append(float_file)
    passing = [f for f in plans if f.meets_target is not False and _latency_ok(f, float_ms, budgets)]
    if target is None:  # no quality target: the search's own choice stands if its file meets the budgets
        searched = [f for f in passing if f.kind == "plan"]
        best = searched[0] if searched else None
    else:
        best = min(passing, key=lambda f: f.latency_ms) if passing else None
    if best is None:
        fallback = next((f for f in files if f.kind == "plan"), None)
        if fallback is None:
            note = "the search chose the float model: there was no quantized plan to judge"
            return Verdict(tuple(files), None, False, note, settings, target)
        note = ("no exported plan met " + (f"{target} and " if target else "") + "the budgets when run as a file; "
                f"returning the search's choice ({fallback.latency_ms:.3g} ms, float {float_ms:.3g} ms), marked "
                "unverified: relax the target or the budget")
        return Verdict(tuple(files), None, fallback.latency_ms < float_ms, note, settings, target)
    faster = best.latency_ms < float_ms
    if best.kind == "float":
        note = (f"no quantized file ran faster than the float file ({float_ms:.3g} ms) in {settings.runtime} while "
                "meeting " + (f"{target}" if target else "the budgets") + ": returning the float model (every group "
                "fp32), marked as not faster than float")
        return Verdict(tuple(files), best, False, note, settings, target)
    note = (f"{best.name} is the fastest file meeting " + (f"{target}" if target else "the budgets") +
            f": {best.latency_ms:.3g} ms, {best.latency_ms / float_ms:.2f} x float ({float_ms:.3g} ms)")
    if not faster:
        note = (f"no plan ran faster than the float file ({float_ms:.3g} ms) in {settings.runtime}: returning the "
                f"best found ({best.name}, {best.latency_ms:.3g} ms), marked as not faster than float")
    return Verdict(tuple(files), best, faster, note, settings, target)
