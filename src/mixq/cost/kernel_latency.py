"""Latency from a hardware description: relative time per MAC of each kernel (``cost.latency``).

In ``mixq.cost`` (not ``mixq.hardware``) so that cost models depend on no hardware code; the
hardware package builds it through the ``latency`` entry of :data:`mixq.cost.COST_MODELS`.
"""

from __future__ import annotations

from collections.abc import Mapping

from mixq.core.graph import QuantGraph, QuantizerGroup
from mixq.core.precision import Precision
from mixq.errors import ConfigError


class KernelLatency:
    """Sum over a group's ops of MACs x the target's time per MAC for (op kind, precision).

    BOPs assume time scales with weight bits x activation bits; real kernels do not (fp32 on a CPU
    is not 16x int8), so a target's measured per-kernel times make a better additive cost.
    ``reference`` is every op at its slowest listed kernel, so ``latency<=0.5`` reads "half of that".
    """

    name = "latency"
    unit = "relative time"

    def __init__(self, table: Mapping[str, Mapping[Precision, float]], hardware: str = "hardware") -> None:
        self.table = table
        self.hardware = hardware

    def _row(self, kind: str) -> Mapping[Precision, float]:
        row = self.table.get(kind, self.table.get("default"))
        if row is None:
            raise ConfigError(f"hardware {self.hardware!r} gives no latency for {kind} ops; add cost.latency.{kind}")
        return row

    def cost(self, group: QuantizerGroup, precision: Precision) -> float:
        total = 0.0
        for op in group.ops:
            row = self._row(op.kind.value)
            if precision not in row:
                raise ConfigError(
                    f"hardware {self.hardware!r} gives no latency for {op.kind.value} at {precision} "
                    f"(group {group.id!r}); add it under cost.latency or drop the candidate"
                )
            total += op.macs * row[precision]
        return total

    def reference(self, graph: QuantGraph) -> float:
        return float(sum(op.macs * max(self._row(op.kind.value).values()) for group in graph for op in group.ops))

    def fixed(self, graph: QuantGraph) -> float:
        return 0.0
