"""Synthetic allocation problems for solver tests: no model, no torch, milliseconds to build.

The noise model mimics what phase 1 measures on real networks: each group has a weight and an
activation sensitivity spread over orders of magnitude, noise power falls by 4x per extra bit, and
a log-normal jitter keeps the table from being perfectly structured (which would flatter greedy).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import cast

import numpy as np

from mixq.core.graph import GroupId, OpKind, QuantGraph, QuantizerGroup, QuantOp
from mixq.core.precision import Precision, parse_candidates
from mixq.core.tables import SensitivityTable, nsr_to_db
from mixq.cost import Bops, WeightSize
from mixq.cost.base import CostModel
from mixq.cost.deployed import DeployedLatency
from mixq.cost.pairwise import Edge
from mixq.solvers.base import AllocationProblem

DEFAULT_CANDIDATES = ("w4a8", "w8a8", "w8a16")


def conv_op(name: str, macs: int, weight_numel: int, out_channels: int = 16) -> QuantOp:
    """A conv with its own input tensor and weight, so it forms a group alone."""
    return QuantOp(name, OpKind.CONV, macs, weight_numel, out_channels, inputs=(f"{name}:in",), weight=f"{name}:w")


def graph_of(
    ops: Sequence[QuantOp], candidates: Mapping[str, Sequence[Precision]], extra_params: int = 0
) -> QuantGraph:
    """One group per op, op name = group id; ``float_params`` = all weights + ``extra_params``."""
    groups = {op.name: QuantizerGroup(op.name, (op,), tuple(candidates[op.name])) for op in ops}
    return QuantGraph(groups, float_params=sum(op.weight_numel for op in ops) + extra_params)


def problem_from_sqnr(
    sqnr_db: Mapping[str, Mapping[str, float]],
    macs: Mapping[str, int] | None = None,
    weight_numel: Mapping[str, int] | None = None,
    primary: str = "bops",
) -> AllocationProblem:
    """A hand-written problem: ``{group: {precision: sqnr_db}}``; a group's candidates are its keys.

    >>> p = problem_from_sqnr({"a": {"w4a8": 20.0, "w8a8": 40.0}}, macs={"a": 1000})
    >>> p.graph["a"].macs, [str(c) for c in p.graph["a"].candidates]
    (1000, ['w4a8', 'w8a8'])
    """
    ops = [
        conv_op(group, (macs or {}).get(group, 1000), (weight_numel or {}).get(group, 100)) for group in sqnr_db
    ]
    candidates = {group: parse_candidates(list(table)) for group, table in sqnr_db.items()}
    graph = graph_of(ops, candidates)
    table = SensitivityTable(
        {(group, Precision.parse(p)): float(v) for group, entries in sqnr_db.items() for p, v in entries.items()}
    )
    return AllocationProblem(graph, table, {"bops": Bops(), "size": WeightSize()}, primary=primary)


def random_problem(
    n_groups: int,
    candidates: Sequence[str] = DEFAULT_CANDIDATES,
    seed: int = 0,
    *,
    varied_candidates: bool = False,
    primary: str = "bops",
) -> AllocationProblem:
    """A random problem with realistic spreads of MACs, weights and sensitivities.

    Args:
        n_groups: number of quantizer groups (one op each).
        candidates: the precisions every group may take.
        seed: everything is drawn from ``numpy.random.default_rng(seed)``.
        varied_candidates: give each group a random non-empty subset of ``candidates``, as a
            target with per-kernel-kind support would.
        primary: the cost the curve is walked along.
    """
    rng = np.random.default_rng(seed)
    precisions = parse_candidates(list(candidates))
    macs = np.round(10 ** rng.uniform(4, 7, n_groups)).astype(np.int64)
    spatial = rng.choice([1, 49, 196, 784], n_groups)
    weight_numel = np.maximum(macs // spatial, 1)
    out_channels = rng.integers(8, 257, n_groups)
    weight_sens = 10 ** rng.uniform(-1, 3, n_groups) / n_groups
    act_sens = 10 ** rng.uniform(-1, 3, n_groups) / n_groups
    ops, allowed, table = [], {}, {}
    for i in range(n_groups):
        name = f"layer{i:03d}"
        ops.append(conv_op(name, int(macs[i]), int(weight_numel[i]), int(out_channels[i])))
        if varied_candidates:
            mask = rng.random(len(precisions)) < 0.7
            mask[rng.integers(len(precisions))] = True
            allowed[name] = tuple(p for p, keep in zip(precisions, mask) if keep)
        else:
            allowed[name] = precisions
        for precision in precisions:
            table[(name, precision)] = nsr_to_db(_noise(precision, weight_sens[i], act_sens[i], rng))
    graph = graph_of(ops, allowed, extra_params=int(out_channels.sum()))
    return AllocationProblem(graph, SensitivityTable(table), {"bops": Bops(), "size": WeightSize()}, primary=primary)


def _noise(precision: Precision, weight_sens: float, act_sens: float, rng: np.random.Generator) -> float:
    """Noise power ~ sensitivity x 4^-bits (float formats: their mantissa bits), jittered."""
    weight_bits = 11 if precision.is_float else precision.weight_bits
    act_bits = 11 if precision.is_float else precision.act_bits
    if precision.keeps_float32:
        weight_bits = act_bits = 24
    jitter = float(np.exp(rng.normal(0.0, 0.5)))
    return jitter * (weight_sens * 4.0**-weight_bits + act_sens * 4.0**-act_bits)


def pairwise_latency(
    graph: QuantGraph,
    unary: Mapping[tuple[GroupId, Precision], float],
    edges: Sequence[Edge],
    edge_cost: Callable[[Edge, Precision, Precision], float],
    reference_ms: float = 1.0,
    fixed_ms: float = 0.0,
) -> DeployedLatency:
    """A synthetic measured latency (a :class:`~mixq.cost.deployed.DeployedLatency`, so per-group and
    pairwise at once) with ``edge_cost(edge, producer, consumer)`` on every edge for every pair of the
    two groups' candidates."""
    pairs = {
        edge: {(p, q): float(edge_cost(edge, p, q)) for p in graph[edge[0]].candidates for q in graph[edge[1]].candidates}
        for edge in edges
    }
    return DeployedLatency(dict(unary), pairs, fixed_ms, reference_ms, runtime="synthetic")


