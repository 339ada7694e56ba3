"""Solvers that measure for real: the protocol they share, their bookkeeping, their result.

A plain :class:`~mixq.solvers.base.Solver` maps a sensitivity table to a curve and never runs the
model. Fallback, evolution and the cross-layer IQP need more: real evaluations of whole
configurations, or measurements of pairs of groups. They get those as callbacks in a :class:`Loop`,
so they stay backend-neutral and testable on synthetic qualities, and report how many real
evaluations they spent (the figure that decides whether they are affordable).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from mixq.core.assignment import Assignment
from mixq.core.budget import CostBudget, QualityMetric, QualityTarget
from mixq.core.quality import Quality
from mixq.errors import ConfigError
from mixq.sensitivity.pairs import PairMeasurer
from mixq.solvers.base import AllocationProblem, CurvePoint, ParetoCurve

EvaluateFn = Callable[[Assignment], Quality]
#: ``progress(stage, done, total)``, the callback of :data:`mixq.backends.base.Progress` (solvers do not
#: import the backends).
ProgressFn = Callable[[str, int, int], None]


def key_of(assignment: Assignment) -> tuple[tuple[str, str], ...]:
    """A hashable identity of an assignment (Assignment holds a dict)."""
    return tuple(sorted((group, str(p)) for group, p in assignment.items()))


@dataclass
class Loop:
    """The expensive calls a closed-loop solver may make.

    Attributes:
        evaluate: measures a whole configuration for real on the evaluation data.
        float_quality: the float model's quality (``drop`` targets need it).
        measure_pairs: measures single groups and pairs (the IQP needs it); None when unavailable.
        progress: where a solver reports its evaluations (``stage, done, total``); None: nowhere.
    """

    evaluate: EvaluateFn
    float_quality: Quality | None = None
    measure_pairs: PairMeasurer | None = None
    progress: ProgressFn | None = None


class Evaluations:
    """Real evaluations, memoized (a configuration is never measured twice) and kept in order."""

    def __init__(self, loop: Loop, target: QualityTarget | None) -> None:
        self.loop = loop
        self.target = target
        self.done: dict[tuple[tuple[str, str], ...], tuple[Assignment, Quality]] = {}

    def __call__(self, assignment: Assignment) -> Quality:
        key = key_of(assignment)
        if key not in self.done:
            self.done[key] = (assignment, self.loop.evaluate(assignment))
        return self.done[key][1]

    def __contains__(self, assignment: Assignment) -> bool:
        return key_of(assignment) in self.done

    @property
    def count(self) -> int:
        return len(self.done)

    def value(self, quality: Quality) -> float:
        """The figure a solver ranks by: the target's (higher is better), else measured SQNR."""
        if self.target is None:
            return quality.sqnr_db if quality.sqnr_db is not None else -math.inf
        value = self.target.value(quality, self.loop.float_quality)
        return -value if self.target.metric is QualityMetric.DROP else value

    def met(self, quality: Quality) -> bool:
        return self.target is None or self.target.met(quality, self.loop.float_quality)

    def records(self, curve: ParetoCurve) -> tuple[dict[str, Any], ...]:
        """evaluations.json rows: ``index`` into ``curve`` (None if not on it), measured figures, target value."""
        where = {key_of(p.assignment): i for i, p in enumerate(curve.points)}
        rows = []
        for order, (key, (assignment, quality)) in enumerate(self.done.items()):
            target_value = None
            if self.target is not None:
                try:
                    target_value = self.target.value(quality, self.loop.float_quality)
                except ConfigError:
                    target_value = None
            rows.append({"index": where.get(key), "order": order, **quality.to_dict(), "target_value": target_value})
        return tuple(rows)


@dataclass(frozen=True)
class LoopResult:
    """What any phase-2 strategy hands back to ``search``.

    Attributes:
        point: the chosen configuration.
        curve: the configurations the strategy considered, most expensive first (curve.json).
        quality: the chosen point's measured quality, when the strategy measured it.
        evaluations: real evaluations in order (evaluations.json rows).
        details: strategy-specific facts for the plan (evaluations spent, interaction size, ...).
    """

    point: CurvePoint
    curve: ParetoCurve
    quality: Quality | None = None
    evaluations: tuple[dict[str, Any], ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class ClosedLoopSolver(Protocol):
    """A phase-2 strategy that measures for real while it searches."""

    name: str

    def search(
        self,
        problem: AllocationProblem,
        budgets: Sequence[CostBudget],
        target: QualityTarget | None,
        loop: Loop,
    ) -> LoopResult:
        """The chosen configuration under every cost budget (and the target, if given)."""
        ...


def curve_of(problem: AllocationProblem, points: Sequence[CurvePoint]) -> ParetoCurve:
    """Points ordered most expensive first in the primary cost (a record, not necessarily a front)."""
    primary = problem.primary
    ordered = sorted(enumerate(points), key=lambda ip: (-ip[1].costs[primary], ip[0]))
    return ParetoCurve(tuple(p for _, p in ordered), primary)


def with_point(curve: ParetoCurve, point: CurvePoint) -> ParetoCurve:
    """``curve`` with ``point`` inserted where its primary cost belongs (unless already on it)."""
    if any(key_of(p.assignment) == key_of(point.assignment) for p in curve.points):
        return curve
    cost = point.costs[curve.primary]
    at = next((i for i, p in enumerate(curve.points) if p.costs[curve.primary] < cost), len(curve.points))
    return ParetoCurve((*curve.points[:at], point, *curve.points[at:]), curve.primary)
