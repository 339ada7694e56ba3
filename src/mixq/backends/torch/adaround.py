"""AdaRound (Nagel et al. 2020) on one layer, with torch doing the optimisation, cached on disk by content.

Nearest rounding is best for each weight alone but not for the layer's output: AdaRound learns, per
weight, whether ``W / s`` rounds down or up, minimising ``||W x - W~ x||^2`` on the layer's calibration
inputs (label-free: the targets default to the float layer's own outputs). The rounding is relaxed to a
rectified sigmoid ``h(V)`` of a free variable ``V``:

    W~ = s * (clip(floor(W / s) + h(V) + zero, qmin, qmax) - zero)
    h(V) = clip(sigmoid(V) * (zeta - gamma) + gamma, 0, 1),  zeta = 1.1, gamma = -0.1

``V`` starts where ``h(V)`` equals the fractional part of ``W / s`` (the float weight itself), and the
regulariser ``lambda * sum(1 - |2 h(V) - 1|^beta)`` (off during the warm-up, ``beta`` annealed from 20 to
2 after it) pushes every ``h`` to 0 or 1. At the end ``h >= 0.5`` rounds up.

The scales, zero-points, axis and integer range are the caller's :class:`~mixq.core.ranges.QuantParams`
(those of :class:`mixq.core.quantize.WeightQuantizer`), so the result drops in where the nearest-rounded
integers were: int32 in the weight's layout, within ``[qmin, qmax]``, at most 1 away from nearest rounding.
The run is deterministic given ``seed`` (``torch.manual_seed`` and a seeded batch order, CPU, one thread).

Results are cached under ``$MIXQ_CACHE_DIR/adaround`` (``~/.cache/mixq/adaround``), one ``.npy`` per
content key (:func:`mixq.core.rounding.adaround_key`), written atomically: AdaRound runs once per (layer,
bit-width) however often a search, a sensitivity pass or an export asks for it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mixq.atomic import write_atomic
from mixq.backends.base import Progress
from mixq.backends.torch.reconstruction_loss import objective
from mixq.core.graph import OpKind
from mixq.core.ranges import QuantParams
from mixq.core.rounding import AdaRoundConfig, LayerSpec, adaround_key
from mixq.cost.measured_latency import cache_dir

logger = logging.getLogger(__name__)

ZETA = 1.1
GAMMA = -0.1
#: How often (in steps) the optimisation reports progress.
PROGRESS_EVERY = 50


@contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one thread for the duration: a layer's steps are too small to gain from intra-op threads,
    and on a loaded machine spinning threads made a 0.5 s layer take 10-50 s (measured on 2 cores; even a
    1152-wide layer's step slowed down tenfold with two threads on a loaded machine). One thread also
    keeps the integers independent of the thread count. The caller's thread count is restored."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def adaround_cache_dir() -> Path:
    """``$MIXQ_CACHE_DIR/adaround`` or ``~/.cache/mixq/adaround`` (next to the latency cache)."""
    return cache_dir().parent / "adaround"


def _broadcast(values: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    values = np.asarray(values, np.float64)
    if values.ndim == 0:
        return values
    shape = [1] * ndim
    shape[axis] = -1
    return values.reshape(shape)


def nearest_integers(weight: np.ndarray, params: QuantParams, axis: int) -> np.ndarray:
    """Nearest rounding, as :meth:`mixq.core.quantize.WeightQuantizer.integers` computes it (int32)."""
    scale = _broadcast(params.scale, weight.ndim, axis)
    zero = _broadcast(params.zero_point, weight.ndim, axis)
    q = np.clip(np.round(weight.astype(np.float64) / scale) + zero, params.qmin, params.qmax)
    return q.astype(np.int32)


def dequantize(integers: np.ndarray, params: QuantParams, axis: int) -> np.ndarray:
    """``(q - zero) * scale`` in float32, as the simulations and ``DequantizeLinear`` compute it."""
    scale = _broadcast(params.scale, integers.ndim, axis).astype(np.float32)
    zero = _broadcast(params.zero_point, integers.ndim, axis)
    out: np.ndarray = (integers - zero).astype(np.float32) * scale
    return out


def layer_forward(layer: LayerSpec, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The op of ``layer`` on input ``x`` with weight ``weight`` (bias included)."""
    bias = None if layer.bias is None else torch.as_tensor(np.asarray(layer.bias, np.float32))
    if layer.kind in (OpKind.CONV, OpKind.DEPTHWISE_CONV):
        dims = weight.ndim - 2
        conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}.get(dims)
        if conv is None:
            raise ValueError(f"a conv weight has 3 to 5 dimensions, got {weight.ndim}")

        def per_dim(values: tuple[int, ...]) -> tuple[int, ...]:
            return values * dims if len(values) == 1 else values

        out: torch.Tensor = conv(x, weight, bias, per_dim(layer.stride), per_dim(layer.padding),
                                 per_dim(layer.dilation), layer.groups)
        return out
    if layer.kind is OpKind.LINEAR:
        return F.linear(x, weight, bias)
    out = x @ weight
    return out if bias is None else out + bias


