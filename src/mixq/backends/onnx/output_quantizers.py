"""Which tensors the export quantizes at integer groups' outputs: one decision on the traced float graph and
an assignment, shared by the export (``mixq.backends.onnx.export.output_quantizers`` writes it) and the
search's simulation (``OnnxSimulation.output_plan`` simulates it), so both put the same quantizers on the same
tensors. See the export module for why these quantizers exist.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import onnx

from mixq.backends.onnx.int_types import INTEGER_RANGE, container_type
from mixq.backends.onnx.runtime import integer_kernel
from mixq.backends.onnx.trace import GraphIndex, OnnxSite
from mixq.core.precision import Precision
from mixq.core.ranges import QuantParams

#: Activations ORT absorbs between an integer op and its output QuantizeLinear.
_ABSORBED = {"Relu", "Clip"}


@dataclass(frozen=True)
class OutputQuantizer:
    """A quantizer on ``tensor`` that every reader of it goes through.

    ``shared``: it is the (full-width) input quantizer an integer consumer already puts on the tensor, with
    that consumer's range (``source``'s calibration at ``bits``; ``source`` differs from ``tensor`` where a
    zero Pad folded into the consumer sat between them); otherwise a new quantizer with ``tensor``'s own
    calibrated range at the producing group's activation width.
    """

    tensor: str
    bits: int
    source: str
    shared: bool


@dataclass(frozen=True)
class _Reader:
    """How a tensor is read in the written QDQ model: by a QuantizeLinear (``q``: one per distinct
    parameters; ``full``: no Clip in front, its range is its container's), a float16 Cast, or a node."""

    kind: str  # "q", "cast" or "node"
    node: onnx.NodeProto | None = None
    source: str = ""
    bits: int = 0
    full: bool = False


class _Readers:
    """Readers of a float graph's tensors as the QDQ model of an assignment has them (without writing it)."""

    def __init__(self, index: GraphIndex, sites: Mapping[str, OnnxSite], precision_of: Mapping[str, Precision],
                 params: Callable[[str, int], QuantParams] | None, folded: Collection[str]) -> None:
        self.index, self.sites, self.precision_of, self.params, self.folded = index, sites, precision_of, params, folded

    def __call__(self, tensor: str) -> list[_Reader]:
        found: dict[tuple[object, ...], _Reader] = {}
        for i in self.index.consumers.get(tensor, ()):
            node = self.index.nodes[i]
            if node.name in self.folded and node.input[0] == tensor:  # the fold rewires its readers to the input
                for reader in self(node.output[0]):
                    found.setdefault(_key(reader), reader)
                continue
            site = self.sites.get(node.name)
            precision = self.precision_of.get(node.name) if site is not None else None
            for j, name in enumerate(node.input):
                if name != tensor:
                    continue
                reader = _Reader("node", node)
                if site is not None and precision is not None and (j in site.act_inputs or j == site.second_act):
                    if precision.is_float:
                        reader = _Reader("cast")
                    elif self.params is not None:
                        bits = precision.act_bits if j in site.act_inputs else precision.weight_bits
                        source = site.op.inputs[j]
                        p = self.params(source, bits)
                        full = (p.qmin, p.qmax) == INTEGER_RANGE[container_type(p.qmin, p.qmax, int4=False)]
                        reader = _Reader("q", None, source, bits, full)
                found.setdefault(_key(reader), reader)
            if tensor not in node.input:  # read by a subgraph (If/Loop body)
                found.setdefault(("node", node.name), _Reader("node", node))
        return list(found.values())


def _key(reader: _Reader) -> tuple[object, ...]:
    return (reader.kind, reader.node.name if reader.node is not None else "", reader.source, reader.bits)


def _absorbed(reader: _Reader) -> bool:
    return reader.kind == "node" and reader.node is not None and reader.node.op_type in _ABSORBED


def output_tensors(index: GraphIndex, sites: Sequence[OnnxSite], precision_of: Mapping[str, Precision],
                   int4: bool, params: Callable[[str, int], QuantParams],
                   folded: Collection[str] = ()) -> dict[str, OutputQuantizer]:
    """The output quantizers of an assignment (tensor -> quantizer), from the traced float graph.

    The one decision the export writes and the simulation simulates. ``precision_of`` maps the node names of
    the assignment's non-fp32 sites to their precision; ``params(tensor, bits)`` are the input quantizers'
    calibrated parameters (a quantizer narrower than its container gets a Clip in front, so ORT does not see
    it as a QuantizeLinear); ``folded``: the Pads the export folds into convs (``folded_pads``).

    Only groups ORT has an integer kernel for get one: 8-bit containers for both operands (weights stored as
    INT4, or activations wider than 8 bits, are dequantized to a float kernel anyway, and a quantizer there
    would add error for nothing). The output is taken after a ReLU/Clip it is the only reader of (ORT
    absorbs them); not at graph outputs. Nor does a tensor read by a group the plan keeps float whose output
    goes (through a ReLU/Clip) into a QuantizeLinear get one: ONNX Runtime quantizes a float conv between a
    DequantizeLinear and a QuantizeLinear itself (its WeightBiasQuantization), which would silently run an
    fp32 group in int8. (A float group feeding a residual Add is safe.) A tensor read by exactly one
    full-width input quantizer and by other nodes shares that quantizer; one read by no full-width quantizer
    gets a new one; one read by two or more quantizers is left as it is.
    """
    by_name = {site.node: site for site in sites}
    readers = _Readers(index, by_name, precision_of, params, folded)
    float_nodes = set(by_name) - set(precision_of)
    outputs = set(index.outputs)
    needed: dict[str, OutputQuantizer] = {}
    for name, precision in precision_of.items():
        position = index.position.get(name)
        if position is None or not integer_kernel(precision, int4):
            continue
        end, users = _chain_end(index.nodes[position].output[0], readers, outputs)
        if end in outputs or not users or any(user.node is not None and user.node.name in float_nodes
                                              and _feeds_quantizer(user.node, readers) for user in users):
            continue
        if len(users) == 1 and users[0].kind == "q":
            continue  # fusable as it is (a narrow quantizer's Clip is absorbed too)
        quantizers = [user for user in users if user.kind == "q" and user.full]
        if len(quantizers) == 1:
            needed[end] = OutputQuantizer(end, quantizers[0].bits, quantizers[0].source, shared=True)
        elif not quantizers:
            bits = max(precision.act_bits, needed[end].bits if end in needed else 0)
            needed[end] = OutputQuantizer(end, bits, end, shared=False)
    return needed


def _chain_end(tensor: str, readers: _Readers, outputs: Collection[str]) -> tuple[str, list[_Reader]]:
    """The tensor after the ReLU/Clip chain ``tensor`` is the only reader of (where ORT's fused kernel ends),
    and its readers."""
    users = readers(tensor)
    while len(users) == 1 and _absorbed(users[0]) and tensor not in outputs:
        tensor = users[0].node.output[0]  # type: ignore[union-attr]
        users = readers(tensor)
    return tensor, users


def _feeds_quantizer(node: onnx.NodeProto, readers: _Readers) -> bool:
    """Whether the node's output reaches a QuantizeLinear directly or through absorbed activations."""
    users = readers(node.output[0])
    while len(users) == 1 and _absorbed(users[0]):
        users = readers(users[0].node.output[0])  # type: ignore[union-attr]
    return any(user.kind == "q" and user.full for user in users) or (len(users) == 1 and users[0].kind == "q")


def candidate_tensors(index: GraphIndex, sites: Sequence[OnnxSite], folded: Collection[str] = ()) -> set[str]:
    """Every tensor ``output_tensors`` may put a new quantizer on, whatever the assignment: each site's output
    after the ReLU/Clip chain it is the only reader of (the chain does not depend on the assignment: an
    absorbed ReLU/Clip is the tensor's one reader in any), so its calibration statistics are collected once,
    at prepare time."""
    by_name = {site.node: site for site in sites}
    readers = _Readers(index, by_name, {}, None, folded)
    outputs = set(index.outputs)
    found: set[str] = set()
    for site in sites:
        position = index.position.get(site.node)
        if position is None:
            continue
        found.add(_chain_end(index.nodes[position].output[0], readers, outputs)[0])
    return found - outputs
