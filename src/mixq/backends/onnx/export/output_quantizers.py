"""Quantizers at the outputs of integer groups, so ONNX Runtime can run them as integer kernels.

ORT fuses ``DQ -> Conv -> Q`` into ``QLinearConv`` only when the conv's output (after a ReLU/Clip it can
absorb) is read by one QuantizeLinear and nothing else. The op inputs' quantizers give that where an integer
group feeds another integer group directly, but not at a residual ``Add``, a pooling head, or a tensor read by
both a conv and a skip connection. Here each such output gets a quantizer at the group's activation width:

- read by one of the assignment's full-width input quantizers and by other nodes: the others read that
  quantizer's output too (the same tensor, so the same range: nothing new is calibrated);
- read by no full-width input quantizer: a new quantizer, its range calibrated (as the search's, same method)
  on the calibration samples (``OnnxTraced.prepare`` collects the statistics of every tensor that may need
  one, so evaluating an assignment costs no calibration pass).

Which tensors get one is decided by ``output_tensors`` (``mixq.backends.onnx.output_quantizers``, re-exported
here) on the traced float graph and the assignment: the one decision both the export (``add_output_quantizers``
writes it into the QDQ file) and the search's simulation (``OnnxSimulation.proto`` fake-quantizes the same
tensors with the same parameters) apply, so the file computes what the search measured. ``output_quantizers=False`` (``--no-output-quantizers``) writes the
model without them, and is checked against the simulation without them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import onnx

from mixq.backends.base import Progress
from mixq.backends.onnx.export.fold_pads import fold_pads
from mixq.backends.onnx.output_quantizers import OutputQuantizer, candidate_tensors, output_tensors
from mixq.backends.onnx.trace import node_inputs
from mixq.core.ranges import QuantParams

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from mixq.backends.onnx.simulation import OnnxSimulation

__all__ = ["OutputQuantizer", "add_output_quantizers", "calibrate", "candidate_tensors", "folded_pads",
           "output_tensors"]


def folded_pads(proto: onnx.ModelProto) -> frozenset[str]:
    """Names of the zero Pads the export folds into their convs (``fold_pads``): decided once on the float
    model, where the export's QuantizeLinear/DequantizeLinear/Cast nodes (transparent to the fold) are absent."""
    before = {node.name for node in proto.graph.node if node.op_type == "Pad"}
    if not before:
        return frozenset()  # no copy of the weights for the common case
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    if not fold_pads(copy):
        return frozenset()
    return frozenset(before - {node.name for node in copy.graph.node})


def calibrate(sim: OnnxSimulation, needed: Mapping[str, OutputQuantizer], calibration: np.ndarray | None = None,
              progress: Progress | None = None) -> dict[str, QuantParams]:
    """Parameters of the output quantizers: those the simulation uses (see ``OnnxSimulation.output_params``)."""
    return {name: sim.output_params(oq, calibration, progress) for name, oq in needed.items()}


def _rewire(node: onnx.NodeProto, old: str, new: str) -> None:
    for i, name in enumerate(node.input):
        if name == old:
            node.input[i] = new


def add_output_quantizers(proto: onnx.ModelProto, sim: OnnxSimulation, needed: Mapping[str, OutputQuantizer],
                          calibration: np.ndarray | None, int4: bool, wide_domain: str,
                          progress: Progress | None) -> tuple[onnx.ModelProto, dict[str, OutputQuantizer]]:
    """The written QDQ model (Pads folded) with the decided output quantizers, and those it has.

    One the written graph cannot take as decided (an opset conversion renamed its tensor, say) is left out
    and logged, and not returned: the check then simulates what the file has.
    """
    if not needed:
        return proto, {}
    from mixq.backends.onnx.export.qdq_writer import QdqWriter

    params = calibrate(sim, needed, calibration, progress)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in proto.graph.node:
        for name in dict.fromkeys(node_inputs(node)):
            consumers.setdefault(name, []).append(node)
    produced = {name for node in proto.graph.node for name in node.output}
    writer = QdqWriter(proto, int4, wide_domain)
    written: dict[str, OutputQuantizer] = {}
    for tensor, oq in needed.items():
        users = consumers.get(tensor, [])
        if tensor not in produced or not users:
            logger.warning("no output quantizer at %s: the written graph has no such tensor", tensor)
            continue
        if oq.shared:
            quantize = [u for u in users if u.op_type == "QuantizeLinear"]
            dequantized = [c for q in quantize[:1] for c in consumers.get(q.output[0], [])
                           if c.op_type == "DequantizeLinear"]
            if len(quantize) != 1 or len(dequantized) != 1:
                logger.warning("no output quantizer at %s: it is not read by one QuantizeLinear", tensor)
                continue
            for user in users:
                if user is not quantize[0]:
                    _rewire(user, tensor, dequantized[0].output[0])
        else:
            out = writer.qdq(tensor, params[tensor])
            for user in users:
                _rewire(user, tensor, out)
        written[tensor] = oq
    return writer.finish(), written
