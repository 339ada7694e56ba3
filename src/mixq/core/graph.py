"""The backend-neutral picture of a model: quantizable ops and the quantizer groups they form.

A quantizer group (Pandey et al., section 3.4) is a set of ops that must run at one precision:
ops that read the same tensor share its activation quantizer, and ops that share a weight share
its weight quantizer. Backends fill these types; everything downstream reads only them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from mixq.core.precision import Precision
from mixq.errors import ConfigError

GroupId = str


class OpKind(str, Enum):
    """What kind of kernel an op is; kernel availability and reports key on it."""

    CONV = "conv"
    DEPTHWISE_CONV = "depthwise_conv"
    CONV_TRANSPOSE = "conv_transpose"
    LINEAR = "linear"
    MATMUL = "matmul"  # activation x activation (attention); the second operand takes the weight bits


@dataclass(frozen=True)
class QuantOp:
    """One quantizable op as a backend found it.

    Attributes:
        name: backend-native, stable, human-readable name (module path or graph node name).
        kind: the kernel kind.
        macs: multiply-accumulates for one sample.
        weight_numel: number of weight parameters (0 for activation-activation matmuls).
        out_channels: number of weight scales when quantized per channel.
        inputs: names of the activation tensors the op reads (what groups are formed from).
        weight: name of the weight tensor, if any (a reused module reads the same weight twice).
        act_numel: elements per sample of the largest activation tensor the op reads (what a
            peak-activation-memory budget counts, at the op's activation bits).
    """

    name: str
    kind: OpKind
    macs: int
    weight_numel: int
    out_channels: int
    inputs: tuple[str, ...]
    weight: str | None = None
    act_numel: int = 0


@dataclass(frozen=True)
class QuantizerGroup:
    """Ops that move together between precisions.

    Attributes:
        id: stable id, the name of the group's first op.
        ops: the member ops in graph order.
        candidates: precisions this group may take, highest-cost first is not implied.
    """

    id: GroupId
    ops: tuple[QuantOp, ...]
    candidates: tuple[Precision, ...]

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.ops)

    @property
    def act_numel(self) -> int:
        """Elements per sample of the largest activation tensor the group's ops read."""
        return max((op.act_numel for op in self.ops), default=0)

    def activation_bytes(self, precision: Precision) -> float:
        """Bytes per sample of that tensor at ``precision``'s activation bits."""
        return self.act_numel * precision.act_bits / 8

    @property
    def weight_numel(self) -> int:
        return sum(op.weight_numel for op in _unique_weights(self.ops))

    @property
    def weight_channels(self) -> int:
        return sum(op.out_channels for op in _unique_weights(self.ops))

    @property
    def weight_tensors(self) -> int:
        return len(_unique_weights(self.ops))

    @property
    def kinds(self) -> tuple[OpKind, ...]:
        return tuple(dict.fromkeys(op.kind for op in self.ops))


def _unique_weights(ops: Sequence[QuantOp]) -> list[QuantOp]:
    """One op per distinct weight tensor, so a reused module's weight is counted once."""
    seen: set[str] = set()
    out = []
    for op in ops:
        if op.weight is None or op.weight in seen:
            continue
        seen.add(op.weight)
        out.append(op)
    return out


@dataclass(frozen=True)
class QuantGraph:
    """The quantizer groups of a model, in graph order, plus totals for cost ratios.

    Attributes:
        groups: groups keyed by id, in topological order of their first op.
        float_params: parameters of the whole model (quantized or not), for ``size<=P%`` budgets.
        unquantized: descriptions of ops mixq saw but cannot quantize (they stay float).
    """

    groups: Mapping[GroupId, QuantizerGroup]
    float_params: int = 0
    unquantized: tuple[str, ...] = field(default=())

    def __iter__(self) -> Iterator[QuantizerGroup]:
        return iter(self.groups.values())

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, group_id: GroupId) -> QuantizerGroup:
        try:
            return self.groups[group_id]
        except KeyError:
            raise ConfigError(f"no quantizer group named {group_id!r}; `mixq inspect MODEL` lists them") from None

    @property
    def ids(self) -> tuple[GroupId, ...]:
        return tuple(self.groups)

    @property
    def total_macs(self) -> int:
        return sum(g.macs for g in self)

    def records(self) -> list[dict[str, Any]]:
        """One plain record per group, as ``graph.json`` and ``mixq inspect --json`` show them."""
        return [{"id": g.id, "ops": [op.name for op in g.ops], "kinds": [k.value for k in g.kinds], "macs": g.macs,
                 "weight_params": g.weight_numel, "candidates": [str(p) for p in g.candidates]} for g in self]


def form_groups(ops: Sequence[QuantOp], candidates: Sequence[Precision]) -> list[QuantizerGroup]:
    """Union ops that share an input tensor or a weight into groups (graph order kept).

    >>> a = QuantOp("a", OpKind.LINEAR, 1, 1, 1, inputs=("x",))
    >>> b = QuantOp("b", OpKind.LINEAR, 1, 1, 1, inputs=("x",))
    >>> c = QuantOp("c", OpKind.LINEAR, 1, 1, 1, inputs=("y",))
    >>> [g.id for g in form_groups([a, b, c], [])]
    ['a', 'c']
    """
    parent = list(range(len(ops)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for index, op in enumerate(ops):
        keys = [f"act:{name}" for name in op.inputs]
        if op.weight is not None:
            keys.append(f"weight:{op.weight}")
        for key in keys:
            if key in owner:
                root_a, root_b = find(owner[key]), find(index)
                if root_a != root_b:
                    parent[max(root_a, root_b)] = min(root_a, root_b)
            else:
                owner[key] = index
    members: dict[int, list[QuantOp]] = {}
    for index, op in enumerate(ops):
        members.setdefault(find(index), []).append(op)
    return [QuantizerGroup(id=group[0].name, ops=tuple(group), candidates=tuple(candidates)) for group in members.values()]
