"""The sensitivity table: phase 1's output, phase 2's input (Pandey et al., section 3.2)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from mixq.core.graph import GroupId, QuantGraph
from mixq.core.precision import Precision


def nsr_to_db(nsr: float) -> float:
    """Noise-to-signal power ratio to SQNR in dB (infinite when there is no noise)."""
    return math.inf if nsr <= 0.0 else -10.0 * math.log10(nsr)


def db_to_nsr(db: float) -> float:
    return 0.0 if math.isinf(db) else 10.0 ** (-db / 10.0)


@dataclass(frozen=True)
class SensitivityTable:
    """Output SQNR (dB) when only one group is quantized at one precision, the rest float.

    Attributes:
        sqnr_db: ``(group id, precision) -> SQNR in dB``, eq. 3 of Pandey et al.
        metric: name of the metric that filled it.
        n_samples: how many calibration samples each entry averages over.
        seconds: wall time of the measurement.
    """

    sqnr_db: Mapping[tuple[GroupId, Precision], float]
    metric: str = "sqnr"
    n_samples: int = 0
    seconds: float = 0.0
    extra: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def noiseless(cls, graph: QuantGraph) -> SensitivityTable:
        """Every candidate of every group noiseless: for what depends on costs alone (reachable budgets,
        strategies that measure whole configurations instead)."""
        return cls({(g.id, p): math.inf for g in graph for p in g.candidates})

    def sqnr(self, group: GroupId, precision: Precision) -> float:
        return self.sqnr_db[(group, precision)]

    def noise(self, group: GroupId, precision: Precision) -> float:
        """Output noise power relative to the signal: additive across groups to first order."""
        if precision.keeps_float32 and (group, precision) not in self.sqnr_db:
            return 0.0
        return db_to_nsr(self.sqnr_db[(group, precision)])

    def to_records(self) -> list[dict[str, object]]:
        return [
            {"group": group, "precision": str(precision), "sqnr_db": value}
            for (group, precision), value in self.sqnr_db.items()
        ]

    @classmethod
    def from_records(cls, records: list[dict[str, object]], **kwargs: object) -> SensitivityTable:
        table = {
            (str(r["group"]), Precision.parse(str(r["precision"]))): float(r["sqnr_db"])  # type: ignore[arg-type]
            for r in records
        }
        return cls(table, **kwargs)  # type: ignore[arg-type]
