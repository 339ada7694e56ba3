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
"""

from __future__ import annotations

import math

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mixq.core.graph import OpKind, QuantGraph, QuantizerGroup
from mixq.core.precision import Precision, parse_candidates
from mixq.core.restrictions import Restriction, apply_restrictions, narrow_graph, parse_restrictions
from mixq.cost import COST_MODELS, LatencySource
from mixq.cost.base import CostModel
from mixq.errors import ConfigError

DEFAULT_KEY = "default"
_KINDS = ", ".join(k.value for k in OpKind)


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
    def from_dict(cls, data: Mapping[str, Any], source: str = "hardware description") -> Hardware:
        """Read the mapping a YAML/TOML file holds; unknown keys are errors (typos must not pass)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source} must be a mapping with name, kernels, cost and restrictions")
        unknown = sorted(set(data) - {"name", "description", "kernels", "cost", "restrictions"})
        if unknown:
            raise ConfigError(
                f"{source}: unknown keys {unknown}; known: name, description, kernels, cost, restrictions"
            )
        name = str(data.get("name") or source)
        kernels, default = _kernels(data.get("kernels"), source)
        cost = data.get("cost") or {}
        if not isinstance(cost, Mapping) or set(cost) - {"latency"}:
            raise ConfigError(f"{source}: `cost` may hold only `latency` (bops and size are always available)")
        latency = _latency(cost.get("latency"), source) if "latency" in cost else None
        rules = data.get("restrictions") or []
        if isinstance(rules, str) or not isinstance(rules, Sequence) or not all(isinstance(r, str) for r in rules):
            raise ConfigError(f"{source}: `restrictions` must be a list of strings such as \"first,last>=w8a8\"")
        restrictions = tuple(
            Restriction(r.patterns, r.min_precision, r.allowed, required=False) for r in parse_restrictions(rules)
        )
        return cls(name, str(data.get("description", "")).strip(), kernels, default, latency, restrictions)


def _kind(key: str, source: str) -> OpKind:
    try:
        return OpKind(key)
    except ValueError:
        raise ConfigError(f"{source}: unknown op kind {key!r}; use {_KINDS} or {DEFAULT_KEY}") from None


def _kernels(
    raw: Any, source: str
) -> tuple[Mapping[OpKind, tuple[Precision, ...]] | None, tuple[Precision, ...] | None]:
    if raw is None or raw == "any":
        return None, None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: `kernels` maps op kinds ({_KINDS}, {DEFAULT_KEY}) to lists of precisions")
    kernels: dict[OpKind, tuple[Precision, ...]] = {}
    default = None
    for key, value in raw.items():
        precisions = parse_candidates(value if isinstance(value, str) else [str(v) for v in value])
        if key == DEFAULT_KEY:
            default = precisions
        else:
            kernels[_kind(str(key), source)] = precisions
    return kernels, default


def _latency(raw: Any, source: str) -> dict[str, dict[Precision, float]]:
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{source}: `cost.latency` maps op kinds to {{precision: time per MAC}}")
    table: dict[str, dict[Precision, float]] = {}
    for key, entries in raw.items():
        name = DEFAULT_KEY if key == DEFAULT_KEY else _kind(str(key), source).value
        if not isinstance(entries, Mapping):
            raise ConfigError(f"{source}: cost.latency.{key} must map precisions to numbers")
        row = {}
        for precision, value in entries.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value <= 0:
                raise ConfigError(f"{source}: cost.latency.{key}.{precision} must be positive "
                                  f"(a finite time per MAC), got {value!r}")
            row[Precision.parse(str(precision))] = float(value)
        table[name] = row
    return table
