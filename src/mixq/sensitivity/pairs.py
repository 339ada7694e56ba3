"""Pairwise measurements for cross-layer interactions (CLADO, Deng et al. 2023, arXiv 2307.05657).

Phase 1 measures each group alone and phase 2 adds the noise up, assuming groups do not interact.
CLADO measures groups two at a time: the interaction of group ``i`` at ``a`` and ``j`` at ``b`` is

    interaction(i, a, j, b) = noise(i at a, j at b) - noise(i at a) - noise(j at b)

in the linear noise-to-signal domain (the same 1 / mean(signal/noise) as phase 1's table, eq. 3),
all other groups float. A full matrix costs O(groups^2 x candidates^2) model runs, so only the K
most sensitive groups are paired, and per group only the candidates below its top one (the top,
nearly noiseless, is taken not to interact). Singles are re-measured here, with the same code path
and samples as the pairs, so an interaction is a difference of like with like.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mixq.backends.base import Progress, Simulation
from mixq.atomic import write_json
from mixq.schema import read_json, validate
from mixq.schema.caches import PairCacheFile
from mixq.core.assignment import Assignment
from mixq.core.graph import GroupId, QuantGraph
from mixq.core.precision import Precision
from mixq.core.quality import signal_over_noise
from mixq.core.tables import SensitivityTable
from mixq.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_TOP_K = 8
BATCH = 32

Single = tuple[GroupId, Precision]
Pair = tuple[GroupId, Precision, GroupId, Precision]


@dataclass(frozen=True)
class PairInteractions:
    """Measured noise of single groups and of pairs, on the same samples.

    Attributes:
        single: ``(group, precision) -> noise`` with only that group quantized.
        joint: ``(group_i, a, group_j, b) -> noise`` with both quantized (``i`` before ``j`` in graph order).
        n_samples: samples every figure averages over.
        runs: model runs made (not counting runs reused from a cache).
        seconds: wall time of those runs.
    """

    single: Mapping[Single, float]
    joint: Mapping[Pair, float]
    n_samples: int = 0
    runs: int = 0
    seconds: float = 0.0

    def terms(self) -> dict[Pair, float]:
        """The interaction of every measured pair: joint noise minus the two singles."""
        return {
            (gi, a, gj, b): value - self.single[(gi, a)] - self.single[(gj, b)]
            for (gi, a, gj, b), value in self.joint.items()
        }

    def relative_size(self) -> float:
        """sum |interaction| / sum single noise: how far from additive the measured groups are."""
        total = math.fsum(self.single.values())
        interaction = math.fsum(abs(v) for v in self.terms().values())
        return interaction / total if total > 0 else 0.0

    def to_records(self) -> dict[str, Any]:
        return {
            "n_samples": self.n_samples,
            "single": [{"group": g, "precision": str(p), "noise": v} for (g, p), v in self.single.items()],
            "joint": [
                {"groups": [gi, gj], "precisions": [str(a), str(b)], "noise": v,
                 "interaction": v - self.single[(gi, a)] - self.single[(gj, b)]}
                for (gi, a, gj, b), v in self.joint.items()
            ],
        }

    @classmethod
    def from_records(cls, data: Mapping[str, Any]) -> PairInteractions:
        single = {(str(r["group"]), Precision.parse(r["precision"])): float(r["noise"]) for r in data["single"]}
        joint = {
            (str(r["groups"][0]), Precision.parse(r["precisions"][0]), str(r["groups"][1]),
             Precision.parse(r["precisions"][1])): float(r["noise"])
            for r in data["joint"]
        }
        return cls(single, joint, int(data.get("n_samples", 0)))


class PairMeasurer(Protocol):
    """Measures singles and pairs of the given groups at the given candidates (the expensive part)."""

    def __call__(self, candidates: Mapping[GroupId, Sequence[Precision]], /) -> PairInteractions: ...


def select_groups(
    graph: QuantGraph, table: SensitivityTable, k: int = DEFAULT_TOP_K
) -> dict[GroupId, tuple[Precision, ...]]:
    """The ``k`` most sensitive groups (largest noise at any candidate) with their candidates below
    the top one (most bits per MAC, i.e. the highest precision), in graph order. Groups with a
    single candidate cannot move and are skipped."""
    if k < 2:
        raise ConfigError(f"pairing needs at least 2 groups, got k={k}")
    scored = []
    for position, group in enumerate(graph):
        if len(group.candidates) < 2:
            continue
        noise = {p: table.noise(group.id, p) for p in group.candidates}
        top = max(group.candidates, key=lambda p: (p.bits_per_mac, p.weight_bits, p.is_float))
        below = tuple(p for p in group.candidates if p != top)
        scored.append((max(noise[p] for p in below), position, group.id, below))
    chosen = sorted(scored, key=lambda s: (-s[0], s[1]))[:k]
    return {group: below for _, _, group, below in sorted(chosen, key=lambda s: s[1])}


class SimulationPairs:
    """A :class:`PairMeasurer` on any backend's :class:`Simulation` (``sim.run`` with partial assignments).

    Args:
        sim: the calibrated simulation.
        inputs: the samples to measure on (phase 1's calibration set, so singles match its table).
        cache: a JSON file; measurements found there (same sample count) are reused, new ones added.
        progress: ``progress(stage, done, total)``.
    """

    def __init__(self, sim: Simulation, inputs: np.ndarray, cache: Path | None = None,
                 progress: Progress | None = None, batch_size: int = BATCH) -> None:
        self.sim = sim
        self.inputs = inputs
        self.cache = Path(cache) if cache is not None else None
        self.progress = progress
        self.batch_size = batch_size
        self._reference: list[np.ndarray] | None = None

    def __call__(self, candidates: Mapping[GroupId, Sequence[Precision]]) -> PairInteractions:
        order = [g for g in self.sim.graph.ids if g in candidates]
        singles = [(g, p) for g in order for p in candidates[g]]
        pairs = [(gi, a, gj, b) for gi, gj in combinations(order, 2) for a in candidates[gi] for b in candidates[gj]]
        known = self._load()
        single = {key: known.single[key] for key in singles if key in known.single}
        joint = {key: known.joint[key] for key in pairs if key in known.joint}
        todo: list[Single | Pair] = [s for s in singles if s not in single] + [p for p in pairs if p not in joint]
        started = time.perf_counter()
        for done, key in enumerate(todo):
            if self.progress:
                self.progress("pairwise interactions", done, len(todo))
            assignment = Assignment({key[0]: key[1]} if len(key) == 2 else {key[0]: key[1], key[2]: key[3]})
            noise = self._noise(assignment)
            if len(key) == 2:
                single[key] = noise
            else:
                joint[key] = noise
        if self.progress:
            self.progress("pairwise interactions", len(todo), len(todo))
        result = PairInteractions(single, joint, len(self.inputs), len(todo), time.perf_counter() - started)
        if todo:
            self._save(result, known)
        logger.info("pairwise interactions: %d groups, %d pairs, %d runs", len(order), len(pairs), len(todo))
        return result

    def _batches(self) -> list[np.ndarray]:
        return [self.inputs[s:s + self.batch_size] for s in range(0, len(self.inputs), self.batch_size)]

    def _noise(self, assignment: Assignment) -> float:
        """1 / mean per-sample signal/noise: phase 1's definition, so noises are comparable."""
        if self._reference is None:
            self._reference = [self.sim.run(batch) for batch in self._batches()]
        ratio_sum = 0.0
        for batch, reference in zip(self._batches(), self._reference):
            ratio_sum += float(signal_over_noise(reference, self.sim.run(batch, assignment)).sum())
        return len(self.inputs) / ratio_sum if ratio_sum > 0 else math.inf

    def _load(self) -> PairInteractions:
        empty = PairInteractions({}, {}, len(self.inputs))
        if self.cache is None or not self.cache.is_file():
            return empty
        try:
            data = validate(PairCacheFile, read_json(self.cache, "pair cache"), f"pair cache {self.cache}")
        except ConfigError as exc:
            logger.warning("ignoring %s; it will be measured again", exc)
            return empty
        stored = PairInteractions({(r.group, r.precision): r.noise for r in data.single},
                                  {(r.groups[0], r.precisions[0], r.groups[1], r.precisions[1]): r.noise
                                   for r in data.joint}, data.n_samples)
        return stored if stored.n_samples == len(self.inputs) else empty

    def _save(self, result: PairInteractions, known: PairInteractions) -> None:
        if self.cache is None:
            return
        merged = PairInteractions({**known.single, **result.single}, {**known.joint, **result.joint}, result.n_samples)
        write_json(self.cache, merged.to_records(), indent=1)
