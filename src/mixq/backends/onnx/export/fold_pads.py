"""Fold zero ``Pad`` nodes into the ``Conv`` that consumes them, after the QDQ nodes are in place.

Exporters of "same"-padded networks (EfficientNet, TF-ported models) write ``Pad -> Conv``; with a quantizer
on the conv's input this becomes ``Pad -> Q -> DQ -> Conv``, and ``Pad`` sits between the producing conv and its
QuantizeLinear, so ONNX Runtime cannot fuse the producer into an integer kernel (its own Pad fusion does
not look through Q/DQ). Moving the padding into the conv's ``pads`` attribute is exact: the padded value is
0, which every quantizer here represents exactly (its zero-point), and a Clip to a range holding 0 keeps it 0.
The pad amounts are often computed by a small constant subgraph (``ConstantOfShape``/``Concat``/``Slice``...);
it is evaluated once with ONNX's reference evaluator.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from mixq.backends.onnx.qdq import drop_unused_initializers
from mixq.backends.onnx.trace import node_inputs

logger = logging.getLogger(__name__)

#: Nodes a zero may pass through unchanged on its way from the Pad to the Conv (QDQ of a range holding 0).
_TRANSPARENT = {"QuantizeLinear", "DequantizeLinear", "Cast", "Clip"}


def fold_pads(proto: onnx.ModelProto) -> int:
    """Fold every foldable zero Pad into its Conv in place; returns how many were folded."""
    graph = proto.graph
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node_inputs(node):
            consumers.setdefault(name, []).append(node)
    producer = {name: node for node in graph.node for name in node.output}
    outputs = {o.name for o in graph.output}
    constants = _Constants(proto, producer)
    folded: list[onnx.NodeProto] = []
    for conv in graph.node:
        if conv.op_type != "Conv" or _attribute(conv, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            continue
        pad = _pad_before(conv, producer, consumers, outputs, constants)
        if pad is None:
            continue
        amounts = _spatial_pads(pad, constants)
        if amounts is None:
            continue
        # the chain's first node now reads the Pad's input; the conv pads instead
        for node in consumers[pad.output[0]]:
            for i, name in enumerate(node.input):
                if name == pad.output[0]:
                    node.input[i] = pad.input[0]
        existing = _attribute(conv, "pads", None)
        spatial = len(amounts) // 2
        base = [int(v) for v in existing] if isinstance(existing, (list, tuple)) else [0] * (2 * spatial)
        merged = [a + b for a, b in zip(base, amounts)]
        for attribute in list(conv.attribute):
            if attribute.name == "pads":
                conv.attribute.remove(attribute)
        conv.attribute.append(helper.make_attribute("pads", merged))
        folded.append(pad)
    for pad in folded:
        graph.node.remove(pad)
    if folded:
        _drop_dead_nodes(graph)
        drop_unused_initializers(graph)
        logger.info("folded %d zero Pad nodes into their convs", len(folded))
    return len(folded)


def _attribute(node: onnx.NodeProto, name: str, default: object) -> object:
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _pad_before(conv: onnx.NodeProto, producer: dict[str, onnx.NodeProto],
                consumers: dict[str, list[onnx.NodeProto]], outputs: set[str],
                constants: _Constants) -> onnx.NodeProto | None:
    """The Pad feeding the conv's input through single-consumer transparent nodes, if any."""
    name = conv.input[0]
    while True:
        node = producer.get(name)
        if node is None or len(consumers.get(name, [])) != 1 or name in outputs:
            return None
        if node.op_type == "Pad":
            return node
        if node.op_type not in _TRANSPARENT or (node.op_type == "Clip" and not _clip_keeps_zero(node, constants)):
            return None
        name = node.input[0]


def _clip_keeps_zero(clip: onnx.NodeProto, constants: _Constants) -> bool:
    if len(clip.input) == 1:  # opset < 11: bounds as attributes
        low, high = _attribute(clip, "min", -np.inf), _attribute(clip, "max", np.inf)
    else:
        names = [*clip.input[1:3], "", ""][:2]
        low = constants.value(names[0]) if names[0] else -np.inf
        high = constants.value(names[1]) if names[1] else np.inf
        if low is None or high is None:
            return False
    return float(low) <= 0.0 <= float(high)  # type: ignore[arg-type]


