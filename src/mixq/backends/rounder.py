"""The AdaRound rounder every backend hands to the core's weight quantizer, framework-free.

A backend knows its ops (which weights are roundable, as what :class:`~mixq.core.rounding.LayerSpec`) and
how to gather each one's calibration inputs; everything after that is the same for every backend and
lives here: :class:`AdaRounder` (the ``rounder(key, bits, params)`` of
:class:`mixq.core.quantize.WeightQuantizer`, which calls the optimiser of the ``adaround`` entry of
:data:`mixq.backends.ROUNDINGS`) and :func:`precompute`, which runs every (weight, bits) job up front
with progress, so a search does not stall on its first quantized run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

import numpy as np

from mixq.backends import weight_rounding
from mixq.backends.base import Progress
from mixq.core.ranges import QuantParams
from mixq.core.rounding import AdaRoundConfig, LayerSpec

#: Calibration samples whose layer inputs AdaRound reconstructs on (memory: every roundable site's input).
MAX_SAMPLES = 64
#: Bytes of layer inputs gathered per float pass (the sites are split over passes beyond this).
PASS_BYTES = 1 << 29
#: Samples per float run while gathering.
BATCH = 16


class Rounder(Protocol):
    """What a backend's ``prepare`` takes as a weight rounder: the weight quantizer's ``rounder`` and the
    weights it rounds (the others keep nearest rounding)."""

    def __call__(self, key: str, bits: int, params: QuantParams) -> np.ndarray | None: ...

    def roundable(self) -> list[str]: ...


class AdaRounder:
    """The ``rounder`` of the weight quantizer: AdaRound integers per (weight, bits), computed on first use
    (or all at once by :func:`precompute`), None where nearest rounding is kept."""

    def __init__(self, specs: dict[str, LayerSpec], inputs: dict[str, np.ndarray], weights: dict[str, np.ndarray],
                 axes: dict[str, int], config: AdaRoundConfig | None = None, seed: int = 0) -> None:
        self.specs = specs
        self.inputs = inputs  # by weight key
        self.weights = weights
        self.axes = axes
        self.config = config or AdaRoundConfig()
        self.seed = seed
        self._optimise: Any = weight_rounding("adaround")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_optimise"] = None  # a module function: looked up again after unpickling
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._optimise = weight_rounding("adaround")

    def __call__(self, key: str, bits: int, params: QuantParams, progress: Progress | None = None) -> np.ndarray | None:
        spec = self.specs.get(key)
        if spec is None or bits >= 16:
            return None
        integers: np.ndarray = self._optimise(self.weights[key], params, self.axes[key], spec, self.inputs[key], None,
                                              self.config, self.seed, progress)
        return integers

    def roundable(self) -> list[str]:
        """The weights AdaRound rounds (the others keep nearest rounding)."""
        return list(self.specs)


def gather_passes(bytes_per_sample: dict[str, int], count: int, limit: int = PASS_BYTES) -> list[list[str]]:
    """The tensors to gather (in order) split into float passes of at most ``limit`` bytes of gathered
    values over ``count`` samples each (a tensor larger than ``limit`` gets a pass of its own), so the
    gathering's memory stays bounded whatever the model."""
    passes: list[list[str]] = [[]]
    size = 0
    for name, per_sample in bytes_per_sample.items():
        if passes[-1] and size + per_sample * count > limit:
            passes.append([])
            size = 0
        passes[-1].append(name)
        size += per_sample * count
    return passes


def precompute(integers: Callable[[str, int], object], roundable: Iterable[str], bits: Iterable[int],
               progress: Progress | None = None) -> None:
    """Round every roundable weight at every integer bit-width below 16 of ``bits`` now, through the
    weight quantizer's ``integers(key, bits)`` (which caches them), with progress ``adaround``, one step
    per (weight, bits)."""
    keys = list(roundable)
    # layer-major: a layer's input moments are computed once for all its bit-widths
    jobs = [(key, b) for key in keys for b in sorted({b for b in bits if b < 16})]
    for done, (key, b) in enumerate(jobs):
        if progress is not None:
            progress("adaround", done, len(jobs))
        integers(key, b)
    if progress is not None:
        progress("adaround", len(jobs), len(jobs))


__all__ = ["BATCH", "MAX_SAMPLES", "PASS_BYTES", "AdaRounder", "Rounder", "gather_passes", "precompute"]
