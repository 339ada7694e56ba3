"""The only interface a framework implements: trace a model, simulate assignments on it, and the
capabilities that differ by framework (export, running a file as given, timing kernels, threads).

Everything after ``Traced.prepare`` (phase 1, phase 2, evaluation, reports, export) is written once,
against these protocols and numpy arrays, and never branches on the framework. A backend that lacks
a capability raises :class:`~mixq.errors.CapabilityError` naming what is missing and what to do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from mixq.core.assignment import Assignment
from mixq.core.graph import GroupId, QuantGraph, QuantOp
from mixq.core.precision import Precision, QuantScheme
from mixq.core.synthetic import SyntheticSettings
from mixq.core.tuned import TunedQuantizers
from mixq.errors import DataError, UnsupportedModelError

if TYPE_CHECKING:
    from mixq.cost.deployed import DeployedLatency
    from mixq.cost.measured_latency import LatencyTable
    from mixq.backends.export_report import ExportReport

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


def require_calibration(calibration: np.ndarray) -> None:
    """Every backend refuses an empty calibration set with the same message."""
    if len(calibration) == 0:
        raise DataError("no calibration samples: give at least one image (--num-samples)")


class Site(Protocol):
    """What ``Traced.prepare`` reads of a backend's quantized op site."""

    @property
    def op(self) -> QuantOp: ...

    @property
    def weight_key(self) -> str | None: ...

    @property
    def weight_axis(self) -> int: ...


def quantized_tensors(sites: Iterable[Site]) -> set[str]:
    """The input tensors of every quantized op: what calibration observes."""
    return {name for site in sites for name in site.op.inputs}


