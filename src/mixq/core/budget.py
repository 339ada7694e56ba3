"""Budgets: a cost limit (BOPs, weight size) or a quality target (SQNR, agreement, accuracy drop).

Strings such as ``"bops<=0.375"`` are parsed here, once, at the edge.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum

from mixq.core.quality import Quality
from mixq.errors import ConfigError

_PATTERN = re.compile(r"^\s*([a-z_]+)\s*(<=|>=)\s*([0-9.eE+-]+)\s*(%|mb|MB|ms)?\s*$")

#: A valid value per budget, for messages.
_EXAMPLES = {"bops": "0.375", "size": "3.5", "latency": "0.5", "memory": "25%", "drop": "1", "sqnr": "30",
             "agreement": "0.99"}

BUDGET_HELP = (
    "budgets are bops<=R (ratio to all-W8A16, e.g. bops<=0.375), size<=MB (weight megabytes, e.g. size<=3.5), "
    "size<=P% (of the float model, e.g. size<=30%), sqnr>=DB, agreement>=P (top-1 agreement with the float "
    "model, e.g. agreement>=0.99), drop<=PCT (top-1 points lost, needs labels, e.g. drop<=1), latency<=R "
    "(ratio to every group at its slowest candidate: measured here in ONNX Runtime for an .onnx model, or from "
    "a --hardware latency table), latency<=Tms (measured milliseconds, summed over the quantized ops) or "
    "memory<=MB / memory<=P% (peak activation memory: the largest activation tensor a quantized op reads, per "
    "sample)"
)


class CostUnit(str, Enum):
    RATIO = "ratio"  # fraction of the cost model's reference
    ABSOLUTE = "absolute"  # in the cost model's unit


@dataclass(frozen=True)
class CostBudget:
    """A cost limit. ``limit`` is a fraction of the reference or an absolute amount."""

    cost: str
    limit: float
    unit: CostUnit

    def __str__(self) -> str:
        if self.cost == "size":
            return f"size<={self.limit * 100:g}%" if self.unit is CostUnit.RATIO else f"size<={self.limit / 1e6:g}MB"
        if self.cost == "latency" and self.unit is CostUnit.ABSOLUTE:
            return f"latency<={self.limit:g}ms"
        return f"{self.cost}<={self.limit:g}"

    def absolute(self, reference: float) -> float:
        return self.limit * reference if self.unit is CostUnit.RATIO else self.limit


class QualityMetric(str, Enum):
    SQNR = "sqnr"
    AGREEMENT = "agreement"
    DROP = "drop"


@dataclass(frozen=True)
class QualityTarget:
    """A quality the chosen configuration must reach, measured for real (never predicted)."""

    metric: QualityMetric
    threshold: float

    def __str__(self) -> str:
        op = "<=" if self.metric is QualityMetric.DROP else ">="
        return f"{self.metric.value}{op}{self.threshold:g}"

    @property
    def needs_labels(self) -> bool:
        return self.metric is QualityMetric.DROP

    def value(self, quality: Quality, float_quality: Quality | None = None) -> float:
        """The measured figure this target reads (dB, fraction, or top-1 points dropped)."""
        if self.metric is QualityMetric.SQNR:
            return _require(quality.sqnr_db, "sqnr")
        if self.metric is QualityMetric.AGREEMENT:
            return _require(quality.agreement, "agreement")
        base = _require(float_quality.top1 if float_quality else None, "drop")
        return 100.0 * (base - _require(quality.top1, "drop"))

    def met(self, quality: Quality, float_quality: Quality | None = None) -> bool:
        value = self.value(quality, float_quality)
        return value <= self.threshold if self.metric is QualityMetric.DROP else value >= self.threshold


def _require(value: float | None, what: str) -> float:
    if value is None:
        hint = "labels (labels.csv or y in the .npz) or an evaluation callback" if what == "drop" else "a classifier output"
        raise ConfigError(f"the {what} target cannot be measured on this model/data: it needs {hint}")
    return value


@dataclass(frozen=True)
class MemoryBudget:
    """Peak activation memory: the largest activation tensor any quantized op reads, at its bits, per
    sample (as MCT's activation-memory target). A maximum, not a sum: it narrows each group's candidates.

    ``limit`` is in bytes (``memory<=MB``) or a fraction of the float32 peak (``memory<=P%``).
    """

    limit: float
    unit: CostUnit

    def __str__(self) -> str:
        return f"memory<={self.limit * 100:g}%" if self.unit is CostUnit.RATIO else f"memory<={self.limit / 1e6:g}MB"

    def absolute(self, float_peak: float) -> float:
        return self.limit * float_peak if self.unit is CostUnit.RATIO else self.limit


Budget = CostBudget | QualityTarget | MemoryBudget


def parse_budget(text: str) -> Budget:
    """Parse one budget expression.

    >>> parse_budget("bops<=0.375")
    CostBudget(cost='bops', limit=0.375, unit=<CostUnit.RATIO: 'ratio'>)
    >>> parse_budget("size<=30%").limit
    0.3
    >>> parse_budget("size<=2.5").limit
    2500000.0
    >>> str(parse_budget("memory<=0.5")), str(parse_budget("memory<=25%"))
    ('memory<=0.5MB', 'memory<=25%')
    >>> str(parse_budget("latency<=0.5")), str(parse_budget("latency<=5ms"))
    ('latency<=0.5', 'latency<=5ms')
    >>> str(parse_budget("agreement>=99%"))
    'agreement>=0.99'
    """
    match = _PATTERN.match(text)
    if match is None:
        raise ConfigError(f"cannot read budget {text!r}: {BUDGET_HELP}")
    name, op, number, suffix = match.groups()
    try:
        value = float(number)
    except ValueError:
        raise ConfigError(f"cannot read the number in budget {text!r}: {BUDGET_HELP}") from None
    expected = {"bops": "<=", "size": "<=", "latency": "<=", "memory": "<=", "drop": "<=", "sqnr": ">=",
                "agreement": ">="}
    if name not in expected:
        raise ConfigError(f"unknown budget {name!r} in {text!r}: {BUDGET_HELP}")
    if op != expected[name]:
        raise ConfigError(f"budget {text!r} points the wrong way: write {name}{expected[name]}{number}")
    if not math.isfinite(value):
        raise ConfigError(f"budget {text!r} is not a finite number: write e.g. {name}{op}{_EXAMPLES[name]}")
    if value < 0:
        raise ConfigError(f"budget {text!r} is negative")
    if suffix in ("mb", "MB") and name not in ("size", "memory"):
        raise ConfigError(f"budget {text!r}: only size and memory take megabytes (e.g. size<=3.5MB): {BUDGET_HELP}")
    if suffix == "%" and name in ("sqnr", "drop"):
        raise ConfigError(f"budget {text!r}: {name} takes no percent sign ({'decibels, e.g. sqnr>=30' if name == 'sqnr' else 'top-1 points lost, e.g. drop<=1'})")
    if suffix == "ms" and name != "latency":
        raise ConfigError(f"budget {text!r}: only latency takes milliseconds (e.g. latency<=5ms): {BUDGET_HELP}")
    if name == "latency" and suffix == "ms":  # measured milliseconds (an ONNX model's measured table)
        return CostBudget(name, value, CostUnit.ABSOLUTE)
    if name in ("bops", "latency"):  # latency: a fraction of every group at its slowest candidate
        if suffix == "%":
            value /= 100.0
        return CostBudget(name, value, CostUnit.RATIO)
    if name == "size":
        if suffix == "%":
            return CostBudget("size", value / 100.0, CostUnit.RATIO)
        return CostBudget("size", value * 1e6, CostUnit.ABSOLUTE)
    if name == "memory":
        if suffix == "%":
            return MemoryBudget(value / 100.0, CostUnit.RATIO)
        return MemoryBudget(value * 1e6, CostUnit.ABSOLUTE)
    if name == "agreement":
        if suffix != "%" and value > 1.0:  # a fraction; a percentage only when written with %
            raise ConfigError(f"agreement is a fraction in [0, 1], got {text!r}: write 99.5% or 0.995")
        value = value / 100.0 if suffix == "%" else value
        if value > 1.0:
            raise ConfigError(f"agreement must be at most 1 (or 100%), got {text!r}")
        return QualityTarget(QualityMetric.AGREEMENT, value)
    if name == "sqnr":
        return QualityTarget(QualityMetric.SQNR, value)
    return QualityTarget(QualityMetric.DROP, value)
