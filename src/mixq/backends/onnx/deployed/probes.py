"""The plans profiled to fit a deployed latency model: few, deterministic, covering every edge combination.

Every edge's cost is a table over (producer precision, consumer precision); a combination no probe produced
has no measurement. So: one uniform plan per candidate, then plans chosen greedily to produce the
combinations still missing (groups walked in graph order, each taking the precision that completes the most
missing combinations with the groups already chosen, plus half the ones it opens towards its consumers;
ties broken by the seed), then a few random plans (more samples of each group in varied contexts), within
a cap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mixq.core.graph import GroupId
from mixq.core.precision import Precision
from mixq.cost.pairwise import Edge

Plan = Mapping[GroupId, Precision]
Combo = tuple[Edge, Precision, Precision]


@dataclass(frozen=True)
class ProbeSettings:
    """How many probes: at most ``cap`` in all, ``random`` extra random plans after covering; each profiled
    ``rounds`` times in turn, keeping its fastest profile (other work on the machine only adds time)."""

    cap: int = 24
    random: int = 6
    seed: int = 0
    rounds: int = 3

    def key(self) -> dict[str, int]:
        return {"cap": self.cap, "random": self.random, "seed": self.seed, "rounds": self.rounds}


@dataclass(frozen=True)
class Probes:
    """The probe plans and the combinations they leave unmeasured (``coverage``: fraction measured)."""

    plans: tuple[dict[GroupId, Precision], ...]
    coverage: float
    missing: tuple[Combo, ...]


def combos(edges: Sequence[Edge], candidates: Mapping[GroupId, Sequence[Precision]]) -> list[Combo]:
    """Every (edge, producer precision, consumer precision) the model needs."""
    return [((a, b), p, q) for a, b in edges for p in candidates[a] for q in candidates[b]]


def covered(plan: Plan, edges: Sequence[Edge]) -> set[Combo]:
    return {((a, b), plan[a], plan[b]) for a, b in edges}


def probe_plans(order: Sequence[GroupId], candidates: Mapping[GroupId, Sequence[Precision]], edges: Sequence[Edge],
                settings: ProbeSettings = ProbeSettings()) -> Probes:
    """Deterministic probes for ``settings.seed`` (``order``: groups in topological order)."""
    rng = np.random.default_rng(settings.seed)
    wanted = combos(edges, candidates)
    missing = set(wanted)
    plans: list[dict[GroupId, Precision]] = []

    def add(plan: dict[GroupId, Precision]) -> bool:
        if len(plans) >= settings.cap or plan in plans:
            return False
        plans.append(plan)
        missing.difference_update(covered(plan, edges))
        return True

    shared = list(dict.fromkeys(p for g in order for p in candidates[g]))
    for precision in shared:
        add({g: precision if precision in candidates[g] else candidates[g][0] for g in order})
    incoming: dict[GroupId, list[GroupId]] = {g: [] for g in order}
    outgoing: dict[GroupId, list[GroupId]] = {g: [] for g in order}
    for a, b in edges:
        incoming[b].append(a)
        outgoing[a].append(b)
    position = {g: i for i, g in enumerate(order)}
    while missing and len(plans) < settings.cap:
        plan: dict[GroupId, Precision] = {}
        for group in order:
            def score(p: Precision) -> float:
                done = sum(((a, group), plan[a], p) in missing for a in incoming[group] if a in plan)
                opened = sum(((group, b), p, q) in missing for b in outgoing[group]
                             if b not in plan and position[b] > position[group] for q in candidates[b])
                later = sum(((a, group), pa, p) in missing for a in incoming[group] if a not in plan
                            for pa in candidates[a])
                return done + 0.5 * (opened + later) + float(rng.random()) * 1e-3
            plan[group] = max(candidates[group], key=score)
        before = len(missing)
        if not add(plan) or len(missing) == before:
            break
    for _ in range(settings.random):
        if len(plans) >= settings.cap:
            break
        add({g: candidates[g][int(rng.integers(len(candidates[g])))] for g in order})
    left = tuple(c for c in wanted if c in missing)
    return Probes(tuple(plans), 1.0 - len(left) / len(wanted) if wanted else 1.0, left)


__all__ = ["Combo", "Probes", "ProbeSettings", "combos", "covered", "probe_plans"]