def site_weights(sites: Iterable[Site], fetch: Callable[[str], np.ndarray]
                 ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Each quantized weight (fetched once as a numpy array) and its output-channel axis."""
    weights: dict[str, np.ndarray] = {}
    axes: dict[str, int] = {}
    for site in sites:
        if site.weight_key is not None and site.weight_key not in weights:
            weights[site.weight_key] = fetch(site.weight_key)
            axes[site.weight_key] = site.weight_axis
    return weights, axes


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

    def tune(self, tuned: TunedQuantizers) -> None:
        """Use learned quantizers (``mixq.core.tuned``) for their (weight, bits) and (tensor, bits) in every
        later ``run``, ``isolate``, ``probe``, ``module`` and export of this simulation (caches built on the
        calibrated ones are dropped)."""
        ...


class Traced(Protocol):
    """A captured model: its quantizer groups, ready to be calibrated."""

    graph: QuantGraph

    def prepare(self, calibration: np.ndarray, scheme: QuantScheme, progress: Progress | None = None) -> Simulation:
        """Calibrate on ``calibration`` (same batches and sampled values in every backend)."""
        ...


@dataclass(frozen=True)
class ExportSettings:
    """How ``mixq export`` writes a plan (see ``mixq.export.export`` for each setting's meaning)."""

    scheme: QuantScheme = field(default_factory=QuantScheme)
    check_samples: int = 64
    benchmark: bool = False
    int4: bool = True
    int32_bias: bool = True
    output_quantizers: bool = True
    #: integer groups the runtime runs as float kernels: weights stored ``auto`` (both timed, faster kept),
    #: ``int8`` (dequantized per run) or ``float`` (dequantized values, bit-identical).
    unfused_weights: str = "auto"
    threads: int | None = None
    #: learned quantizers of the plan (``Plan.tuned``), applied to the export's simulation after calibration,
    #: so the file carries them and its check compares with the tuned simulation.
    tuned: TunedQuantizers | None = field(default=None, compare=False)


#: How an export stores integer groups the runtime runs as float kernels (``ExportSettings.unfused_weights``).
UNFUSED_WEIGHTS = ("auto", "int8", "float")

#: ``measure(assignment) -> {"file_bytes": ..., "latency_ms": ...}``: a configuration's deployed costs.
DeployedCosts = Callable[[Assignment], Mapping[str, float]]
#: ``run(batch) -> (batch, features)`` float32 outputs of a model run as given.
BatchRunner = Callable[[np.ndarray], np.ndarray]


class Tuner(Protocol):
    """A post-search tuning step of one plan (``mixq.backends.TUNERS``: ``kd``, ``brecq``): learns better
    quantizers for ``assignment`` on the unlabeled calibration samples, without changing ``sim``.

    Registered with its settings dataclass as ``config`` (the factory takes it as its only argument) and tagged
    with the backend names it runs on (``tags={"torch"}``): ``mixq.backends.require_tuner`` refuses other
    backends before any work.
    """

    name: str

    def tune(self, sim: Simulation, assignment: Assignment, calibration: np.ndarray,
             progress: Progress | None = None) -> TunedQuantizers: ...


class Backend(Protocol):
    """One framework. ``trace`` is the core; the other methods are capabilities a backend may lack
    (then they raise ``CapabilityError`` with what to do instead)."""

    name: str

    def accepts(self, model: object) -> bool: ...

    def trace(self, model: object, sample: np.ndarray, candidates: Sequence[Precision]) -> Traced: ...

    def set_threads(self, threads: int) -> None:
        """Use ``threads`` CPU threads for this framework's own computations."""
        ...

    def export(self, model: object, assignment: Assignment, calibration: np.ndarray, path: Path,
               settings: ExportSettings, progress: Progress | None = None) -> ExportReport:
        """Write ``assignment`` (named after this backend's groups) applied to ``model`` as a deployable file,
        calibrated on ``calibration`` exactly as the search was."""
        ...

    def is_quantized_file(self, model: object) -> bool:
        """``model`` is already quantized (e.g. written by ``mixq export``): it can only be run as given."""
        ...

    def stored_weight_bytes(self, model: object) -> int | None:
        """Bytes of a quantized file's weights at their stored types (None if unreadable)."""
        ...

    def run_as_given(self, model: object, sample: np.ndarray) -> BatchRunner:
        """A runner of ``model`` exactly as it is (no tracing or re-quantization where avoidable)."""
        ...

    def require_latency(self) -> None:
        """Raise ``CapabilityError`` if this backend cannot time kernels (checked before any work)."""
        ...

    def measure_latency(self, traced: Traced, *, threads: int | None = None, progress: Progress | None = None,
                        scheme: QuantScheme | None = None) -> LatencyTable:
        """Milliseconds per (group, candidate) of ``traced``, timed on this machine."""
        ...

    def deployed_costs(self, sim: Simulation, calibration: np.ndarray, threads: int | None = None,
                       runtime: str = "onnxruntime") -> DeployedCosts:
        """What a configuration costs once deployed (file size, latency in ``runtime``), for TuneQn's objectives."""
        ...

    def measure_deployed_latency(self, sim: Simulation, calibration: np.ndarray, *, runtime: str = "onnxruntime",
                                 threads: int | None = None, progress: Progress | None = None,
                                 seed: int = 0) -> DeployedLatency:
        """The pairwise latency model of the deployed file in ``runtime`` (``mixq.cost.deployed``): probe plans
        exported as ``export`` writes them, profiled in the runtime, each node's time attributed to a group
        or an edge; cached per model, machine, runtime version and threads."""
        ...

    def synthesize_calibration(self, model: object, shape: tuple[int, ...], samples: int,
                               settings: SyntheticSettings, seed: int,
                               progress: Progress | None = None) -> np.ndarray:
        """Data-free calibration (ZeroQ): ``samples`` inputs of one-sample ``shape`` whose statistics at every
        batch norm match the float model's running ones, deterministic given ``seed`` (reported as the
        ``synthetic`` stage). A backend without batch-norm statistics raises ``CapabilityError``."""
        ...
