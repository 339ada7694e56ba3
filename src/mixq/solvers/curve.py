"""The trade-off curve a phase-2 search yields: its points, their order, and the records ``curve.json`` holds."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mixq.core.assignment import Assignment
from mixq.core.graph import GroupId, QuantGraph
from mixq.core.precision import Precision
from mixq.core.tables import db_to_nsr
from mixq.errors import ConfigError

#: Costs are sums of floats: a budget written as exactly the cost of a configuration must admit it.
COST_RTOL = 1e-9

#: ``(group, from, to)``; a region move (several groups at once) names its first group here and lists
#: them all in :attr:`CurvePoint.region`.
Step = tuple[GroupId, str, str]


def within(value: float, limit: float) -> bool:
    """``value <= limit`` up to summation round-off."""
    return value <= limit + COST_RTOL * max(abs(limit), 1.0)


@dataclass(frozen=True)
class CurvePoint:
    """One configuration on a trade-off curve.

    Attributes:
        assignment: the precision of every group.
        costs: absolute total of every cost model (fixed part included).
        ratios: total over each cost model's reference (NaN when the reference is 0).
        predicted_sqnr_db: SQNR predicted from the summed table noise (not measured).
        step: ``(group, from, to)``: the move that led here from the previous point; None at the
            start and for curves that are not walks (ILP, exhaustive).
        region: for a region move (several connected groups moved from one precision to another in one
            step), every group that moved, ``step``'s group first; empty for a single-group move.
    """

    assignment: Assignment
    costs: Mapping[str, float]
    ratios: Mapping[str, float]
    predicted_sqnr_db: float
    step: Step | None = None
    region: tuple[GroupId, ...] = ()

    @property
    def predicted_noise(self) -> float:
        return db_to_nsr(self.predicted_sqnr_db)


@dataclass(frozen=True)
class ParetoCurve:
    """Points from most to least expensive in the primary cost (non-increasing).

    Attributes:
        points: the configurations, most expensive first.
        primary: the cost the curve is ordered by.
    """

    points: tuple[CurvePoint, ...]
    primary: str

    def __post_init__(self) -> None:
        if not self.points:
            raise ConfigError("a trade-off curve needs at least one point")
        for before, after in zip(self.points, self.points[1:]):
            if not within(after.costs[self.primary], before.costs[self.primary]):
                raise ConfigError(f"curve points must not get more expensive in {self.primary} along the curve")

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int) -> CurvePoint:
        return self.points[index]

    def to_records(self) -> list[dict[str, Any]]:
        """JSON-ready rows. A point's assignment is written only when the previous point plus its
        step does not give it (always for the first point), so a greedy walk stays compact.

        A region step is written as its ``step`` plus ``"region"`` (every group that moved), and its
        assignment is always written too, so a reader that does not know regions still rebuilds it."""
        records: list[dict[str, Any]] = []
        previous: Assignment | None = None
        for index, point in enumerate(self.points):
            record: dict[str, Any] = {
                "index": index,
                "costs": {k: _finite(v) for k, v in point.costs.items()},
                "ratios": {k: _finite(v) for k, v in point.ratios.items()},
                "predicted_sqnr_db": _finite(point.predicted_sqnr_db),
                "step": list(point.step) if point.step else None,
                "counts": point.assignment.counts(),
            }
            if index == 0:
                record["primary"] = self.primary
            if point.region:
                record["region"] = list(point.region)
            if (previous is None or point.step is None or point.region
                    or _follow(previous, point.step) != point.assignment):
                record["assignment"] = point.assignment.to_dict()
            records.append(record)
            previous = point.assignment
        return records

    @classmethod
    def from_records(
        cls, records: Sequence[Mapping[str, Any]], graph: QuantGraph, primary: str | None = None
    ) -> ParetoCurve:
        """Rebuild a curve written by :meth:`to_records` (assignments checked against ``graph``).

        Non-finite numbers are written as null: a null SQNR means no noise (infinite dB), a null
        ratio means the reference was unknown.
        """
        if not records:
            raise ConfigError("the saved curve is empty")
        primary = primary or str(records[0].get("primary", "bops"))
        points = []
        previous: Assignment | None = None
        for record in records:
            step_data = record.get("step")
            step: Step | None = None
            if step_data is not None:
                group, before, after = step_data
                step = (str(group), str(before), str(after))
            region = tuple(str(g) for g in record.get("region") or ())
            if "assignment" in record:
                assignment = Assignment.from_dict(record["assignment"], graph)
            elif previous is not None and step is not None:
                assignment = _follow(previous, step, region)
            else:
                raise ConfigError(f"curve record {record.get('index')} has neither an assignment nor a step")
            sqnr = record.get("predicted_sqnr_db")
            points.append(
                CurvePoint(
                    assignment=assignment,
                    costs={k: float(v) for k, v in record["costs"].items()},
                    ratios={k: math.nan if v is None else float(v) for k, v in record["ratios"].items()},
                    predicted_sqnr_db=math.inf if sqnr is None else float(sqnr),
                    step=step,
                    region=region,
                )
            )
            previous = assignment
        return cls(tuple(points), primary)


def _follow(previous: Assignment, step: Step, region: Sequence[GroupId] = ()) -> Assignment:
    """The assignment a recorded step (of one group, or of every group of ``region``) leads to."""
    group, _, after = step
    precision = Precision.parse(after)
    for moved in region or (group,):
        if moved not in previous.precisions:
            raise ConfigError(f"curve step names unknown group {moved!r}")
        previous = previous.with_(moved, precision)
    return previous


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
