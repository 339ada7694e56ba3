"""What the report shows, computed once from a run directory; the HTML and PNG writers only draw it.

Uniform baselines are predicted with the solvers' own additive-noise rule
(:meth:`AllocationProblem.predicted_sqnr_db`), so they sit on the same scale as the Pareto curve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mixq.core.assignment import uniform
from mixq.core.budget import CostBudget, CostUnit, QualityMetric, QualityTarget, parse_budget
from mixq.core.precision import Precision
from mixq.cost import Bops
from mixq.errors import ConfigError
from mixq.report.deployed_files import DeployedFiles, deployed_files
from mixq.report.load import GroupInfo, RunData
from mixq.report.timeline import Timeline, timeline
from mixq.solvers.base import AllocationProblem

#: Quality keys of plan.json / evaluations.json and how the report names them.
QUALITY_LABELS = {
    "sqnr_db": "output SQNR vs float (dB)",
    "agreement": "top-1 agreement with float",
    "top1": "top-1 accuracy",
    "top5": "top-5 accuracy",
    "n_samples": "evaluation samples",
    "evaluations": "real evaluations made",
}


@dataclass(frozen=True)
class Baseline:
    """Every group at one precision, predicted from the sensitivity table."""

    precision: str
    bops_ratio: float
    predicted_sqnr_db: float


@dataclass(frozen=True)
class CurveRow:
    """One Pareto point in plotting form."""

    index: int
    bops_ratio: float
    size_ratio: float
    predicted_sqnr_db: float
    counts: Mapping[str, int]


@dataclass(frozen=True)
class Measured:
    """A curve point whose quality was measured for real (evaluations.json)."""

    index: int
    bops_ratio: float
    sqnr_db: float | None
    agreement: float | None
    top1: float | None
    target_value: float | None


@dataclass(frozen=True)
class DepthRow:
    """One group along network depth: its sensitivity at every candidate and what the plan chose."""

    group: GroupInfo
    sqnr_db: Mapping[str, float]
    chosen: Precision
    highest: bool

    @property
    def score_db(self) -> float:
        """SQNR at the group's cheapest candidate: the lower, the more the group resists quantization."""
        cheapest = min(self.group.candidates, key=lambda p: p.bits_per_mac)
        return self.sqnr_db.get(str(cheapest), math.inf)


@dataclass(frozen=True)
class ReportData:
    """The report's content: figures and tables read from it, nothing else."""

    run: RunData
    candidates: tuple[str, ...]
    rows: tuple[DepthRow, ...]
    curve: tuple[CurveRow, ...]
    baselines: tuple[Baseline, ...]
    measured: tuple[Measured, ...]
    chosen_index: int | None
    chosen_bops_ratio: float
    chosen_predicted_sqnr_db: float
    bops_limits: tuple[float, ...]
    sqnr_targets: tuple[float, ...]
    timeline: Timeline
    deployed: DeployedFiles | None = None  # only when the run holds verified.json

    @property
    def kept(self) -> tuple[DepthRow, ...]:
        """Groups left in float or at their highest candidate, most sensitive first."""
        return tuple(sorted((r for r in self.rows if r.highest or r.chosen.is_float), key=lambda r: r.score_db))

    def most_sensitive(self, count: int = 10) -> tuple[DepthRow, ...]:
        """The groups with the lowest score, whatever they were given: shown when none was kept high."""
        return tuple(sorted(self.rows, key=lambda r: r.score_db)[:count])

    @property
    def quality(self) -> list[tuple[str, Any]]:
        """Measured quality of the chosen configuration, labelled, in a fixed order."""
        stored = self.run.plan.quality
        return [(label, stored[key]) for key, label in QUALITY_LABELS.items() if key in stored]


def analyze(run: RunData) -> ReportData:
    """Derive every figure's and table's data from a loaded run."""
    problem = AllocationProblem(run.graph, run.sensitivity, {"bops": Bops()}, "bops")
    candidates = _candidates(run)
    assignment = run.plan.assignment
    rows = []
    for info in run.groups:
        chosen = assignment[info.id]
        highest = max(info.candidates, key=lambda p: p.bits_per_mac) if info.candidates else chosen
        table = {str(p): run.sensitivity.sqnr_db[(info.id, p)] for p in info.candidates
                 if (info.id, p) in run.sensitivity.sqnr_db}
        rows.append(DepthRow(info, table, chosen, chosen == highest))
    curve = tuple(CurveRow(i, p.ratios.get("bops", math.nan), p.ratios.get("size", math.nan), p.predicted_sqnr_db,
                           p.assignment.counts()) for i, p in enumerate(run.curve.points))
    chosen_index = next((i for i, p in enumerate(run.curve.points) if dict(p.assignment.precisions) ==
                         dict(assignment.precisions)), None)
    measured = tuple(_measured(record, curve) for record in run.evaluations if _in_range(record, curve))
    limits, targets = _budget_lines(run.config.get("budgets", ()))
    return ReportData(
        run=run,
        candidates=candidates,
        rows=tuple(rows),
        curve=curve,
        baselines=_baselines(problem, run, candidates),
        measured=measured,
        chosen_index=chosen_index,
        chosen_bops_ratio=float(run.plan.ratio("bops") or problem.ratio_of("bops", assignment)),
        chosen_predicted_sqnr_db=run.plan.predicted_sqnr_db,
        bops_limits=limits,
        sqnr_targets=targets,
        timeline=timeline(run),
        deployed=None if run.verified is None else deployed_files(run.verified),
    )


def _candidates(run: RunData) -> tuple[str, ...]:
    """Candidates in the order the user gave them, then any a group has beyond those."""
    ordered = [str(Precision.parse(str(c))) for c in run.config.get("candidates", ())]
    for info in run.groups:
        ordered += [str(p) for p in info.candidates if str(p) not in ordered]
    return tuple(dict.fromkeys(ordered))


def _baselines(problem: AllocationProblem, run: RunData, candidates: tuple[str, ...]) -> tuple[Baseline, ...]:
    out = []
    for name in candidates:
        precision = Precision.parse(name)
        if not all(precision in info.candidates for info in run.groups):
            continue  # not a uniform option: some group cannot run at it
        config = uniform(run.graph, precision)
        out.append(Baseline(name, problem.ratio_of("bops", config), problem.predicted_sqnr_db(config)))
    return tuple(sorted(out, key=lambda b: b.bops_ratio))


def _in_range(record: Mapping[str, Any], curve: tuple[CurveRow, ...]) -> bool:
    index = record.get("index")
    return isinstance(index, int) and 0 <= index < len(curve)


def _measured(record: Mapping[str, Any], curve: tuple[CurveRow, ...]) -> Measured:
    def number(key: str) -> float | None:
        value = record.get(key)
        return float(value) if isinstance(value, (int, float)) else None

    index = int(record["index"])
    return Measured(index, curve[index].bops_ratio, number("sqnr_db"), number("agreement"), number("top1"),
                    number("target_value"))


def _budget_lines(budgets: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """BOPs-ratio limits and SQNR targets: the budgets that can be drawn on the Pareto plot's axes."""
    limits: list[float] = []
    targets: list[float] = []
    for text in budgets or ():
        try:
            budget = parse_budget(str(text))
        except ConfigError:
            continue
        if isinstance(budget, CostBudget) and budget.cost == "bops" and budget.unit is CostUnit.RATIO:
            limits.append(budget.limit)
        elif isinstance(budget, QualityTarget) and budget.metric is QualityMetric.SQNR:
            targets.append(budget.threshold)
    return tuple(limits), tuple(targets)
