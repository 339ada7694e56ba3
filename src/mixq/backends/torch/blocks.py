"""The blocks BRECQ reconstructs, cut from a traced torch graph, and running one block as a sub-graph.

The rule (:func:`mixq.core.reconstruction.form_blocks` merges): walking the fx nodes in execution order, a
*narrow point* is a position after which exactly one computed tensor is still needed (constants, i.e.
parameters read with ``get_attr``, do not count). Between two narrow points the graph may branch and join
(a residual block, an attention layer), so a segment between them has one input tensor and one output tensor
and is never split. Segments are merged into blocks of at most ``max_groups`` reconstructed groups, cut
between two blocks after the largest tensor (after an activation, before pooling); the last block ends at
the model's output. A block then runs alone: the executor evaluates only its nodes, reading its
input tensor and the constants from a base of cached values.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import fx
from torch.func import functional_call

from mixq.backends.torch.executor import GraphExecutor, Override, flatten_output
from mixq.backends.torch.simulation import Quantizers
from mixq.backends.torch.trace import OpSite
from mixq.core.graph import GroupId
from mixq.core.precision import Precision
from mixq.core.quantize import dynamic_params
from mixq.core.reconstruction import form_blocks
from mixq.errors import internal


@dataclass(frozen=True)
class Block:
    """A run of consecutive fx nodes with one input tensor and one output.

    Attributes:
        nodes: the nodes it computes, in execution order (constants and placeholders excluded).
        input: the node whose value enters (the model's input for the first block).
        output: the node whose value leaves, or None for the last block (its output is the model's, flattened
            to ``(batch, features)`` as the simulation compares it).
        groups: the quantizer groups whose ops are among ``nodes``, in graph order.
    """

    nodes: tuple[fx.Node, ...]
    input: fx.Node
    output: fx.Node | None
    groups: tuple[GroupId, ...]


def constants(executor: GraphExecutor) -> dict[fx.Node, Any]:
    """Values every block may read without computing them: parameters and buffers (``get_attr``) and the
    model's extra inputs with defaults."""
    values: dict[fx.Node, Any] = {node: executor.attrs[node.name] for node in executor.nodes if node.op == "get_attr"}
    values.update({node: node.args[0] for node in executor.extra_inputs})
    return values


def _is_batch_tensor(value: Any, batch: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch


def narrow_points(executor: GraphExecutor, sample: np.ndarray) -> list[tuple[int, int]]:
    """Indices ``i`` into ``executor.nodes`` after which a single computed value is still needed by later
    nodes, a tensor with the batch dimension (checked on a run of ``sample``, a couple of samples), each with
    that tensor's elements per sample."""
    with torch.no_grad():
        _, env = executor.run(torch.from_numpy(np.ascontiguousarray(sample)), keep=True)
    skip = set(constants(executor))
    live: set[fx.Node] = set()
    points: list[tuple[int, int]] = []
    for index, node in enumerate(executor.nodes):
        if node.op == "output":
            break
        if node in skip:
            continue
        if node.users:
            live.add(node)
        for arg in node.all_input_nodes:
            if executor.last_use.get(arg) is node:
                live.discard(arg)
        if len(live) == 1:
            value = env.get(next(iter(live)))
            if isinstance(value, torch.Tensor) and _is_batch_tensor(value, len(sample)):
                points.append((index, int(value[0].numel())))
    return points


def graph_blocks(executor: GraphExecutor, group_sites: Mapping[GroupId, list[OpSite]], sample: np.ndarray,
                 reconstructed: Collection[GroupId], max_groups: int) -> list[Block]:
    """The model cut into blocks (the module docstring's rule), covering every computed node once."""
    found_points = narrow_points(executor, sample)
    points = [index for index, _ in found_points]
    sizes = [size for _, size in found_points] + [0]  # the last segment ends at the output: never a cut
    skip = set(constants(executor))
    owner = {site.node: group for group, sites in group_sites.items() for site in sites}
    bounds = [-1, *points, len(executor.nodes) - 1]  # segment s is nodes (bounds[s], bounds[s + 1]]
    segments: list[list[GroupId]] = []
    for s in range(len(bounds) - 1):
        found: list[GroupId] = []
        for node in executor.nodes[bounds[s] + 1:bounds[s + 1] + 1]:
            group = owner.get(node.name)
            if group is not None and group not in found:
                found.append(group)
        segments.append(found)
    blocks: list[Block] = []
    for span in form_blocks(segments, reconstructed, max_groups, sizes):
        first, last = bounds[span.start] + 1, bounds[span.stop]
        nodes = tuple(n for n in executor.nodes[first:last + 1] if n not in skip and n.op != "placeholder")
        start = executor.input_node if span.start == 0 else executor.nodes[bounds[span.start]]
        end = None if span.stop == len(segments) else executor.nodes[last]
        groups = tuple(dict.fromkeys(g for s in span for g in segments[s]))
        blocks.append(Block(nodes, start, end, groups))
    if not blocks or blocks[-1].output is not None or executor.nodes[-1] not in blocks[-1].nodes:
        raise internal("BRECQ's blocks do not end at the model's output")
    return blocks


def run_block(executor: GraphExecutor, block: Block, x: torch.Tensor, base: Mapping[fx.Node, Any],
              overrides: dict[str, Override] | None = None) -> torch.Tensor:
    """The block's output on input ``x`` (the last block's flattened to ``(batch, features)``)."""
    values = dict(base)
    values[block.input] = x
    output, env = executor.run(x, overrides, nodes=block.nodes, base=values)
    if block.output is None:
        return flatten_output(output)
    value: torch.Tensor = env[block.output]
    return value


@dataclass
class BlockQuantizers:
    """What a block's quantized ops read: the weights given (learned, or rounded by BRECQ), else the
    simulation's, and the simulation's activation fake quantizers with QDrop's dropping (``qdrop`` > 0: each
    element passes its float value through with that probability, drawn from ``generator``)."""

    quantizers: Quantizers
    weights: Mapping[str, Callable[[], torch.Tensor]] = field(default_factory=dict)
    qdrop: float = 0.0
    generator: torch.Generator | None = None
    _clones: dict[tuple[str, Precision], torch.Tensor] = field(default_factory=dict)

    def weight(self, key: str, precision: Precision) -> torch.Tensor:
        given = self.weights.get(key)
        if given is not None:
            return given()
        weight = self.quantizers.weight(key, precision)
        if weight.is_inference():  # cached by an inference-mode run: autograd cannot save it for backward
            weight = self._clones.setdefault((key, precision), weight.clone())
        return weight

    def bias(self, key: str, precision: Precision) -> torch.Tensor | None:
        """With ``--bias-correction``, the correction of the weight being rounded (the tuned plan's bias is
        computed by the same formula from the learned integers); else the module's own bias (None)."""
        return self.quantizers.learned_bias(key, precision, self.weight(key, precision))

    def activation(self, tensor: str, x: torch.Tensor, bits: int, is_float: bool) -> torch.Tensor:
        if self.quantizers.scheme.act_dynamic and not is_float:  # the simulation's range, from a detached x
            lo, hi = torch.aminmax(x.detach())
            quantized = torch.fake_quantize_per_tensor_affine(x, *dynamic_params(float(lo), float(hi), bits))
        else:
            quantized = self.quantizers.activation(tensor, x, bits, is_float)
        if self.qdrop <= 0.0 or is_float:
            return quantized
        keep_float = torch.rand(x.shape, generator=self.generator) < self.qdrop
        return torch.where(keep_float, x, quantized)


__all__ = ["Block", "BlockQuantizers", "constants", "graph_blocks", "narrow_points", "run_block"]
