"""Quantizers at the outputs of integer groups, so ONNX Runtime can run them as integer kernels.

ORT fuses ``DQ -> Conv -> Q`` into ``QLinearConv`` only when the conv's output (after a ReLU/Clip it can
absorb) is read by one QuantizeLinear and nothing else. The simulation quantizes op inputs only, so that holds
where an integer group feeds another integer group directly, but not at a residual ``Add``, a pooling head, or
a tensor read by both a conv and a skip connection. Here each such output gets a quantizer at the group's
activation width:

- read by one of the export's QuantizeLinear and by other nodes: the others read that quantizer's output too
  (the same tensor, so the same range: nothing new is calibrated);
- read by no QuantizeLinear: a new quantizer, its range calibrated (as the search's, same method) on
  the calibration samples.

These quantizers are not part of the search's simulation: they add error. ``export`` therefore checks the file
against the simulation and reports the difference; ``output_quantizers=False`` writes the exact model instead.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import onnx

from mixq.backends.base import Progress
from mixq.backends.onnx.runtime import integer_kernel
from mixq.backends.onnx.simulation import OnnxSimulation
from mixq.backends.onnx.trace import node_inputs
from mixq.core.precision import Precision
from mixq.core.ranges import activation_params
from mixq.backends.onnx.export.qdq_writer import QdqWriter

#: Activations ORT absorbs between an integer op and its output QuantizeLinear.
_ABSORBED = {"Relu", "Clip"}


def output_tensors(proto: onnx.ModelProto, nodes: Mapping[str, Precision], int4: bool,
                   float_nodes: Collection[str] = ()) -> dict[str, int]:
    """Which tensors need a new quantizer (tensor -> activation bits); rewires shared ones in place.

    ``nodes`` maps the node names of integer ops (their groups' precision) in the written QDQ model. Only
    groups ORT has an integer kernel for get one: 8-bit containers for both operands (weights stored as
    INT4, or activations wider than 8 bits, are dequantized to a float kernel anyway, and a quantizer there
    would add error for nothing). Nor does a tensor read by a group the plan keeps float (``float_nodes``)
    whose output goes (through a ReLU/Clip) into a QuantizeLinear: ONNX Runtime quantizes a float conv
    between a DequantizeLinear and a QuantizeLinear itself (its WeightBiasQuantization), which would
    silently run an fp32 group in int8. (A float group feeding a residual Add is safe.)
    """
    graph = proto.graph
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node_inputs(node):
            consumers.setdefault(name, []).append(node)
    by_name = {node.name: node for node in graph.node}
    outputs = {o.name for o in graph.output}
    needed: dict[str, int] = {}
    for name, precision in nodes.items():
        node = by_name.get(name)
        if node is None or not integer_kernel(precision, int4):
            continue
        end = node.output[0]
        while len(consumers.get(end, [])) == 1 and consumers[end][0].op_type in _ABSORBED and end not in outputs:
            end = consumers[end][0].output[0]
        users = consumers.get(end, [])
        if end in outputs or not users or any(user.name in float_nodes and _feeds_quantizer(user, consumers)
                                              for user in users):
            continue
        quantizers = [u for u in users if u.op_type == "QuantizeLinear"]
        if len(quantizers) == len(users) == 1:
            continue  # fusable as it is
        if len(quantizers) == 1:
            dequantized = [c for c in consumers.get(quantizers[0].output[0], []) if c.op_type == "DequantizeLinear"]
            if len(dequantized) == 1:
                for user in users:
                    if user is not quantizers[0]:
                        _rewire(user, end, dequantized[0].output[0])
            continue
        if not quantizers:
            needed[end] = max(needed.get(end, 0), precision.act_bits)
    return needed


def calibrate(sim: OnnxSimulation, needed: Mapping[str, int], calibration: np.ndarray,
              progress: Progress | None = None) -> dict[str, object]:
    """Quantizer parameters of the new output quantizers, by the search's range method."""
    scheme = sim.quantizers.scheme
    stats = sim.tensor_stats(set(needed), calibration, progress)
    return {name: activation_params(stats[name], bits, scheme.act_range, scheme.act_symmetric, scheme.percentile)
            for name, bits in needed.items()}


def _feeds_quantizer(node: onnx.NodeProto, consumers: Mapping[str, list[onnx.NodeProto]]) -> bool:
    """Whether the node's output reaches a QuantizeLinear directly or through absorbed activations."""
    end = node.output[0]
    while len(consumers.get(end, [])) == 1 and consumers[end][0].op_type in _ABSORBED:
        end = consumers[end][0].output[0]
    return any(user.op_type == "QuantizeLinear" for user in consumers.get(end, []))


def _rewire(node: onnx.NodeProto, old: str, new: str) -> None:
    for i, name in enumerate(node.input):
        if name == old:
            node.input[i] = new


def add_output_quantizers(proto: onnx.ModelProto, sim: OnnxSimulation, integer_nodes: dict[str, Precision],
                          calibration: np.ndarray, int4: bool, wide_domain: str,
                          progress: Progress | None) -> tuple[onnx.ModelProto, int]:
    """The model with its integer groups' output quantizers written, and how many there are."""
    float_nodes = {site.node for site in sim.sites} - set(integer_nodes)
    needed = output_tensors(proto, integer_nodes, int4, float_nodes)
    if not needed:
        return proto, 0
    params = calibrate(sim, needed, calibration, progress)
    writer = QdqWriter(proto, int4, wide_domain)
    users = {name: [node for node in proto.graph.node if name in node.input] for name in params}
    for tensor, tensor_params in params.items():
        dequantized = writer.qdq(tensor, tensor_params)  # type: ignore[arg-type]
        for node in users[tensor]:
            for i, name in enumerate(node.input):
                if name == tensor:
                    node.input[i] = dequantized
    return writer.finish(), len(params)
