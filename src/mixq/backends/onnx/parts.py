"""The pieces the ONNX simulation cuts out of a model: a group's own nodes (:func:`group_layer`, what TuneQn
and the layer probes run) and the parametric sub-models phase 1 runs per group (:class:`Part`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from mixq.backends.onnx.qdq import Feed, Quantizers
from mixq.backends.onnx.runtime import Runner
from mixq.backends.onnx.trace import GraphIndex, node_inputs
from mixq.core.precision import Precision


@dataclass(frozen=True)
class Layer:
    """A group's own nodes (graph positions), the tensors that are its outputs, and the tensors it reads."""

    nodes: tuple[int, ...]
    outputs: tuple[str, ...]
    reads: tuple[str, ...]


def group_layer(index: GraphIndex, names: list[str]) -> Layer:
    """A group's ops and their outputs, in op order (as the torch backend's ``probe``).

    A MatMul with a constant weight followed by ``Add`` of a 1-D constant is a ``Linear`` exported on a
    3-D input: its output is the Add's, as torch's ``Linear`` output includes the bias (Gemm and Conv
    include it already).
    """
    nodes: list[int] = []
    outputs: list[str] = []
    for name in names:
        position = index.position[name]
        nodes.append(position)
        bias = _bias_add(index, position)
        if bias is not None:
            nodes.append(bias)
        outputs.append(index.nodes[bias if bias is not None else position].output[0])
    produced = {out for i in nodes for out in index.nodes[i].output}
    reads = [name for i in nodes for name in node_inputs(index.nodes[i])
             if name not in produced and name not in index.initializers]
    return Layer(tuple(sorted(set(nodes))), tuple(outputs), tuple(dict.fromkeys(reads)))


def _bias_add(index: GraphIndex, position: int) -> int | None:
    node = index.nodes[position]
    if node.op_type != "MatMul" or node.input[1] not in index.initializers or node.output[0] in index.outputs:
        return None
    consumers = index.consumers.get(node.output[0], [])
    if len(consumers) != 1:
        return None
    add = index.nodes[consumers[0]]
    if add.op_type != "Add" or add.domain not in ("", "ai.onnx") or len(add.input) != 2:
        return None
    other = add.input[1] if add.input[0] == node.output[0] else add.input[0]
    bias = index.initializers.get(other)
    return consumers[0] if bias is not None and len(bias.dims) == 1 else None


def flat_group(values: list[np.ndarray], batch: int) -> np.ndarray:
    """Tensors of one group as ``(batch, features)`` float32, concatenated in op order."""
    return np.concatenate([np.asarray(v).reshape(batch, -1).astype(np.float32) for v in values], axis=1)


@dataclass
class Part:
    """A sub-model of the simulation (a group's descendants, or its own nodes) whose quantizers and weights
    are fed per precision: one session serves every precision of its kind."""

    runner: Runner
    boundary: list[str]
    outputs: list[str]
    feeds: list[Feed]

    def run(self, values: Mapping[str, np.ndarray], batch: int, precision: Precision,
            quantizers: Quantizers) -> list[np.ndarray]:
        """Its outputs on the boundary tensors in ``values`` with the quantizers of ``precision`` fed."""
        feeds = {name: values[name] for name in self.boundary}
        batched = {name for name in self.boundary if values[name].ndim and values[name].shape[0] == batch}
        for feed in self.feeds:
            feeds[feed.name] = feed.value(precision, quantizers)
        return self.runner.run_feeds(feeds, batch, self.outputs, batched)


__all__ = ["Layer", "Part", "flat_group", "group_layer"]
