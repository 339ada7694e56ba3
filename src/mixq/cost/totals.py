"""A configuration's totals under every cost model, as typed records keyed by the model's name.

These are what a plan carries (``plan.costs["bops"].ratio``) and what reports and summaries read:
the value in the model's unit and the fraction of the model's reference (BOPs: all-W8A16; size and
memory: the float32 model; latency: every group at its slowest candidate).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mixq.core.assignment import Assignment
from mixq.core.graph import QuantGraph
from mixq.cost import default_cost_models
from mixq.cost.base import CostModel, total_cost
from mixq.cost.memory import PeakMemory


@dataclass(frozen=True)
class CostRecord:
    """One cost model's total for one configuration.

    Attributes:
        value: the total in ``unit`` (BOPs per sample, bytes, milliseconds...).
        unit: the cost model's unit.
        ratio: ``value`` as a fraction of the cost model's reference (what ``bops<=0.375`` compares).
    """

    value: float
    unit: str
    ratio: float

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "unit": self.unit, "ratio": self.ratio}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CostRecord:
        return cls(float(data["value"]), str(data["unit"]), float(data["ratio"]))


def cost_records(graph: QuantGraph, assignment: Assignment, models: Mapping[str, CostModel]) -> dict[str, CostRecord]:
    """Every model's total for ``assignment`` on ``graph``, keyed by the model's name."""
    out: dict[str, CostRecord] = {}
    for name, model in models.items():
        value = total_cost(model, graph, assignment)
        out[name] = CostRecord(value, model.unit, value / max(model.reference(graph), 1e-30))
    return out


def plan_costs(graph: QuantGraph, assignment: Assignment,
               measured: Mapping[str, CostModel] | None = None) -> dict[str, CostRecord]:
    """The records a plan carries: every built-in cost model, peak activation memory, and the cost
    models measured for this model (``latency``)."""
    models: dict[str, CostModel] = default_cost_models()
    models.update(measured or {})
    records = cost_records(graph, assignment, models)
    memory = PeakMemory()
    peak = memory.total(graph, dict(assignment.items()))
    records[memory.name] = CostRecord(peak, memory.unit, peak / max(memory.reference(graph), 1e-30))
    return records
