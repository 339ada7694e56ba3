"""Is the float model a function of its input? Checked on the calibration batch before phase 1.

Every measurement mixq makes compares two runs of the model (float vs quantized). A model whose output
changes from run to run (dropout left in training mode, noise drawn in ``forward``) makes those
comparisons measure the randomness, not the quantization: a search once predicted 67.7 dB for a plan
that measured -2.0 dB. So such a model is refused, or, when asked (``--nondeterministic average``),
every run of the simulation is replaced by the mean of ``runs`` runs, and the plan says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mixq.backends.base import IsolatedRuns, Simulation
from mixq.core.assignment import Assignment
from mixq.core.tuned import TunedQuantizers
from mixq.core.graph import GroupId, QuantGraph
from mixq.core.precision import Precision
from mixq.errors import ConfigError, UnsupportedModelError
from mixq.prepared import Prepared

logger = logging.getLogger(__name__)

#: What ``--nondeterministic`` may say: refuse such a model (default), or average ``--average-runs`` runs.
MODES = ("refuse", "average")
#: Samples of the calibration batch the check runs on (twice).
CHECK_SAMPLES = 8
#: Outputs differing by more than this fraction of their largest magnitude count as different.
RELATIVE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Nondeterminism:
    """How far two float runs on the same samples differed, and how many runs are averaged (1: none)."""

    max_difference: float
    relative_difference: float
    runs: int

    def to_dict(self) -> dict[str, Any]:
        return {"max_difference": self.max_difference, "relative_difference": self.relative_difference,
                "averaged_runs": self.runs}


def measure(sim: Simulation, samples: np.ndarray) -> tuple[float, float]:
    """The largest absolute difference between two float runs on ``samples``, and relative to the outputs."""
    first, second = sim.run(samples), sim.run(samples)
    if first.shape != second.shape:
        return float("inf"), float("inf")
    difference = float(np.max(np.abs(first.astype(np.float64) - second), initial=0.0))
    scale = float(np.max(np.abs(first), initial=0.0))
    return difference, difference / scale if scale > 0 else (0.0 if difference == 0 else float("inf"))


def check_determinism(prepared: Prepared, mode: str = "refuse", runs: int = 8) -> tuple[Prepared, Nondeterminism | None]:
    """``prepared`` unchanged if its float model is deterministic; else refused (``mode="refuse"``) or with a
    simulation averaging ``runs`` runs (``mode="average"``) and what was found.

    Raises:
        UnsupportedModelError: outputs differ between two runs on the same samples and ``mode`` is ``"refuse"``.
    """
    if mode not in MODES:
        raise ConfigError(f"--nondeterministic must be {' or '.join(MODES)}, got {mode!r}")
    difference, relative = measure(prepared.sim, prepared.calibration[:CHECK_SAMPLES])
    if relative <= RELATIVE_TOLERANCE:
        return prepared, None
    found = (f"the float model's outputs differ between two runs on the same {min(CHECK_SAMPLES, len(prepared.calibration))} "
             f"calibration samples (largest difference {difference:.3g}, {relative:.1%} of the largest output)")
    if mode == "refuse":
        raise UnsupportedModelError(f"{found}, so quantization error cannot be measured: call model.eval() (dropout or "
                         "batch norm left in training mode?) and remove randomness from forward, or pass "
                         "--nondeterministic average to average every measurement over --average-runs runs")
    logger.warning("%s: every measurement averages %d runs (slower by as much; results stay approximate)", found, runs)
    averaged = replace(prepared, sim=AveragedSimulation(prepared.sim, runs))
    # The usual fingerprint hashes float outputs, which differ on every run here: a resume would take the
    # model for another. Graph structure and calibration data identify it instead (weights are not hashed).
    digest = hashlib.sha256(json.dumps(prepared.graph.records()).encode())
    digest.update(f"averaged:{runs}:{prepared.data_hash}".encode())
    averaged.__dict__["fingerprint"] = digest.hexdigest()[:16]  # fills the cached_property
    return averaged, Nondeterminism(difference, relative, runs)


class AveragedSimulation:
    """A simulation whose every output is the mean of ``runs`` runs of a non-deterministic one.

    Phase 1's isolated runs are not cached here (a cached float prefix would freeze one draw of the
    noise): each is a full averaged run with only the group quantized, so phase 1 costs ``runs`` times
    more and skips the prefix reuse. ``module`` is the wrapped model as is (one draw per call).
    """

    def __init__(self, sim: Simulation, runs: int) -> None:
        if runs < 2:
            raise ConfigError(f"--average-runs must be at least 2 to average, got {runs}")
        self.inner, self.runs = sim, runs
        self.graph: QuantGraph = sim.graph

    def run(self, inputs: np.ndarray, assignment: Assignment | None = None) -> np.ndarray:
        return _mean([self.inner.run(inputs, assignment) for _ in range(self.runs)])

    def isolate(self, inputs: np.ndarray) -> IsolatedRuns:
        return _AveragedIsolated(self, inputs)

    def cache_bytes_per_sample(self) -> int:
        return self.inner.cache_bytes_per_sample()

    def probe(self, inputs: np.ndarray, assignment: Assignment | None = None) -> dict[GroupId, np.ndarray]:
        draws = [self.inner.probe(inputs, assignment) for _ in range(self.runs)]
        return {group: _mean([draw[group] for draw in draws]) for group in draws[0]}

    def module(self, assignment: Assignment) -> object:
        return self.inner.module(assignment)

    def tune(self, tuned: TunedQuantizers) -> None:
        self.inner.tune(tuned)


class _AveragedIsolated:
    """Isolated runs of one batch through an averaged simulation (uncached: see AveragedSimulation)."""

    def __init__(self, sim: AveragedSimulation, inputs: np.ndarray) -> None:
        self.sim, self.inputs = sim, inputs
        self.reference = sim.run(inputs)

    def run(self, group: GroupId, precision: Precision) -> np.ndarray:
        return self.sim.run(self.inputs, _alone(group, precision))

    def local(self, group: GroupId, precision: Precision) -> np.ndarray:
        return self.sim.probe(self.inputs, _alone(group, precision))[group]

    def float_outputs(self, group: GroupId) -> np.ndarray:
        return self.sim.probe(self.inputs)[group]


def _alone(group: GroupId, precision: Precision) -> Assignment:
    return Assignment({group: precision})


def _mean(draws: list[np.ndarray]) -> np.ndarray:
    return np.mean(np.stack(draws), axis=0).astype(draws[0].dtype, copy=False)


def described(found: Nondeterminism | None) -> Mapping[str, Any]:
    """What the plan's quality records: nothing for a deterministic model."""
    return {} if found is None else {"nondeterminism": found.to_dict()}
