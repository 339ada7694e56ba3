"""Empirical bias correction (Nagel et al. 2019, "Data-Free Quantization", as AIMET applies it), numpy only.

Quantizing a layer's weight ``W`` to ``W~`` shifts each output channel's mean by ``(W~ - W) E[x]``, and the
layers after it see that shift as a systematic error (large for low-bit depthwise convs, whose few weights
per channel round coarsely). Adding ``(W - W~) mu`` to the bias, with ``mu`` the mean input patch on the
calibration data, makes the quantized layer's mean output equal the float one's there.

The backend supplies the layer's input moments (:class:`LayerMoments`, computed from the float model's
layer inputs); this module holds the framework-free math. Weights are handled in the quantizer's layout:
output channel first, each channel's inputs flattened (``(out, d)``), which is the layout of the backend's
patches (``patch_rows``): ``d`` is the patch length of one group, output channel ``o`` is in group
``o // (out / groups)``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from mixq.errors import internal


class LayerMoments(Protocol):
    """A layer's input moments by weight key, in the layout of its weight's rows (None: not known, e.g. a
    shared weight or an op without a patch view)."""

    def mean(self, key: str) -> np.ndarray | None:
        """``E[x]`` per group: ``(groups, d)``."""

    def gram(self, key: str) -> np.ndarray | None:
        """``E[x x^T]`` per group: ``(groups, d, d)``."""


def rows(weight: np.ndarray, axis: int) -> np.ndarray:
    """The weight as ``(out, d)`` rows (output channel first), float64."""
    moved = np.moveaxis(np.asarray(weight), axis, 0)
    return moved.reshape(moved.shape[0], -1).astype(np.float64)


def grouped(rows_: np.ndarray, groups: int) -> np.ndarray:
    """``(out, d)`` rows as ``(groups, out / groups, d)``."""
    out, d = rows_.shape
    if groups < 1 or out % groups:
        raise internal(f"a layer moment has {groups} groups for a weight of {out} output channels")
    return rows_.reshape(groups, out // groups, d)


def output_shift(weight: np.ndarray, quantized: np.ndarray, axis: int, mean: np.ndarray) -> np.ndarray:
    """``(W - W~) mu`` per output channel (float64, ``(out,)``): what to add to the bias so that the quantized
    layer's mean output equals the float one's on the inputs whose mean patch is ``mean`` (``(groups, d)``)."""
    delta = rows(weight, axis) - rows(quantized, axis)
    mu = np.asarray(mean, np.float64)
    if mu.ndim != 2 or mu.shape[1] != delta.shape[1]:
        raise internal(f"the mean input patch {mu.shape} does not fit the weight's rows {delta.shape}")
    shift: np.ndarray = np.einsum("god,gd->go", grouped(delta, mu.shape[0]), mu).reshape(-1)
    return shift


def corrected_bias(bias: np.ndarray | None, shift: np.ndarray) -> np.ndarray:
    """The bias plus the shift, float32 ``(out,)``; a layer without a bias gets the shift as its bias. A bias
    of another shape (a Gemm's broadcast scalar or row) is broadcast to one value per channel first."""
    if bias is None:
        return shift.astype(np.float32)
    values = np.asarray(bias, np.float64)
    base = values.reshape(-1) if values.size == shift.size else np.broadcast_to(values.reshape(-1), shift.shape)
    out: np.ndarray = (base + shift).astype(np.float32)
    return out


def channel_output_error(delta: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """Per output channel, ``dW_o G dW_o^T``: the mean squared output error a weight change ``delta``
    (``(out, d)`` rows) causes on inputs of second moment ``gram`` (``(groups, d, d)``)."""
    g = np.asarray(gram, np.float64)
    parts = grouped(delta, g.shape[0])
    err: np.ndarray = (np.matmul(parts, g) * parts).sum(axis=-1).reshape(-1)
    return err


__all__ = ["LayerMoments", "channel_output_error", "corrected_bias", "grouped", "output_shift", "rows"]