class _Constants:
    """Values of tensors that do not depend on the graph's inputs (initializers, Constant nodes, and what
    is computed from them only)."""

    def __init__(self, proto: onnx.ModelProto, producer: dict[str, onnx.NodeProto]) -> None:
        self.proto = proto
        self.producer = producer
        self.initializers = {t.name: t for t in proto.graph.initializer}
        self.inputs = {i.name for i in proto.graph.input} - set(self.initializers)

    def value(self, name: str) -> np.ndarray | None:
        if not name:
            return None
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        nodes = self._ancestors(name)
        if nodes is None:
            return None
        from onnx.reference import ReferenceEvaluator

        used = {n for node in nodes for n in node_inputs(node)}
        graph = helper.make_graph(nodes, "constant", [], [helper.make_tensor_value_info(name, 0, None)],
                                  [t for t in self.proto.graph.initializer if t.name in used])
        model = helper.make_model(graph, opset_imports=list(self.proto.opset_import), ir_version=self.proto.ir_version)
        try:
            outputs: Any = ReferenceEvaluator(model).run(None, {})
            return np.asarray(outputs[0])
        except Exception as exc:  # an op the reference evaluator lacks: leave the Pad alone
            logger.debug("cannot evaluate %s: %s", name, exc)
            return None

    def _ancestors(self, name: str) -> list[onnx.NodeProto] | None:
        order: list[onnx.NodeProto] = []
        seen: set[str] = set()
        stack = [name]
        while stack:
            current = stack.pop()
            if not current or current in seen or current in self.initializers:
                continue
            seen.add(current)
            if current in self.inputs:
                return None
            node = self.producer.get(current)
            if node is None or node.op_type in ("Shape", "Size"):  # depends on the input's shape
                return None
            order.append(node)
            stack.extend(node_inputs(node))
        unique = {id(node): node for node in order}
        position = {id(node): i for i, node in enumerate(self.proto.graph.node)}
        return sorted(unique.values(), key=lambda node: position[id(node)])


def _spatial_pads(pad: onnx.NodeProto, constants: _Constants) -> list[int] | None:
    """The Pad's amounts as a Conv ``pads`` list, if it is a constant zero pad of the spatial axes only."""
    if _attribute(pad, "mode", b"constant") not in (b"constant", "constant"):
        return None
    if len(pad.input) > 3 and pad.input[3]:  # explicit axes: rare, not handled
        return None
    if len(pad.input) < 2:  # opset < 11: pads as an attribute
        amounts = _attribute(pad, "pads", None)
        value = float(_attribute(pad, "value", 0.0))  # type: ignore[arg-type]
    else:
        amounts = constants.value(pad.input[1])
        fill = constants.value(pad.input[2]) if len(pad.input) > 2 and pad.input[2] else np.zeros(())
        if fill is None:
            return None
        value = float(np.asarray(fill).reshape(-1)[0]) if np.size(fill) else 0.0
    if amounts is None or value != 0.0:
        return None
    amounts = [int(a) for a in np.asarray(amounts).reshape(-1)]
    rank = len(amounts) // 2
    if rank < 3 or len(amounts) != 2 * rank or any(a < 0 for a in amounts):
        return None
    begins, ends = amounts[:rank], amounts[rank:]
    if any(begins[:2]) or any(ends[:2]):  # batch or channel padding cannot move into a conv
        return None
    return begins[2:] + ends[2:]


def _drop_dead_nodes(graph: onnx.GraphProto) -> None:
    """Remove nodes whose outputs nobody reads (the Pad's constant subgraph)."""
    while True:
        used = {name for node in graph.node for name in node_inputs(node)} | {o.name for o in graph.output}
        dead = [node for node in graph.node if not any(name in used for name in node.output if name)]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)
