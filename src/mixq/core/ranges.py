"""Range setting: from calibration values to a quantizer's scale and zero-point (numpy only).

Written once for every backend. Weights are searched exactly (per channel, real rounding);
activations from a histogram, where the expected error of a clipping range is the rounding noise
of in-range values (step^2 / 12) plus the squared distance of clipped values to the range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mixq.core.bias_correction import channel_output_error
from mixq.core.precision import RangeMethod

#: Clipping ratios tried by the MSE search (fractions of the min-max range).
_CLIP_GRID = np.linspace(0.2, 1.0, 33)
_HIST_BINS = 2048


@dataclass(frozen=True)
class QuantParams:
    """Affine quantizer parameters: ``q = clamp(round(x / scale) + zero_point, qmin, qmax)``.

    ``scale`` and ``zero_point`` are scalars (per tensor) or 1-D arrays (per channel).
    """

    scale: np.ndarray
    zero_point: np.ndarray
    qmin: int
    qmax: int


def integer_range(bits: int, symmetric: bool) -> tuple[int, int]:
    """Symmetric quantizers use the narrow signed range so that -x and x map alike."""
    if symmetric:
        return -(2 ** (bits - 1)) + 1, 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def fake_quantize(x: np.ndarray, params: QuantParams, axis: int | None = None) -> np.ndarray:
    scale, zero = params.scale, params.zero_point
    if axis is not None:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    q = np.clip(np.round(x / scale) + zero, params.qmin, params.qmax)
    out: np.ndarray = ((q - zero) * scale).astype(x.dtype)
    return out


def _params_from_range(lo: np.ndarray, hi: np.ndarray, bits: int, symmetric: bool) -> QuantParams:
    qmin, qmax = integer_range(bits, symmetric)
    if symmetric:
        scale = np.maximum(np.maximum(np.abs(lo), np.abs(hi)) / qmax, 1e-12)
        zero = np.zeros_like(scale)
    else:
        lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)  # zero must be exactly representable (padding)
        scale = np.maximum((hi - lo) / (qmax - qmin), 1e-12)
        zero = np.clip(np.round(qmin - lo / scale), qmin, qmax)
    return QuantParams(np.asarray(scale, np.float64), np.asarray(zero, np.float64), qmin, qmax)


def weight_params(weight: np.ndarray, bits: int, method: RangeMethod, symmetric: bool = True,
                  per_channel: bool = True, percentile: float = 99.99, gram: np.ndarray | None = None) -> QuantParams:
    """Scales for a weight tensor whose first axis is the output channel (per channel) or whole.

    ``RangeMethod.OUTPUT`` scores each clipping ratio by the channel's output error ``dW G dW^T`` on inputs of
    second moment ``gram`` (``(groups, d, d)``, the weight's rows' layout) instead of the weight's own MSE:
    clipping an input the layer sees often costs more than one it rarely sees. Without ``gram`` (or per
    tensor) it is the MSE search; the caller says so."""
    output_aware = method is RangeMethod.OUTPUT and gram is not None and per_channel
    if method is RangeMethod.OUTPUT and not output_aware:
        method = RangeMethod.MSE
    w = weight.reshape(weight.shape[0], -1) if per_channel else weight.reshape(1, -1)
    w = w.astype(np.float64)
    lo, hi = w.min(axis=1), w.max(axis=1)
    if method is RangeMethod.PERCENTILE:
        lo = np.percentile(w, 100.0 - percentile, axis=1)
        hi = np.percentile(w, percentile, axis=1)
    params = _params_from_range(lo, hi, bits, symmetric)
    if method in (RangeMethod.MSE, RangeMethod.OUTPUT):
        best_err = np.full(w.shape[0], np.inf)
        best_lo, best_hi = lo.copy(), hi.copy()
        for ratio in _CLIP_GRID:
            trial = _params_from_range(lo * ratio, hi * ratio, bits, symmetric)
            delta = fake_quantize(w, trial, axis=0) - w
            err = channel_output_error(delta, gram) if output_aware and gram is not None else np.mean(delta**2, axis=1)
            better = err < best_err
            best_err = np.where(better, err, best_err)
            best_lo = np.where(better, lo * ratio, best_lo)
            best_hi = np.where(better, hi * ratio, best_hi)
        params = _params_from_range(best_lo, best_hi, bits, symmetric)
    if not per_channel:
        return QuantParams(params.scale.reshape(()), params.zero_point.reshape(()), params.qmin, params.qmax)
    return params


@dataclass(frozen=True)
class ActivationStats:
    """What calibration keeps of one activation tensor: exact extremes and a value sample."""

    minimum: float
    maximum: float
    sample: np.ndarray

    @classmethod
    def merge(cls, parts: list[ActivationStats], max_sample: int, seed: int = 0) -> ActivationStats:
        sample = np.concatenate([p.sample for p in parts])
        if sample.size > max_sample:
            sample = np.random.default_rng(seed).choice(sample, max_sample, replace=False)
        return cls(min(p.minimum for p in parts), max(p.maximum for p in parts), sample)


def activation_params(stats: ActivationStats, bits: int, method: RangeMethod, symmetric: bool = False,
                      percentile: float = 99.99) -> QuantParams:
    """Per-tensor activation quantizer for one bit-width."""
    lo, hi = np.array(stats.minimum), np.array(stats.maximum)
    if method is RangeMethod.MINMAX or stats.sample.size == 0 or stats.maximum <= stats.minimum:
        return _params_from_range(lo, hi, bits, symmetric)
    if method is RangeMethod.PERCENTILE:
        lo_p, hi_p = np.percentile(stats.sample, [100.0 - percentile, percentile])
        return _params_from_range(np.array(min(lo_p, 0.0) if lo < 0 else lo), np.array(hi_p), bits, symmetric)
    counts, edges = np.histogram(stats.sample, bins=_HIST_BINS, range=(stats.minimum, stats.maximum))
    centres = (edges[:-1] + edges[1:]) / 2
    weights = counts / max(counts.sum(), 1)
    qmin, qmax = integer_range(bits, symmetric)
    best = (np.inf, float(lo), float(hi))
    lo_grid = _CLIP_GRID if stats.minimum < 0 else np.ones(1)
    for lo_ratio in lo_grid:
        for hi_ratio in _CLIP_GRID:
            trial = _params_from_range(lo * lo_ratio, hi * hi_ratio, bits, symmetric)
            scale, zero = float(trial.scale), float(trial.zero_point)
            low, high = (qmin - zero) * scale, (qmax - zero) * scale
            clipped = np.clip(centres, low, high)
            inside = (centres >= low) & (centres <= high)
            err = float(np.sum(weights * ((centres - clipped) ** 2 + inside * scale * scale / 12.0)))
            if err < best[0]:
                best = (err, float(lo * lo_ratio), float(hi * hi_ratio))
    return _params_from_range(np.array(best[1]), np.array(best[2]), bits, symmetric)
