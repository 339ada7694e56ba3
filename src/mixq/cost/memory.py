"""Peak activation memory: the largest activation tensor a quantized op reads, per sample.

A maximum over groups, not a sum, so it is no additive :class:`~mixq.cost.base.CostModel`: it cannot
be the cost a curve is walked along, and ``memory<=`` budgets narrow each group's candidates instead
(:mod:`mixq.solvers.memory`). Registered as the ``memory`` cost model for totals and reports.
"""

from __future__ import annotations

from collections.abc import Mapping

from mixq.core.assignment import Assignment
from mixq.core.graph import GroupId, QuantGraph, QuantizerGroup
from mixq.core.precision import Precision

FP32 = Precision.parse("fp32")


def float_peak_bytes(graph: QuantGraph) -> float:
    """The float32 model's largest quantizable-op activation tensor, per sample."""
    return max((group.activation_bytes(FP32) for group in graph), default=0.0)


def peak_activation_bytes(graph: QuantGraph, assignment: Mapping[GroupId, Precision]) -> float:
    """The largest activation tensor a group reads under ``assignment``, per sample."""
    return max((group.activation_bytes(assignment[group.id]) for group in graph), default=0.0)


class PeakActivationBytes:
    """Bytes of the largest activation tensor; ``reference`` is the float32 model's peak."""

    name = "memory"
    unit = "bytes"

    def cost(self, group: QuantizerGroup, precision: Precision) -> float:
        """The group's own activation tensor at ``precision`` (the total is the maximum of these)."""
        return group.activation_bytes(precision)

    def total(self, graph: QuantGraph, assignment: Assignment) -> float:
        return peak_activation_bytes(graph, dict(assignment.items()))

    def reference(self, graph: QuantGraph) -> float:
        return float_peak_bytes(graph)
