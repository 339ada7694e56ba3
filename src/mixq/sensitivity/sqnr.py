"""Phase 1 (Pandey et al., section 3.2): output SQNR with one quantizer group quantized at a time.

Label-free: the float model is the teacher. Measurements are made per (chunk of samples, group,
precision) and handed to a ``MeasurementLog`` as they complete, so an interrupted run loses at
most the measurement in flight and a resumed one repeats nothing.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from mixq.backends.base import Progress, Simulation
from mixq.core.graph import GroupId
from mixq.core.precision import Precision
from mixq.core.quality import signal_over_noise, sqnr_db_from_ratios
from mixq.core.tables import SensitivityTable
from mixq.schema.numbers import positive_finite

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Measurement:
    """Sum of eq. 3's per-sample signal/noise ratios over one chunk of calibration samples."""

    chunk: int
    group: GroupId
    precision: Precision
    ratio_sum: float
    count: int


class MeasurementLog(Protocol):
    """Where measurements go as soon as they exist (the run directory, or memory)."""

    def done(self) -> Iterable[Measurement]: ...

    def add(self, measurement: Measurement) -> None: ...


class MemoryLog:
    def __init__(self) -> None:
        self.items: list[Measurement] = []

    def done(self) -> Iterable[Measurement]:
        return list(self.items)

    def add(self, measurement: Measurement) -> None:
        self.items.append(measurement)


def chunk_size(sim: Simulation, n_samples: int, cache_mb: float) -> int:
    """Samples per chunk so that the cached float activations stay under ``cache_mb``."""
    per_sample = max(sim.cache_bytes_per_sample(), 1)
    return max(1, min(n_samples, int(cache_mb * 1e6 // per_sample)))


def measure_sensitivity(
    sim: Simulation,
    calibration: np.ndarray,
    cache_mb: float = 4096.0,
    log: MeasurementLog | None = None,
    progress: Progress | None = None,
) -> SensitivityTable:
    """Fill the sensitivity table for every group and candidate of ``sim.graph``."""
    log = log if log is not None else MemoryLog()
    graph = sim.graph
    size = chunk_size(sim, len(calibration), cache_mb)
    todo = [(g.id, p) for g in graph for p in g.candidates if not p.keeps_float32]
    done = {(m.chunk, m.group, m.precision) for m in log.done()}
    n_chunks = math.ceil(len(calibration) / size)
    total = n_chunks * len(todo)
    finished = sum(1 for c in range(n_chunks) for g, p in todo if (c, g, p) in done)
    started = time.perf_counter()
    if progress:
        progress("phase 1: sensitivity", finished, total)
    for chunk in range(n_chunks):
        pending = [(g, p) for g, p in todo if (chunk, g, p) not in done]
        if not pending:
            continue
        inputs = calibration[chunk * size:(chunk + 1) * size]
        isolated = sim.isolate(inputs)
        for group, precision in pending:
            output = isolated.run(group, precision)
            ratios = signal_over_noise(isolated.reference, output)
            log.add(Measurement(chunk, group, precision, float(ratios.sum()), len(ratios)))
            finished += 1
            if progress:
                progress("phase 1: sensitivity", finished, total)
    return summarize(log.done(), graph_candidates=[(g.id, p) for g in graph for p in g.candidates],
                     seconds=time.perf_counter() - started)


def summarize(measurements: Iterable[Measurement], graph_candidates: list[tuple[GroupId, Precision]],
              seconds: float = 0.0) -> SensitivityTable:
    sums: dict[tuple[GroupId, Precision], list[float]] = {}
    for m in measurements:
        entry = sums.setdefault((m.group, m.precision), [0.0, 0])
        entry[0] += m.ratio_sum
        entry[1] += m.count
    table: dict[tuple[GroupId, Precision], float] = {}
    n = 0
    for key in graph_candidates:
        if key[1].keeps_float32:
            table[key] = math.inf
        elif key in sums:
            table[key] = sqnr_db_from_ratios(sums[key][0], int(sums[key][1]))
            n = int(sums[key][1])
    return SensitivityTable(table, metric="sqnr", n_samples=n, seconds=seconds)


@dataclass(frozen=True)
class SqnrConfig:
    """Settings of the output-SQNR measurement.

    Attributes:
        cache_mb: memory for the cached float activations of one chunk of samples; larger = fewer chunks.
    """

    cache_mb: float = 4096.0

    def __post_init__(self) -> None:
        positive_finite(self.cache_mb, "cache_mb", "4096")

    @classmethod
    def from_search(cls, settings: Any) -> SqnrConfig:
        """``--cache-mb``."""
        return cls(cache_mb=float(settings.cache_mb))


class OutputSqnr:
    """Phase 1 of Pandey et al.: each group's output SQNR at each candidate, the rest in float.

    The ``sqnr`` entry of :data:`mixq.sensitivity.METRICS`; see :class:`mixq.sensitivity.SensitivityMetric`.
    """

    name = "sqnr"
    config_class = SqnrConfig

    def __init__(self, config: SqnrConfig | None = None) -> None:
        self.config = config or SqnrConfig()

    def key(self, sim: Simulation, n_samples: int) -> dict[str, Any]:
        """What stored measurements depend on besides the search's settings: the chunking."""
        return {"chunk": chunk_size(sim, n_samples, self.config.cache_mb)}

    def measure(self, sim: Simulation, calibration: np.ndarray, log: MeasurementLog | None = None,
                progress: Progress | None = None) -> SensitivityTable:
        """The table for every group and candidate of ``sim.graph`` (resumes what ``log`` holds)."""
        return measure_sensitivity(sim, calibration, self.config.cache_mb, log, progress)
