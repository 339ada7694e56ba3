"""Quantizer math written once for every backend (numpy only): calibration sampling, the weight
quantizer, activation ranges per bit-width, and the dynamic (per-run) activation range.

Backends only apply what is computed here: the torch backend swaps the fake-quantized weights in as
tensors and fake-quantizes activations with ``torch.fake_quantize_per_tensor_affine`` on these
parameters; the ONNX backend feeds the same weights as initializers, the same parameters to its
``Mul -> Round -> Clip -> Mul`` subgraph, and writes the integer weights into exported files. So both
backends calibrate on the same sampled values and quantize weights bit for bit alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from mixq.core.bias_correction import LayerMoments, output_shift
from mixq.core.precision import Precision, QuantScheme, RangeMethod
from mixq.core.ranges import ActivationStats, QuantParams, activation_params, weight_params
from mixq.core.tuned import TunedWeight
from mixq.errors import ConfigError, UnsupportedModelError

logger = logging.getLogger(__name__)

#: Values of one tensor kept for range setting (a strided sample per batch, then a seeded subsample).
MAX_SAMPLE = 1 << 18
#: Smallest scale of a dynamic range (an all-zero tensor): avoids dividing by zero.
DYNAMIC_MIN_SCALE = 1e-12


class CalibrationStats:
    """Per tensor, over every calibration batch: exact extremes and a strided value sample.

    Each batch keeps every ``step``-th value (at most ``max_sample / 4`` per batch); the batches' samples
    are merged with a seeded subsample down to ``max_sample`` (:meth:`ActivationStats.merge`).
    """

    def __init__(self, names: Iterable[str], max_sample: int = MAX_SAMPLE, seed: int = 0) -> None:
        self.max_sample = max_sample
        self.seed = seed
        self._parts: dict[str, list[ActivationStats]] = {name: [] for name in names}

    def observe(self, name: str, values: np.ndarray) -> None:
        """One batch of tensor ``name`` (any shape; float32)."""
        flat = np.asarray(values, np.float32).reshape(-1)
        step = max(1, flat.size // (self.max_sample // 4))
        self._parts[name].append(ActivationStats(float(flat.min()), float(flat.max()), flat[::step].copy()))

    def result(self) -> dict[str, ActivationStats]:
        missing = [name for name, items in self._parts.items() if not items]
        if missing:
            raise UnsupportedModelError(f"calibration never saw tensors {missing[:3]}; is the graph input-dependent?")
        return {name: ActivationStats.merge(items, self.max_sample, self.seed) for name, items in self._parts.items()}


class WeightQuantizer:
    """Weights quantized per (weight, bit-width), on first use, cached.

    ``axes[key]`` is the weight's output-channel axis (per-channel scales run along it). Rounding is
    ``round(w / scale) + zero`` in float64 (half to even), clamped; the dequantized weight is computed in
    float32, as ``DequantizeLinear`` computes it, so an exported integer model reproduces it bit for bit.

    ``rounder`` (the scheme's ``weight_rounding`` other than nearest, set by a backend): called as
    ``rounder(key, bits, params)`` on a weight's first use at ``bits``, it returns that weight's integers
    (int32, its layout, on the grid of ``params``) or None for nearest rounding. Its result replaces the
    nearest-rounded integers everywhere (simulation, sub-models, export), as it comes from this one place.

    ``moments`` (set by a backend when the scheme needs them): the layers' input moments, for
    ``weight_range == "output"`` (the second moment) and ``bias_correction`` (the mean, :meth:`bias_shift`).
    """

    def __init__(self, weights: Mapping[str, np.ndarray], axes: Mapping[str, int], scheme: QuantScheme,
                 rounder: Callable[[str, int, QuantParams], np.ndarray | None] | None = None,
                 moments: LayerMoments | None = None) -> None:
        self.weights = weights
        self.axes = axes
        self.scheme = scheme
        self.rounder = rounder
        self.moments = moments
        self._shifts: dict[tuple[str, Precision], np.ndarray | None] = {}
        self._params: dict[tuple[str, int], QuantParams] = {}
        self._weights: dict[tuple[str, Precision], np.ndarray] = {}
        self._rounded: dict[tuple[str, int], np.ndarray | None] = {}

    def params(self, key: str, bits: int) -> QuantParams:
        """Per-channel (along ``axes[key]``) or per-tensor parameters of a weight."""
        cached = self._params.get((key, bits))
        if cached is None:
            scheme = self.scheme
            moved = np.moveaxis(self.weights[key], self.axes[key], 0)
            gram = None
            if scheme.weight_range is RangeMethod.OUTPUT:
                gram = self.moments.gram(key) if self.moments is not None else None
                if gram is None or not scheme.weight_per_channel:
                    logger.info("weight range of %s: MSE (%s)", key, "per tensor" if gram is not None else
                                "its layer's input moment is not known: a shared weight or an unsupported op")
            cached = weight_params(moved, bits, scheme.weight_range, scheme.weight_symmetric,
                                   scheme.weight_per_channel, scheme.percentile, gram=gram)
            self._params[(key, bits)] = cached
        return cached

    def bias_shift(self, key: str, precision: Precision) -> np.ndarray | None:
        """What bias correction adds to the layer's bias at ``precision`` (float64, one per output channel):
        ``(W - W~) E[x]`` with ``W~`` the weight as simulated (after AdaRound or tuning); None when the scheme
        has no bias correction, the precision is float or the layer's mean input is not known."""
        if not self.scheme.bias_correction or precision.is_float or self.moments is None:
            return None
        if (key, precision) not in self._shifts:
            mean = self.moments.mean(key)
            self._shifts[(key, precision)] = None if mean is None else output_shift(
                self.weights[key], self.weight(key, precision), self.axes[key], mean)
        return self._shifts[(key, precision)]

    def integers(self, key: str, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Integer weights (int32, the original layout) and scale and zero-point broadcastable to them."""
        params = self.params(key, bits)
        w = self.weights[key]
        scale = np.asarray(params.scale, np.float64)
        zero = np.asarray(params.zero_point, np.float64)
        if self.scheme.weight_per_channel:
            shape = [1] * w.ndim
            shape[self.axes[key]] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        if (key, bits) in self._rounded or self.rounder is not None:
            if (key, bits) not in self._rounded and self.rounder is not None:
                self._rounded[(key, bits)] = self.rounder(key, bits, params)
            rounded = self._rounded[(key, bits)]
            if rounded is not None:
                return rounded, scale, zero
        q = np.clip(np.round(w.astype(np.float64) / scale) + zero, params.qmin, params.qmax)
        return q.astype(np.int32), scale, zero

    def tune(self, weights: Mapping[tuple[str, int], TunedWeight]) -> None:
        """Use learned integers and parameters (``mixq.core.tuned``) for these (weight, bits) from now on;
        the dequantized weights of those bit-widths are recomputed on next use."""
        for (key, bits), tuned in weights.items():
            if key not in self.weights:
                raise ConfigError(f"the tuned quantizers name weight {key!r}, which this model does not have; "
                                  "were they learned on another model?")
            if tuned.integers.shape != self.weights[key].shape:
                raise ConfigError(f"the tuned integers of {key!r} have shape {tuned.integers.shape}, the weight "
                                  f"{self.weights[key].shape}; were they learned on another model?")
            self._params[(key, bits)] = tuned.params
            self._rounded[(key, bits)] = np.asarray(tuned.integers, np.int32)
            for cached in [k for k in self._weights if k[0] == key and k[1].weight_bits == bits]:
                del self._weights[cached]
            for cached in [k for k in self._shifts if k[0] == key and k[1].weight_bits == bits]:
                del self._shifts[cached]  # the bias correction follows the tuned weight
            for shifted in [k for k in self._shifts if k[0] == key and k[1].weight_bits == bits]:
                del self._shifts[shifted]

    def weight(self, key: str, precision: Precision) -> np.ndarray:
        """The weight as the simulation uses it (same dtype as the original); fp16 is float16-rounded."""
        cached = self._weights.get((key, precision))
        if cached is None:
            w = self.weights[key]
            if precision.is_float:
                cached = w.astype(np.float16).astype(w.dtype) if precision.weight_bits == 16 else w
            else:
                q, scale, zero = self.integers(key, precision.weight_bits)
                cached = ((q - zero).astype(np.float32) * scale.astype(np.float32)).astype(w.dtype)
            self._weights[(key, precision)] = cached
        return cached


class ActivationRanges:
    """Static activation quantizer parameters per (tensor, bit-width) from calibration statistics, cached."""

    def __init__(self, stats: Mapping[str, ActivationStats], scheme: QuantScheme) -> None:
        self.stats = stats
        self.scheme = scheme
        self._params: dict[tuple[str, int], QuantParams] = {}

    def tune(self, activations: Mapping[tuple[str, int], QuantParams]) -> None:
        """Use learned parameters (``mixq.core.tuned``) for these (tensor, bits) from now on."""
        self._params.update(activations)

    def params(self, tensor: str, bits: int) -> QuantParams:
        cached = self._params.get((tensor, bits))
        if cached is None:
            scheme = self.scheme
            cached = activation_params(self.stats[tensor], bits, scheme.act_range, scheme.act_symmetric,
                                       scheme.percentile)
            self._params[(tensor, bits)] = cached
        return cached


def dynamic_params(lo: float, hi: float, bits: int) -> tuple[float, int, int, int]:
    """``(scale, zero_point, qmin, qmax)`` of an asymmetric per-tensor range from one run's min/max (zero
    included), as ONNX Runtime's dynamic quantization computes it. The ONNX backend computes the same
    formula inside its graph (``mixq.backends.onnx.qdq.dynamic_fake_quant``)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    qmax = (1 << bits) - 1
    scale = max((hi - lo) / qmax, DYNAMIC_MIN_SCALE)
    zero = int(round(-lo / scale))
    return scale, min(max(zero, 0), qmax), 0, qmax


def fake_quantize_dynamic(x: np.ndarray, bits: int) -> np.ndarray:
    """``x`` fake-quantized with its own dynamic range (float32 arithmetic, as the kernels run it)."""
    scale, zero, qmin, qmax = dynamic_params(float(x.min()), float(x.max()), bits)
    s = np.float32(scale)
    q = np.clip(np.round(x.astype(np.float32) * (np.float32(1.0) / s)) + zero, qmin, qmax)
    out: np.ndarray = ((q - zero) * s).astype(x.dtype)
    return out


__all__ = ["ActivationRanges", "CalibrationStats", "DYNAMIC_MIN_SCALE", "MAX_SAMPLE", "WeightQuantizer",
           "dynamic_params", "fake_quantize_dynamic"]
