"""TorchBackend: glue between a captured ``nn.Module`` and the neutral core."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mixq.backends.base import Progress, calibration_batches, require_finite
from mixq.backends.torch.fold import fold_batchnorm
from mixq.backends.torch.executor import GraphExecutor, flatten_output
from mixq.backends.torch.simulation import Quantizers, TorchSimulation, collect_stats
from mixq.backends.torch.trace import OpSite, capture, find_sites
from mixq.core.graph import QuantGraph, form_groups
from mixq.core.precision import Precision, QuantScheme
from mixq.errors import DataError, UnsupportedModelError

logger = logging.getLogger(__name__)


class TorchBackend:
    name = "torch"

    def accepts(self, model: object) -> bool:
        return isinstance(model, nn.Module)

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
        if len(calibration) == 0:
            raise DataError("no calibration samples: give at least one image (--num-samples)")
        tensors = {name for site in self.sites for name in site.op.inputs}
        batches = calibration_batches(calibration, progress)
        stats = collect_stats(self.executor, tensors, batches)
        weights: dict[str, Any] = {}
        axes: dict[str, int] = {}
        for site in self.sites:
            if site.weight_key is not None:
                weights[site.weight_key] = _fetch(self.executor.gm, site.weight_key)
                axes[site.weight_key] = site.weight_axis
        quantizers = Quantizers(weights, stats, scheme, axes)
        return TorchSimulation(self.executor, self.graph, self.sites, quantizers, self.bytes_per_sample)


def _fetch(root: Any, target: str) -> torch.Tensor:
    value = root
    for part in target.split("."):
        value = getattr(value, part)
    return value


__all__ = ["TorchBackend", "TorchTraced", "flatten_output"]