def adaround(weight: np.ndarray, params: QuantParams, axis: int, layer: LayerSpec, inputs: np.ndarray,
             targets: np.ndarray | None, config: AdaRoundConfig, seed: int = 0,
             progress: Progress | None = None, use_cache: bool = True) -> np.ndarray:
    """The AdaRounded integer weights (int32, ``weight``'s layout) of one layer.

    Args:
        weight: the float weight (layout of :class:`~mixq.core.rounding.LayerSpec`).
        params: the weight quantizer's parameters (per tensor, or per channel along ``axis``).
        axis: the output-channel axis of ``weight`` (0, or 1 for ``matmul``).
        layer: the op.
        inputs: the layer's calibration inputs, samples first.
        targets: the outputs to reconstruct, samples first; None: the float layer's own outputs on
            ``inputs`` (label-free). Pass the float model's outputs with quantized-model inputs to correct
            upstream quantization error too.
        config: the settings.
        seed: seeds torch and the batch order; the same content and seed give the same integers.
        progress: called as ``progress("adaround", step, iterations)``.
        use_cache: read and write the disk cache (:func:`adaround_cache_dir`).
    """
    path = None
    if use_cache:
        key = adaround_key(weight, params, axis, layer, inputs, targets, config, seed)
        path = adaround_cache_dir() / f"{key[:40]}.npy"
        cached = _load(path, weight.shape)
        if cached is not None:
            return cached
    with _one_thread():
        integers = _optimise(weight, params, axis, layer, inputs, targets, config, seed, progress)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda tmp: _save(tmp, integers))
    return integers


def _save(path: Path, integers: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(handle, integers, allow_pickle=False)


def _load(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached integers, or None (absent, unreadable or not of this shape: optimised again)."""
    if not path.is_file():
        return None
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable AdaRound cache file %s: %s", path, exc)
        return None
    if values.shape != tuple(shape) or values.dtype != np.int32:
        logger.warning("ignoring AdaRound cache file %s: shape %s, dtype %s", path, values.shape, values.dtype)
        return None
    return values


def _optimise(weight: np.ndarray, params: QuantParams, axis: int, layer: LayerSpec, inputs: np.ndarray,
              targets: np.ndarray | None, config: AdaRoundConfig, seed: int, progress: Progress | None) -> np.ndarray:
    if len(inputs) == 0:
        raise ValueError("AdaRound needs at least one calibration input")
    scale64 = _broadcast(params.scale, weight.ndim, axis)
    zero64 = _broadcast(params.zero_point, weight.ndim, axis)
    scaled = weight.astype(np.float64) / scale64
    floor64 = np.floor(scaled)
    rest = np.clip(scaled - floor64, 0.0, 1.0)

    torch.manual_seed(seed)
    loss_of = objective(layer, weight, inputs, targets, config.batch_size, np.random.default_rng(seed), layer_forward)
    # The integer grid relative to the zero-point: W~ = s * clip(floor + h, qmin - zero, qmax - zero).
    floor = torch.as_tensor(floor64.astype(np.float32))
    scale = torch.as_tensor(np.broadcast_to(scale64, weight.shape).astype(np.float32))
    lo = torch.as_tensor(np.broadcast_to(params.qmin - zero64, weight.shape).astype(np.float32))
    hi = torch.as_tensor(np.broadcast_to(params.qmax - zero64, weight.shape).astype(np.float32))
    # h(V) = rest at the start: sigmoid(V) = (rest - gamma) / (zeta - gamma), always strictly inside (0, 1).
    p = (rest - GAMMA) / (ZETA - GAMMA)
    v = torch.nn.Parameter(torch.as_tensor(np.log(p / (1.0 - p)).astype(np.float32)))
    optimiser = torch.optim.Adam([v], lr=config.lr)

    def soft() -> torch.Tensor:
        return torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)

    for step in range(config.iterations):
        h = soft()
        loss = loss_of(scale * torch.minimum(torch.maximum(floor + h, lo), hi))
        beta = config.beta(step)
        if beta is not None and config.reg_weight > 0:
            loss = loss + config.reg_weight * (1.0 - (2.0 * h - 1.0).abs().pow(beta)).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if progress is not None and step % PROGRESS_EVERY == 0:
            progress("adaround", step, config.iterations)
    if progress is not None:
        progress("adaround", config.iterations, config.iterations)
    with torch.no_grad():
        up = (soft() >= 0.5).numpy()
    q = np.clip(floor64 + up + zero64, params.qmin, params.qmax)
    if not math.isfinite(float(np.abs(q).max(initial=0.0))):
        raise ValueError("AdaRound produced non-finite integers (non-finite weight or scale?)")
    return q.astype(np.int32)


__all__ = ["adaround", "adaround_cache_dir", "dequantize", "layer_forward", "nearest_integers"]
