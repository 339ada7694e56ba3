"""The plan along the network: which groups run as integer kernels, which stay float, and where it switches.

In a deployed file every switch between integer and float kernels costs (a DequantizeLinear, a layout
change, a kernel that no longer fuses), so a plan with few long float regions can be faster than one
with many short ones at the same BOPs. The timeline shows the regions and, when the run holds the
measured latency model (``latency_model.json``), each group's predicted milliseconds and the edges that
pay a transition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

from mixq.core.precision import Precision
from mixq.cost.deployed import DeployedLatency
from mixq.cost.pairwise import Edge
from mixq.report.load import RunData


@dataclass(frozen=True)
class TimelineGroup:
    """One group in graph order at the plan's precision; ``ms`` is the model's time for it (None: no model)."""

    index: int
    id: str
    precision: Precision
    macs: int
    ms: float | None


@dataclass(frozen=True)
class Transition:
    """An edge the plan pays for: producer and consumer positions, their precisions and the time (if known)."""

    producer: str
    consumer: str
    producer_index: int
    consumer_index: int
    precisions: tuple[Precision, Precision]
    ms: float | None


@dataclass(frozen=True)
class Timeline:
    """The plan's integer and float regions and its transitions.

    Attributes:
        groups: every group in graph order.
        float_regions: indices of the groups of each float region. With the latency model's edges a region
            is a connected set of float groups (a residual branch joins its trunk); without them it is a
            maximal run of consecutive float groups in graph order.
        transitions: with the model, its edges between an integer and a float group (and what it charges
            them); without it, the places
            in graph order where an integer group and a float group meet.
        from_edges: whether the counts come from the model's edges (True) or from graph order.
        fixed_ms: the model's per-run time no plan changes (None without the model).
    """

    groups: tuple[TimelineGroup, ...]
    float_regions: tuple[tuple[int, ...], ...]
    transitions: tuple[Transition, ...]
    from_edges: bool
    fixed_ms: float | None
    #: with the model: what its edges inside regions charge (the ops between two kernels of one kind)
    within_ms: float | None = None

    @property
    def summary(self) -> str:
        regions, transitions = len(self.float_regions), len(self.transitions)
        return f"{regions} float region{'s' * (regions != 1)}, {transitions} transition{'s' * (transitions != 1)}"

    @property
    def bands(self) -> tuple[tuple[int, int], ...]:
        """(first, last) index of each run of consecutive float groups: what the figures shade."""
        runs = _runs([g.index for g in self.groups if g.precision.is_float])
        return tuple((run[0], run[-1]) for run in runs)

    @property
    def groups_ms(self) -> float | None:
        times = [g.ms for g in self.groups]
        return None if self.fixed_ms is None or any(t is None for t in times) else sum(t for t in times if t)

    @property
    def transitions_ms(self) -> float | None:
        return None if self.fixed_ms is None else sum(t.ms or 0.0 for t in self.transitions)

    @property
    def predicted_ms(self) -> float | None:
        """The model's latency of the plan: fixed + every group's kernel + every edge (transitions and within)."""
        groups, edges = self.groups_ms, self.transitions_ms
        if self.fixed_ms is None or groups is None or edges is None:
            return None
        return self.fixed_ms + groups + edges + (self.within_ms or 0.0)


def precision_order(line: Timeline, candidates: Sequence[str]) -> list[str]:
    """The precisions the plan uses, in the candidates' order (so colors match the other figures), then any other."""
    used = dict.fromkeys(str(g.precision) for g in line.groups)
    return [c for c in candidates if c in used] + [p for p in used if p not in candidates]


def timeline(run: RunData) -> Timeline:
    """The plan of ``run`` along its graph, measured by ``run.latency_model`` when the run has one."""
    model = run.latency_model
    groups = tuple(TimelineGroup(info.index, info.id, run.plan.assignment[info.id], info.macs,
                                 None if model is None else model.unary.get((info.id, run.plan.assignment[info.id])))
                   for info in run.groups)
    if model is None:
        regions = tuple(tuple(run) for run in _runs([g.index for g in groups if g.precision.is_float]))
        return Timeline(groups, regions, _boundaries(groups), False, None)
    edges = tuple(model.edges(run.graph))
    at = {g.id: g.precision for g in groups}
    within = sum(model.edge_cost((a, b), at[a], at[b]) for a, b in edges if at[a].is_float == at[b].is_float)
    return Timeline(groups, _components(groups, edges), _paid(groups, edges, model), True, model.fixed_ms,
                    float(within))


def _runs(indices: Sequence[int]) -> list[list[int]]:
    """Sorted indices split where they stop being consecutive."""
    runs: list[list[int]] = []
    for index in indices:
        if runs and runs[-1][-1] == index - 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    return runs


def _boundaries(groups: Sequence[TimelineGroup]) -> tuple[Transition, ...]:
    """Consecutive groups (graph order) of which one is float and the other integer."""
    return tuple(Transition(a.id, b.id, a.index, b.index, (a.precision, b.precision), None)
                 for a, b in pairwise(groups) if a.precision.is_float != b.precision.is_float)


def _components(groups: Sequence[TimelineGroup], edges: Sequence[Edge]) -> tuple[tuple[int, ...], ...]:
    """Float groups joined by edges whose both ends are float, as sorted index tuples ordered by first index."""
    index = {g.id: g.index for g in groups if g.precision.is_float}
    parent = {i: i for i in index.values()}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in edges:
        if a in index and b in index:
            parent[root(index[a])] = root(index[b])
    regions: dict[int, list[int]] = {}
    for i in sorted(parent):
        regions.setdefault(root(i), []).append(i)
    return tuple(sorted((tuple(r) for r in regions.values()), key=lambda r: r[0]))


def _paid(groups: Sequence[TimelineGroup], edges: Sequence[Edge], model: DeployedLatency) -> tuple[Transition, ...]:
    """The model's edges between an integer and a float group under the plan, with what the model charges
    them, in the consumer's graph order. (Edges inside a region also carry time, the ops between two
    kernels, but are no transition.)"""
    at: Mapping[str, TimelineGroup] = {g.id: g for g in groups}
    paid = []
    for a, b in edges:
        if at[a].precision.is_float == at[b].precision.is_float:
            continue
        ms = model.edge_cost((a, b), at[a].precision, at[b].precision)
        paid.append(Transition(a, b, at[a].index, at[b].index, (at[a].precision, at[b].precision), ms))
    return tuple(sorted(paid, key=lambda t: (t.consumer_index, t.producer_index)))
