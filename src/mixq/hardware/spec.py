"""A target described declaratively: its kernels per op kind, optional per-kernel costs, restrictions.

A hardware description narrows every quantizer group's candidates to the kernels the target has
for *all* of the group's op kinds (a group runs at one precision), then applies its restrictions.
Example (YAML; TOML with the same keys works too)::

    name: my-npu
    description: what the target is and where the kernel list comes from
    kernels:                     # precisions per op kind; omit the whole key for "any precision"
      conv: [w4a8, w8a8, w8a16]
      depthwise_conv: [w8a8, w8a16]
      default: [w8a8, w8a16]     # op kinds not listed (conv_transpose, linear, matmul)
    cost:
      latency:                   # optional: relative time per MAC of each kernel (same keys as kernels)
        default: {w4a8: 0.6, w8a8: 1.0, w8a16: 1.9}
    restrictions: ["first,last>=w8a8"]

The file is validated by :class:`mixq.schema.hardware.HardwareFile` (one message naming every bad field,
with the known op kinds or the fix); :meth:`Hardware.from_dict` builds the target from the validated model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mixq.core.graph import OpKind, QuantGraph, QuantizerGroup
from mixq.core.precision import Precision
from mixq.core.restrictions import Restriction, apply_restrictions, narrow_graph, parse_restrictions
from mixq.cost import COST_MODELS, LatencySource
from mixq.cost.base import CostModel
from mixq.errors import ConfigError
from mixq.schema import validate
from mixq.schema.hardware import DEFAULT_KEY, HardwareFile

#: The fix a message about a description file ends with.
FIX = "write it in the format of the example in mixq.hardware.spec"


@dataclass(frozen=True)
class Hardware:
    """What a deployment target can run.

    Attributes:
        name: the target's name (a built-in name or the file's ``name``).
        description: where the kernel list comes from and what it leaves out.
        kernels: op kind -> precisions with a kernel on the target; None = any precision.
        default_kernels: precisions for op kinds ``kernels`` does not list (None: such kinds are an error).
        latency: op kind -> precision -> relative time per MAC, a ``latency`` cost model (None: none).
        restrictions: per-group rules of the target (applied to any model, so a pattern may match nothing).
    """

    name: str
    description: str = ""
    kernels: Mapping[OpKind, tuple[Precision, ...]] | None = None
    default_kernels: tuple[Precision, ...] | None = None
    latency: Mapping[str, Mapping[Precision, float]] | None = None
    restrictions: tuple[Restriction, ...] = field(default=())

    def kernels_for(self, kind: OpKind) -> tuple[Precision, ...] | None:
        """The precisions the target runs ``kind`` at; None = any."""
        if self.kernels is None:
            return None
        if kind in self.kernels:
            return self.kernels[kind]
        if self.default_kernels is not None:
            return self.default_kernels
        raise ConfigError(
            f"hardware {self.name!r} lists no kernels for {kind.value} ops; add `{kind.value}:` or `default:` "
            "under `kernels:` in its description"
        )

    def allowed(self, group: QuantizerGroup) -> tuple[Precision, ...]:
        """The group's candidates that have a kernel for every op kind in the group."""
        kept = list(group.candidates)
        for kind in group.kinds:
            kernels = self.kernels_for(kind)
            if kernels is not None:
                kept = [p for p in kept if p in kernels]
        return tuple(kept)

    def narrow(self, graph: QuantGraph) -> QuantGraph:
        """Candidates cut to the target's kernels, then its restrictions applied.

        Raises:
            ConfigError: a group has no candidate the target runs (the message names its kernels).
        """

        def why(group: QuantizerGroup) -> str:
            listed = "; ".join(
                f"{kind.value}: {', '.join(str(p) for p in kernels) if (kernels := self.kernels_for(kind)) else 'any'}"
                for kind in group.kinds
            )
            return f"hardware {self.name!r} (kernels {listed})"

        narrowed = narrow_graph(graph, self.allowed, why) if self.kernels is not None else graph
        return apply_restrictions(narrowed, self.restrictions)

    def cost_models(self) -> dict[str, CostModel]:
        """Extra cost models the description defines (``latency``), by name."""
        if self.latency is None:
            return {}
        return {"latency": COST_MODELS.create("latency", LatencySource(kernels=self.latency, hardware=self.name))}

    @classmethod
    def from_dict(cls, data: Any, source: str = "hardware description") -> Hardware:
        """Read the mapping a YAML/TOML file holds, through :class:`mixq.schema.hardware.HardwareFile`;
        unknown keys are errors (typos must not pass)."""
        spec = validate(HardwareFile, data, source, ConfigError, fix=FIX)
        kernels = None if spec.kernels is None else {
            OpKind(key): precisions for key, precisions in spec.kernels.items() if key != DEFAULT_KEY}
        default = None if spec.kernels is None else spec.kernels.get(DEFAULT_KEY)
        latency = None if spec.cost.latency is None else {
            key: dict(row) for key, row in spec.cost.latency.items()}
        restrictions = tuple(
            Restriction(r.patterns, r.min_precision, r.allowed, required=False)
            for r in parse_restrictions(list(spec.restrictions))
        )
        return cls(spec.name or source, spec.description.strip(), kernels, default, latency, restrictions)
