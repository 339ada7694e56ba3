"""TorchBackend: glue between a captured ``nn.Module`` and the neutral core."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from mixq.backends.base import (
    BatchRunner,
    DeployedCosts,
    ExportSettings,
    Progress,
    Simulation,
    Traced,
    calibration_batches,
    quantized_tensors,
    require_calibration,
    require_finite,
    site_weights,
)
from mixq.backends.torch.fold import fold_batchnorm
from mixq.backends.torch.executor import GraphExecutor, flatten_output
from mixq.backends.torch.simulation import Quantizers, TorchSimulation, collect_stats
from mixq.backends.torch.trace import OpSite, capture, find_sites
from mixq.core.assignment import Assignment
from mixq.core.graph import QuantGraph, form_groups
from mixq.core.precision import Precision, QuantScheme, parse_candidates
from mixq.errors import CapabilityError, DataError, UnsupportedModelError

if TYPE_CHECKING:
    from mixq.cost.measured_latency import LatencyTable
    from mixq.export.report import ExportReport

logger = logging.getLogger(__name__)


#: What to do instead of timing kernels of a torch model (kept word for word: tests and docs quote it).
LATENCY_FIX = ("measured latency needs an ONNX model and this is a torch model: export it to ONNX first "
               "(torch.onnx.export) and search the .onnx file, or give --hardware with a cost.latency table")


class TorchBackend:
    name = "torch"

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

    def deployed_costs(self, sim: Simulation, calibration: np.ndarray, threads: int | None = None) -> DeployedCosts:
        raise CapabilityError("deployed costs (exported file size and ONNX Runtime latency) need an ONNX model: "
                              "export it to ONNX (torch.onnx.export) and search the .onnx file")

    def trace(self, model: object, sample: np.ndarray, candidates: Sequence[Precision]) -> TorchTraced:
        if not isinstance(model, nn.Module):
            raise UnsupportedModelError(f"the torch backend takes an nn.Module, not {type(model).__name__}")
        # A private copy: capture and simulation never touch the user's module or its weights.
        model = copy.deepcopy(model).eval()
        x = torch.from_numpy(np.ascontiguousarray(sample[:1]))
        with torch.inference_mode():
            try:
                output = model(x)
            except Exception as exc:
                raise DataError(
                    f"the model cannot run on the data: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}. "
                    f"Input shape was {tuple(x.shape)}; check --preprocess (e.g. resize/crop to the model's size)"
                ) from exc
        require_finite(flatten_output(output).numpy())  # no tensor, NaN or Inf: refuse before any work
        gm = capture(model, x)
        fold_batchnorm(gm)
        executor = GraphExecutor(gm)
        with torch.inference_mode():
            _, env = executor.run(x, keep=True)
        values = {node.name: value for node, value in env.items()}
        bytes_per_sample = sum(v.numel() * v.element_size() for v in values.values()
                               if isinstance(v, torch.Tensor) and not isinstance(v, nn.Parameter))
        sites, skipped = find_sites(gm, values)
        if not sites:
            raise UnsupportedModelError(
                "found no quantizable op (Conv, ConvTranspose, Linear, matmul) in the model"
                + (f"; kept in float: {'; '.join(skipped[:3])}" if skipped else "")
            )
        for reason in skipped:
            logger.warning("not quantized: %s", reason)
        groups = form_groups([site.op for site in sites], candidates)
        float_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
        graph = QuantGraph({g.id: g for g in groups}, float_params=int(float_params), unquantized=tuple(skipped))
        return TorchTraced(graph, executor, sites, bytes_per_sample)


class TorchTraced:
    """A captured torch model and its quantizer groups."""

    def __init__(self, graph: QuantGraph, executor: GraphExecutor, sites: list[OpSite], bytes_per_sample: int) -> None:
        self.graph = graph
        self.executor = executor
        self.sites = sites
        self.bytes_per_sample = bytes_per_sample

    def prepare(self, calibration: np.ndarray, scheme: QuantScheme, progress: Progress | None = None) -> TorchSimulation:
        require_calibration(calibration)
        stats = collect_stats(self.executor, quantized_tensors(self.sites), calibration_batches(calibration, progress))
        weights, axes = site_weights(self.sites, lambda key: _fetch(self.executor.gm, key).detach().cpu().numpy())
        quantizers = Quantizers(weights, axes, stats, scheme)
        return TorchSimulation(self.executor, self.graph, self.sites, quantizers, self.bytes_per_sample)


def _fetch(root: Any, target: str) -> torch.Tensor:
    value = root
    for part in target.split("."):
        value = getattr(value, part)
    return value


__all__ = ["TorchBackend", "TorchTraced", "flatten_output"]
