"""Capturing a torch model: the traced graph, its quantizer groups, and calibration into a simulation.

Kept apart from :class:`~mixq.backends.torch.backend.TorchBackend` (the glue) so the torch-to-ONNX export can
trace without importing the backend class that calls it.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mixq.backends.base import (
    Progress,
    calibration_batches,
    quantized_tensors,
    require_calibration,
    require_finite,
    site_weights,
)
from mixq.backends.rounder import precompute
from mixq.backends.torch.executor import GraphExecutor, flatten_output
from mixq.backends.torch.fold import fold_batchnorm
from mixq.backends.torch.moments import TorchMoments
from mixq.backends.torch.simulation import Quantizers, TorchSimulation, collect_stats
from mixq.backends.torch.trace import OpSite, capture, find_sites
from mixq.core.graph import QuantGraph, form_groups
from mixq.core.precision import Precision, QuantScheme, RangeMethod
from mixq.errors import DataError, UnsupportedModelError

logger = logging.getLogger(__name__)


def trace_module(model: object, sample: np.ndarray, candidates: Sequence[Precision]) -> TorchTraced:
    """Capture ``model`` (a private copy) on one sample: its quantizer groups, ready to be calibrated."""
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

    def weights(self) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        """Each quantized weight as the simulation uses it (BN folded) and its output-channel axis."""
        return site_weights(self.sites, lambda key: _fetch(self.executor.gm, key).detach().cpu().numpy())

    def prepare(self, calibration: np.ndarray, scheme: QuantScheme, progress: Progress | None = None,
                weight_bits: Iterable[int] = ()) -> TorchSimulation:
        """Calibrate in one float pass. With ``scheme.weight_rounding == "adaround"``, AdaRound then runs,
        as on the ONNX backend, for every roundable weight (BN folded, as simulated) at every integer weight
        bit-width below 16 of ``weight_bits`` (default: of the graph's candidates; progress ``adaround``,
        one step per (weight, bits)); other bit-widths are AdaRounded on first use."""
        require_calibration(calibration)
        stats = collect_stats(self.executor, quantized_tensors(self.sites), calibration_batches(calibration, progress))
        weights, axes = self.weights()
        rounder = None
        if scheme.weight_rounding == "adaround":
            from mixq.backends.torch.rounding import adarounder
            from mixq.core.rounding import AdaRoundConfig

            config = AdaRoundConfig.from_scheme(scheme)
            rounder = adarounder(self.executor, self.sites, weights, axes, calibration, config)
        moments = None
        if scheme.bias_correction or scheme.weight_range is RangeMethod.OUTPUT:
            moments = TorchMoments(self.executor, self.sites, weights, calibration,
                                   keep_inputs=scheme.weight_range is RangeMethod.OUTPUT)
        quantizers = Quantizers(weights, axes, stats, scheme, rounder, moments)
        if rounder is not None:
            bits = set(weight_bits) or {p.weight_bits for g in self.graph for p in g.candidates if not p.is_float}
            precompute(quantizers.weight_integers, rounder.roundable(), bits, progress)
        return TorchSimulation(self.executor, self.graph, self.sites, quantizers, self.bytes_per_sample)


def _fetch(root: Any, target: str) -> torch.Tensor:
    value = root
    for part in target.split("."):
        value = getattr(value, part)
    return value
