"""TorchBackend: glue between a captured ``nn.Module`` and the neutral core."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from mixq.backends.base import BatchRunner, DeployedCosts, ExportSettings, Progress, Simulation, Traced
from mixq.backends.torch.executor import flatten_output
from mixq.backends.torch.traced import TorchTraced, trace_module
from mixq.core.assignment import Assignment
from mixq.core.precision import Precision, QuantScheme, parse_candidates
from mixq.core.synthetic import SyntheticSettings
from mixq.errors import CapabilityError

if TYPE_CHECKING:
    from mixq.cost.measured_latency import LatencyTable
    from mixq.backends.export_report import ExportReport

logger = logging.getLogger(__name__)


#: What to do instead of timing kernels of a torch model (kept word for word: tests and docs quote it).
LATENCY_FIX = ("measured latency needs an ONNX model and this is a torch model: export it to ONNX first "
               "(torch.onnx.export) and search the .onnx file, or give --hardware with a cost.latency table")


class TorchBackend:
    name = "torch"
    #: ``QuantScheme.weight_rounding`` values this backend applies (``mixq.backends.require_rounding``).
    weight_roundings = ("nearest", "adaround")

    def accepts(self, model: object) -> bool:
        return isinstance(model, nn.Module)

    def set_threads(self, threads: int) -> None:
        torch.set_num_threads(threads)

    def export(self, model: object, assignment: Assignment, calibration: np.ndarray, path: Path,
               settings: ExportSettings, progress: Progress | None = None) -> ExportReport:
        """Through ONNX: ``torch.onnx.export``, groups mapped, QDQ written (``mixq.backends.torch.export``)."""
        try:
            from mixq.backends.torch.export import export_torch
        except ImportError as exc:
            raise CapabilityError(f"exporting a torch model needs {exc.name or 'onnx'}: pip install \"mixq[onnx]\"; "
                                  "the export writes a QDQ ONNX file") from None
        return export_torch(model, assignment, calibration, path, settings, progress)

    def is_quantized_file(self, model: object) -> bool:
        return False  # a module is always traced; exported files are ONNX

    def stored_weight_bytes(self, model: object) -> int | None:
        raise CapabilityError("stored weight bytes are read from exported ONNX files; a torch model has none: "
                              "evaluate it with a plan or precision instead")

    def run_as_given(self, model: object, sample: np.ndarray) -> BatchRunner:
        """The float model through the traced graph (what every torch evaluation runs)."""
        traced = self.trace(model, sample[:1], parse_candidates("w8a8"))
        sim = traced.prepare(np.ascontiguousarray(sample[:1]), QuantScheme())  # float runs need no real calibration
        return lambda batch: sim.run(batch, None)

    def require_latency(self) -> None:
        raise CapabilityError(LATENCY_FIX)

    def measure_latency(self, traced: Traced, *, threads: int | None = None, progress: Progress | None = None,
                        scheme: QuantScheme | None = None) -> LatencyTable:
        raise CapabilityError(LATENCY_FIX)

    def deployed_costs(self, sim: Simulation, calibration: np.ndarray, threads: int | None = None,
                       runtime: str = "onnxruntime") -> DeployedCosts:
        raise CapabilityError("deployed costs (exported file size and ONNX Runtime latency) need an ONNX model: "
                              "export it to ONNX (torch.onnx.export) and search the .onnx file")

    def measure_deployed_latency(self, sim: Simulation, calibration: np.ndarray, *, runtime: str = "onnxruntime",
                                 threads: int | None = None, progress: Progress | None = None,
                                 seed: int = 0) -> Any:
        raise CapabilityError(LATENCY_FIX)

    def synthesize_calibration(self, model: object, shape: tuple[int, ...], samples: int,
                               settings: SyntheticSettings, seed: int,
                               progress: Progress | None = None) -> np.ndarray:
        """ZeroQ's distilled data from the module's BatchNorm statistics (``mixq.backends.torch.distill``),
        read before tracing folds them into the convs."""
        from mixq.backends.torch.distill import distill

        return distill(model, shape, samples, settings, seed, progress)

    def trace(self, model: object, sample: np.ndarray, candidates: Sequence[Precision]) -> TorchTraced:
        return trace_module(model, sample, candidates)


__all__ = ["TorchBackend", "TorchTraced", "flatten_output"]
