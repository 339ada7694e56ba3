"""Weight memory in bytes: parameters x weight bits / 8, plus one fp32 scale per channel."""

from __future__ import annotations

from mixq.core.graph import QuantGraph, QuantizerGroup
from mixq.core.precision import Precision

SCALE_BYTES = 4


class WeightSize:
    """Bytes of the quantizable weights; ``reference`` is the whole float32 model.

    Parameters mixq does not quantize (biases, norms) are left out of ``cost``; they are in the
    reference, so ``size<=30%`` means 30% of the float model file, as a user expects.
    """

    name = "size"
    unit = "bytes"

    def __init__(self, per_channel: bool = True) -> None:
        self.per_channel = per_channel

    def cost(self, group: QuantizerGroup, precision: Precision) -> float:
        if precision.is_float:
            return group.weight_numel * precision.weight_bits / 8
        scales = group.weight_channels if self.per_channel else group.weight_tensors
        return group.weight_numel * precision.weight_bits / 8 + (scales * SCALE_BYTES if group.weight_numel else 0)

    def reference(self, graph: QuantGraph) -> float:
        return float(graph.float_params * 4)

    def fixed(self, graph: QuantGraph) -> float:
        quantizable = sum(group.weight_numel for group in graph)
        return float(max(graph.float_params - quantizable, 0) * 4)
