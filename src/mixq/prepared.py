"""A traced and calibrated model: what search, evaluate, apply and export all start from.

Preparing is the expensive, framework-specific part (tracing, BN folding, range calibration); the
result is immutable and everything after it is backend-neutral.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from mixq import backends
from mixq.backends.base import Backend, Progress, Simulation, Traced
from mixq.core.graph import QuantGraph
from mixq.core.precision import Precision, QuantScheme, parse_candidates
from mixq.core.synthetic import SyntheticData
from mixq.data.dataset import ArrayDataset, Dataset
from mixq.errors import ConfigError, DataError


@dataclass(frozen=True)
class Prepared:
    """A model traced into quantizer groups and calibrated on its first samples.

    Attributes:
        backend: the backend chosen for the model (once, at the entry point).
        traced: the captured model and its groups.
        sim: the calibrated simulation of any assignment.
        calibration: the calibration samples, as the backend received them.
        timings: seconds spent loading the samples, tracing and calibrating.
    """

    backend: Backend
    traced: Traced
    sim: Simulation
    calibration: np.ndarray
    timings: Mapping[str, float]

    @property
    def graph(self) -> QuantGraph:
        return self.traced.graph

    @cached_property
    def fingerprint(self) -> str:
        """Identifies model + preprocessing: the graph's structure and the float outputs on two samples."""
        digest = hashlib.sha256(json.dumps(self.graph.records()).encode())
        digest.update(np.ascontiguousarray(self.sim.run(self.calibration[:2])).round(5).tobytes())
        return digest.hexdigest()[:16]

    @cached_property
    def data_hash(self) -> str:
        """Identifies the calibration samples (stored measurements depend on them)."""
        return hashlib.sha256(np.ascontiguousarray(self.calibration).tobytes()).hexdigest()[:16]


def as_dataset(data: Dataset | np.ndarray | SyntheticData) -> Dataset:
    """A data set from a ``Dataset`` or an array of samples (distilled data is made by ``search`` only)."""
    if isinstance(data, SyntheticData):
        raise ConfigError("synthetic data (--data synthetic) is distilled by search only: to evaluate, apply or "
                          "export its plan, give the search's samples, --data RUN/synthetic.npz --preprocess "
                          "crop=H,W (they are model inputs already; calibration=np.load(...)['x'] in Python)")
    if isinstance(data, np.ndarray):
        return ArrayDataset(data.astype(np.float32, copy=False))
    return data


def prepare(model: object, data: Dataset | np.ndarray, candidates: str | Sequence[str | Precision],
            scheme: QuantScheme, num_samples: int, threads: int | None = None,
            progress: Progress | None = None) -> Prepared:
    """Trace and calibrate ``model`` on the first ``num_samples`` samples of ``data``."""
    data = as_dataset(data)
    if len(data) == 0:
        raise DataError("the data set is empty: give at least one sample")
    backend = backends.resolve(model)
    backends.require_rounding(backend, scheme.weight_rounding)
    if threads is not None:
        backend.set_threads(threads)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    count = min(num_samples, len(data))
    calibration = data.subset(count).load(0, count)
    timings["load_calibration_s"] = time.perf_counter() - started
    started = time.perf_counter()
    traced = backend.trace(model, calibration[:1], parse_candidates(candidates))
    timings["trace_s"] = time.perf_counter() - started
    started = time.perf_counter()
    sim = traced.prepare(calibration, scheme, progress)
    timings["calibration_s"] = time.perf_counter() - started
    return Prepared(backend, traced, sim, calibration, timings)


def trace_only(model: object, sample: np.ndarray, candidates: str = "w8a8") -> Any:
    """Trace without calibrating (``inspect``, float costs): the backend's traced model."""
    return backends.resolve(model).trace(model, sample, parse_candidates(candidates))