def transition(ms: float) -> Callable[[Edge, Precision, Precision], float]:
    """An edge cost of ``ms`` where an integer group meets a float one (a dequantize or quantize and a
    layout change), 0 where both ends are integer or both float."""
    return lambda edge, p, q: ms if p.is_float != q.is_float else 0.0


def with_costs(problem: AllocationProblem, costs: Mapping[str, CostModel], primary: str) -> AllocationProblem:
    """``problem`` (its graph and table) with other cost models."""
    return AllocationProblem(problem.graph, problem.sensitivity, costs, primary=primary)


def pairwise_problem(
    n_groups: int,
    candidates: Sequence[str] = ("w4a8", "w8a8", "fp16"),
    seed: int = 0,
    *,
    skip_rate: float = 0.3,
    negative: bool = True,
) -> AllocationProblem:
    """A random problem whose primary cost is a pairwise latency: a chain of groups plus random short skips,
    every edge charged a random amount per pair of candidates (some negative when ``negative``: a fused
    pair can be cheaper than its two kernels alone), unary times random too. Costs are
    ``latency`` (primary), ``bops`` and ``size``.
    """
    base = random_problem(n_groups, candidates, seed)
    rng = np.random.default_rng(seed + 1_000_003)
    ids = base.graph.ids
    unary = {(g, p): float(rng.uniform(0.5, 2.0)) for g in ids for p in base.graph[g].candidates}
    edges: list[Edge] = [(ids[i], ids[i + 1]) for i in range(len(ids) - 1)]
    edges += [(ids[i], ids[j]) for i in range(len(ids)) for j in range(i + 2, min(i + 4, len(ids)))
              if rng.random() < skip_rate]  # residual-style: a skip spans two or three groups
    low = -0.6 if negative else 0.0
    table = {(edge, p, q): float(rng.uniform(low, 1.0)) for edge in edges
             for p in base.graph[edge[0]].candidates for q in base.graph[edge[1]].candidates}
    latency = pairwise_latency(base.graph, unary, edges, lambda e, p, q: table[(e, p, q)],
                               reference_ms=float(sum(max(unary[(g, p)] for p in base.graph[g].candidates)
                                                      for g in ids)))
    # a frozen dataclass's read-only ``name`` is what the CostModel protocol reads: cast, not copy
    return with_costs(base, {"latency": cast(CostModel, latency), "bops": Bops(), "size": WeightSize()}, "latency")
