"""Latency of the deployed file: per-group kernels plus what the runtime pays on each edge between groups.

A backend derives, for probe plans, the graph its runtime really runs (after the runtime's own fusions and
layout changes) and profiles it; every node's time is attributed to the group whose kernel it is (compute
node, the weight dequantization an unfused kernel pays each run) or to the edge it sits on (Q/DQ,
reorders, transposes, the ops between groups). :class:`DeployedLatency` holds the averages:

    latency(plan) = fixed + sum over groups of unary[group, p] + sum over edges of pairs[edge][p_a, p_b]

It is an additive :class:`~mixq.cost.base.CostModel` and a :class:`~mixq.cost.pairwise.PairwiseCost`,
so solvers that see edges optimise it exactly and the rest still get true totals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mixq.core.graph import GroupId, QuantGraph, QuantizerGroup
from mixq.core.precision import Precision
from mixq.cost.pairwise import Edge
from mixq.errors import ConfigError

#: Where a search writes the model in its run directory.
MODEL_FILE = "latency_model.json"


@dataclass(frozen=True)
class DeployedLatency:
    """A measured pairwise latency model of one model in one runtime on this machine (milliseconds).

    Attributes:
        unary: (group, precision) -> ms of the group's own kernel(s) in the deployed file.
        pairs: edge -> (producer precision, consumer precision) -> ms paid between them.
        fixed_ms: what no plan changes (per-run overhead, ops before the first and after the last group).
        reference_ms: the float model's measured latency in the runtime (what ``latency<=0.5`` is a fraction of).
        runtime: the runtime the figures hold for (``onnxruntime``, ``openvino``).
        key: what the figures depend on (model fingerprint, machine, runtime version, threads), for caches.
        probes: how many probe files were profiled to fit the model.
    """

    unary: Mapping[tuple[GroupId, Precision], float]
    pairs: Mapping[Edge, Mapping[tuple[Precision, Precision], float]]
    fixed_ms: float
    reference_ms: float
    runtime: str
    key: Mapping[str, Any] = field(default_factory=dict)
    probes: int = 0
    name: str = "latency"
    unit: str = "ms"

    def cost(self, group: QuantizerGroup, precision: Precision) -> float:
        try:
            return self.unary[(group.id, precision)]
        except KeyError:
            raise ConfigError(f"the deployed latency model has no time for group {group.id!r} at {precision}; "
                              "re-measure it with the same candidates") from None

    def reference(self, graph: QuantGraph) -> float:
        return self.reference_ms

    def fixed(self, graph: QuantGraph) -> float:
        return self.fixed_ms

    def edges(self, graph: QuantGraph) -> Sequence[Edge]:
        return tuple(edge for edge in self.pairs if edge[0] in graph.groups and edge[1] in graph.groups)

    def edge_cost(self, edge: Edge, producer: Precision, consumer: Precision) -> float:
        """The measured time on ``edge``; 0 for a combination no probe produced (see ``coverage``)."""
        return self.pairs.get(edge, {}).get((producer, consumer), 0.0)

    def coverage(self) -> float:
        """Fraction of (edge, producer, consumer) combinations some probe measured (1.0: all)."""
        wanted = 0
        have = 0
        candidates: dict[GroupId, set[Precision]] = {}
        for group, precision in self.unary:
            candidates.setdefault(group, set()).add(precision)
        for (a, b), table in self.pairs.items():
            wanted += len(candidates.get(a, ())) * len(candidates.get(b, ()))
            have += len(table)
        return have / wanted if wanted else 1.0

    def to_records(self) -> dict[str, Any]:
        """JSON-ready (``latency_model.json`` in the run directory)."""
        return {
            "runtime": self.runtime, "fixed_ms": self.fixed_ms, "reference_ms": self.reference_ms,
            "probes": self.probes, "key": dict(self.key),
            "unary": [{"group": g, "precision": str(p), "ms": ms} for (g, p), ms in self.unary.items()],
            "pairs": [{"producer": a, "consumer": b, "precisions": [str(p), str(q)], "ms": ms}
                      for (a, b), table in self.pairs.items() for (p, q), ms in table.items()],
        }

    @classmethod
    def from_records(cls, data: Mapping[str, Any]) -> DeployedLatency:
        unary = {(str(r["group"]), Precision.parse(r["precision"])): float(r["ms"]) for r in data["unary"]}
        pairs: dict[Edge, dict[tuple[Precision, Precision], float]] = {}
        for r in data["pairs"]:
            p, q = (Precision.parse(x) for x in r["precisions"])
            pairs.setdefault((str(r["producer"]), str(r["consumer"])), {})[(p, q)] = float(r["ms"])
        return cls(unary, pairs, float(data["fixed_ms"]), float(data["reference_ms"]), str(data["runtime"]),
                   dict(data.get("key", {})), int(data.get("probes", 0)))


def relative_error(predicted: float, measured: float) -> float:
    """|predicted - measured| / measured (NaN when nothing was measured)."""
    return abs(predicted - measured) / measured if measured > 0 else math.nan


__all__ = ["DeployedLatency", "relative_error"]
