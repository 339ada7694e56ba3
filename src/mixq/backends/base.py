"""The only interface a framework implements: trace a model, then simulate assignments on it.

Everything after ``Backend.prepare`` (phase 1, phase 2, evaluation, reports) is written once,
against these protocols and numpy arrays, and never branches on the framework.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import numpy as np

from mixq.core.assignment import Assignment
from mixq.core.graph import GroupId, QuantGraph
from mixq.core.precision import Precision, QuantScheme
from mixq.errors import UnsupportedModelError

#: ``progress(stage, done, total)``; the CLI turns it into a progress bar.
Progress = Callable[[str, int, int], None]

def require_finite(outputs: np.ndarray) -> np.ndarray:
    """The float model's outputs, refused with one message (by every backend) if any is NaN or Inf."""
    if not np.isfinite(outputs).all():
        raise UnsupportedModelError(
            "the float model's output contains NaN or Inf on the calibration data; "
            "check the preprocessing (--preprocess) and the model's weights"
        )
    return outputs


#: Samples per calibration batch, the same for every backend (same batches, same sampled values, same
#: ranges): large enough for BLAS efficiency, small enough for big images.
CALIBRATION_BATCH = 16


def calibration_batches(calibration: np.ndarray, progress: Progress | None = None,
                        batch_size: int = CALIBRATION_BATCH) -> Callable[[], Iterator[np.ndarray]]:
    """A re-iterable source of calibration batches that reports progress as it goes."""
    total = len(calibration)

    def batches() -> Iterator[np.ndarray]:
        for start in range(0, total, batch_size):
            if progress:
                progress("calibration", start, total)
            yield calibration[start:start + batch_size]
        if progress:
            progress("calibration", total, total)

    return batches


class IsolatedRuns(Protocol):
    """Float reference of one batch computed once; then one group at a time is quantized.

    Implementations must not recompute what a single group's quantization cannot change
    (the prefix of the network before the group, and branches that do not depend on it).
    """

    reference: np.ndarray  # float outputs, shape (batch, ...)

    def run(self, group: GroupId, precision: Precision) -> np.ndarray: ...

    def local(self, group: GroupId, precision: Precision) -> np.ndarray:
        """The group's own outputs ``(batch, features)`` with only it quantized, on float inputs."""
        ...

    def float_outputs(self, group: GroupId) -> np.ndarray:
        """The group's float outputs ``(batch, features)``."""
        ...


class Simulation(Protocol):
    """A calibrated simulator of a model under any assignment. Never mutates the user's model."""

    graph: QuantGraph

    def run(self, inputs: np.ndarray, assignment: Assignment | None = None) -> np.ndarray:
        """Outputs for a batch, flattened to ``(batch, features)``; ``None`` = the float model."""
        ...

    def isolate(self, inputs: np.ndarray) -> IsolatedRuns: ...

    def cache_bytes_per_sample(self) -> int:
        """Memory ``isolate`` keeps per input sample, so callers can size their chunks."""
        ...

    def probe(self, inputs: np.ndarray, assignment: Assignment | None = None) -> dict[GroupId, np.ndarray]:
        """Each group's outputs ``(batch, features)`` under ``assignment`` (layer-level errors, TuneQn)."""
        ...

    def module(self, assignment: Assignment) -> object:
        """The quantized model in the framework's own form (an ``nn.Module`` for torch), for the
        user's evaluation code; an empty assignment is the float model."""
        ...


class Traced(Protocol):
    """A captured model: its quantizer groups, ready to be calibrated."""

    graph: QuantGraph

    def prepare(self, calibration: np.ndarray, scheme: QuantScheme, progress: Progress | None = None) -> Simulation:
        ...


class Backend(Protocol):
    name: str

    def accepts(self, model: object) -> bool: ...

    def trace(self, model: object, sample: np.ndarray, candidates: Sequence[Precision]) -> Traced: ...
