"""Peak activation memory: the largest activation tensor a quantized op reads, per sample.

Not additive (a maximum over groups), so it is no :class:`~mixq.cost.base.CostModel`: memory budgets
narrow candidates instead (:mod:`mixq.solvers.memory`), and plans report it as a total.
"""

from __future__ import annotations

from collections.abc import Mapping

from mixq.core.graph import GroupId, QuantGraph
from mixq.core.precision import Precision

FP32 = Precision.parse("fp32")


def float_peak_bytes(graph: QuantGraph) -> float:
    """The float32 model's largest quantizable-op activation tensor, per sample."""
    return max((group.activation_bytes(FP32) for group in graph), default=0.0)


def peak_activation_bytes(graph: QuantGraph, assignment: Mapping[GroupId, Precision]) -> float:
    """The largest activation tensor a group reads under ``assignment``, per sample."""
    return max((group.activation_bytes(assignment[group.id]) for group in graph), default=0.0)


class PeakMemory:
    """Peak activation bytes per sample; ``reference`` is the float32 model's peak."""

    name = "memory"
    unit = "bytes"

    def total(self, graph: QuantGraph, assignment: Mapping[GroupId, Precision]) -> float:
        return peak_activation_bytes(graph, assignment)

    def reference(self, graph: QuantGraph) -> float:
        return float_peak_bytes(graph)
