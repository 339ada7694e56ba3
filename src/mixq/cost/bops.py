"""Bit operations (Pandey et al., eq. 5): MACs x weight bits x activation bits."""

from __future__ import annotations

from mixq.core.graph import QuantGraph, QuantizerGroup
from mixq.core.precision import Precision

#: Pandey et al. report BOPs relative to every layer at W8A16, so W8A8 = 0.5 and W4A8 = 0.25.
REFERENCE = Precision(8, 16)


class Bops:
    """BOPs per sample; ``reference`` is the all-W8A16 model."""

    name = "bops"
    unit = "BOPs"

    def cost(self, group: QuantizerGroup, precision: Precision) -> float:
        return float(group.macs * precision.bits_per_mac)

    def reference(self, graph: QuantGraph) -> float:
        return float(graph.total_macs * REFERENCE.bits_per_mac)

    def fixed(self, graph: QuantGraph) -> float:
        return 0.0
