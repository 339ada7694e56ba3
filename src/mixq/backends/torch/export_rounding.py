"""AdaRound integers carried from a torch model to its ONNX export.

The export writes the QDQ file from the ONNX backend's simulation of ``torch.onnx.export``'s model. Left
alone, that simulation would run AdaRound again on the ONNX weights and inputs, which differ from the torch
ones by float rounding (BN folded twice, different kernels): another cache key and possibly other
integers than the torch search measured. So the export's weight quantizer gets a :class:`MappedRounder`
instead: each matched ONNX weight takes the integers of its torch weight, computed by the same
:class:`~mixq.backends.rounder.AdaRounder` the torch simulation uses (from the same disk cache).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np

from mixq.backends.onnx.backend import OnnxTraced
from mixq.backends.torch.rounding import adarounder
from mixq.backends.torch.traced import TorchTraced
from mixq.core.precision import QuantScheme
from mixq.core.quantize import WeightQuantizer
from mixq.core.ranges import QuantParams
from mixq.core.rounding import AdaRoundConfig

logger = logging.getLogger(__name__)


class MappedRounder:
    """The ONNX weight quantizer's ``rounder``: integers per (ONNX weight key, bits) from the torch side,
    computed up front (so the simulation stays picklable); None (nearest rounding) elsewhere."""

    def __init__(self, integers: dict[tuple[str, int], np.ndarray]) -> None:
        self.integers = integers
        self._keys = list(dict.fromkeys(key for key, _ in integers))

    def __call__(self, key: str, bits: int, params: QuantParams) -> np.ndarray | None:
        found = self.integers.get((key, bits))
        if found is None and key in self._keys and bits < 16:
            logger.warning("AdaRound: %s at %d bits was not carried over from the torch model; nearest rounding",
                           key, bits)
        return found

    def roundable(self) -> list[str]:
        return list(self._keys)


def _as_onnx_layout(integers: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """The torch integers in the ONNX weight's layout: the same, or transposed (a Linear exported as a
    MatMul stores ``(in, out)``); None if neither fits."""
    if integers.shape == shape:
        return integers
    if integers.ndim == 2 and integers.T.shape == shape:
        return np.ascontiguousarray(integers.T)
    return None


def mapped_rounder(torch_traced: TorchTraced, onnx_traced: OnnxTraced, matches: Iterable[tuple[str, str]],
                   calibration: np.ndarray, scheme: QuantScheme, weight_bits: Iterable[int]) -> MappedRounder:
    """The torch model's AdaRound integers at ``weight_bits`` on the ONNX export's weights, for every
    matched ``(torch op, ONNX op)`` whose torch weight AdaRound rounds (the BN-folded weight, as the torch
    simulation rounds it)."""
    weights, axes = torch_traced.weights()
    rounder = adarounder(torch_traced.executor, torch_traced.sites, weights, axes, calibration,
                         AdaRoundConfig.from_scheme(scheme))
    quantizer = WeightQuantizer(weights, axes, scheme, rounder)
    roundable = set(rounder.roundable())
    torch_keys = {site.op.name: site.weight_key for site in torch_traced.sites}
    onnx_keys = {site.op.name: site.weight_key for site in onnx_traced.sites}
    initializers = onnx_traced.model.index.initializers
    integers: dict[tuple[str, int], np.ndarray] = {}
    bits_wanted = sorted({b for b in weight_bits if b < 16})
    for torch_op, onnx_op in matches:
        torch_key, onnx_key = torch_keys.get(torch_op), onnx_keys.get(onnx_op)
        if torch_key is None or onnx_key is None or torch_key not in roundable:
            continue
        shape = tuple(int(d) for d in initializers[onnx_key].dims)
        for bits in bits_wanted:
            carried = _as_onnx_layout(quantizer.integers(torch_key, bits)[0], shape)
            if carried is None:
                logger.info("AdaRound: %s keeps nearest rounding in the export (its ONNX weight has shape %s)",
                            onnx_op, shape)
                break
            integers[(onnx_key, bits)] = carried
    return MappedRounder(integers)


__all__ = ["MappedRounder", "mapped_rounder"]
