"""A layer's output reconstruction error ``mean ||W x - W~ x||^2`` as AdaRound minimises it, computed the
cheap way for the layer's shape.

For a linear op (a conv is one, on its input patches) the error of a weight change ``D = W~ - W`` on
inputs ``x`` is a quadratic form in ``D`` with the inputs' second moment ``G = E[x x^T]``:

    mean over samples, positions and output channels of (D x)^2  =  sum_o D_o G D_o^T / out

So the error over *every* calibration position costs ``out * d^2`` per step (``d`` = input patch length)
however many positions there are, against ``rows * d * out`` for a forward pass on a batch of ``rows``
positions. For a conv at 112x112 that is four orders of magnitude less work, and the optimiser sees the
exact full-data objective instead of a minibatch estimate. :func:`objective` picks the second-moment form
whenever ``d`` is below a batch's positions (every conv of a CNN, in practice) and falls back to batches
of samples through the op itself otherwise (a classifier's Linear on a few samples) or when explicit
targets are given (their cross term needs the inputs, not only their moments).

The moments are accumulated over chunks of samples (:data:`CHUNK_BYTES` of patches at a time), in float64,
so the memory stays bounded on large feature maps. The last moment is kept (:data:`_LAST_MOMENT`, keyed by
the inputs' content): a layer rounded at several bit-widths in a row pays for it once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mixq.core.graph import OpKind
from mixq.core.rounding import LayerSpec, array_digest

#: ``loss(w_soft) -> scalar``: the reconstruction error of a candidate (soft-rounded) weight.
Objective = Callable[[torch.Tensor], torch.Tensor]

#: Bytes of unfolded input patches materialised at a time while accumulating the second moment.
CHUNK_BYTES = 1 << 27


def _per_dim(values: tuple[int, ...], dims: int) -> tuple[int, ...]:
    return values * dims if len(values) == 1 else values


def patch_rows(layer: LayerSpec, x: torch.Tensor, kernel: tuple[int, ...]) -> torch.Tensor | None:
    """The op's inputs as rows ``(groups, rows, d)``: one row per output position and group, laid out as
    the weight's flattened input axes, so that ``out = rows @ W_g^T``. None when this op has no patch view
    (a conv with other than 1 or 2 spatial dimensions)."""
    if layer.kind in (OpKind.LINEAR, OpKind.MATMUL):
        return x.reshape(1, -1, x.shape[-1])
    dims = len(kernel)
    if dims == 1:  # a 1-D conv is a 2-D conv of height 1
        x, kernel = x.unsqueeze(2), (1, *kernel)
        stride, padding, dilation = ((1, *_per_dim(v, 1)) for v in (layer.stride, (0,), layer.dilation))
        padding = (0, *_per_dim(layer.padding, 1))
    elif dims == 2:
        stride, padding, dilation = (_per_dim(v, 2) for v in (layer.stride, layer.padding, layer.dilation))
    else:
        return None
    cols = F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)  # (n, C * k, L)
    n, width, positions = cols.shape
    groups = layer.groups
    cols = cols.reshape(n, groups, width // groups, positions).permute(1, 0, 3, 2)
    return cols.reshape(groups, n * positions, width // groups)


#: The most recent second moment, by (inputs digest, layer, weight shape).
_LAST_MOMENT: dict[str, tuple[torch.Tensor, int] | None] = {}


def second_moment(layer: LayerSpec, inputs: np.ndarray, weight_shape: tuple[int, ...]
                  ) -> tuple[torch.Tensor, int] | None:
    """``(G, rows)``: ``G = E[x x^T]`` per group ``(groups, d, d)`` over every output position of every
    sample (float32 result, float64 accumulation), or None when the op has no patch view."""
    key = json.dumps([array_digest(inputs), layer.key(), list(weight_shape)], sort_keys=True)
    if key not in _LAST_MOMENT:
        _LAST_MOMENT.clear()
        _LAST_MOMENT[key] = _second_moment(layer, inputs, weight_shape)
    return _LAST_MOMENT[key]


def _second_moment(layer: LayerSpec, inputs: np.ndarray, weight_shape: tuple[int, ...]
                   ) -> tuple[torch.Tensor, int] | None:
    kernel = tuple(weight_shape[2:]) if layer.kind in (OpKind.CONV, OpKind.DEPTHWISE_CONV) else ()
    per_sample = int(np.prod(inputs.shape[1:])) * 4 * max(int(np.prod(kernel)) if kernel else 1, 1)
    chunk = max(1, CHUNK_BYTES // max(per_sample, 1))
    total: torch.Tensor | None = None
    rows = 0
    for start in range(0, len(inputs), chunk):
        x = torch.as_tensor(np.ascontiguousarray(inputs[start:start + chunk], np.float32))
        patches = patch_rows(layer, x, kernel)
        if patches is None:
            return None
        part = torch.bmm(patches.transpose(1, 2), patches).double()  # float32 products, float64 sums
        total = part if total is None else total + part
        rows += patches.shape[1]
    if total is None:
        return None
    return (total / rows).float(), rows


def first_moment(layer: LayerSpec, inputs: np.ndarray, weight_shape: tuple[int, ...]) -> np.ndarray | None:
    """``E[x]`` per group ``(groups, d)``: the mean input patch over every output position of every sample
    (padding zeros included, as the op sees them; float64), or None when the op has no patch view."""
    kernel = tuple(weight_shape[2:]) if layer.kind in (OpKind.CONV, OpKind.DEPTHWISE_CONV) else ()
    total: torch.Tensor | None = None
    rows, chunk = 0, _chunk(inputs, kernel)
    for start in range(0, len(inputs), chunk):
        x = torch.as_tensor(np.ascontiguousarray(inputs[start:start + chunk], np.float32))
        patches = patch_rows(layer, x, kernel)
        if patches is None:
            return None
        part = patches.double().sum(dim=1)
        total = part if total is None else total + part
        rows += patches.shape[1]
    if total is None:
        return None
    mean: np.ndarray = (total / rows).numpy()
    return mean


def _chunk(inputs: np.ndarray, kernel: tuple[int, ...]) -> int:
    """Samples whose unfolded patches fit in :data:`CHUNK_BYTES`."""
    per_sample = int(np.prod(inputs.shape[1:])) * 4 * max(int(np.prod(kernel)) if kernel else 1, 1)
    return max(1, CHUNK_BYTES // max(per_sample, 1))


def layer_moment(kind: str, layer: LayerSpec, inputs: np.ndarray, weight_shape: tuple[int, ...]
                 ) -> np.ndarray | None:
    """The ``mean`` (``(groups, d)``, :func:`first_moment`) or ``gram`` (``(groups, d, d)``,
    :func:`second_moment`) of a layer's inputs as numpy, for backends without torch of their own
    (:data:`mixq.backends.MOMENTS`); None when the op has no patch view."""
    if kind == "mean":
        return first_moment(layer, inputs, weight_shape)
    moment = second_moment(layer, inputs, weight_shape)
    return None if moment is None else moment[0].double().numpy()


class _QuadraticForm(torch.autograd.Function):
    """``sum(D G * D)`` for symmetric ``G``, with the gradient ``2 D G`` from the one product the value
    needs (autograd would compute two more ``D``-by-``G`` products: three times the work on a 1152-wide layer)."""

    @staticmethod
    def forward(ctx: Any, delta: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
        product = torch.bmm(delta, gram)
        ctx.save_for_backward(product)
        return (product * delta).sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (product,) = ctx.saved_tensors
        return 2.0 * grad * product, None


def _grouped(layer: LayerSpec, delta: torch.Tensor, groups: int) -> torch.Tensor:
    """A weight change as ``(groups, out / groups, d)`` rows matching :func:`patch_rows`."""
    if layer.kind is OpKind.MATMUL:
        delta = delta.T  # (in, out) -> (out, in)
    out = delta.shape[0]
    return delta.reshape(groups, out // groups, -1)


def objective(layer: LayerSpec, weight: np.ndarray, inputs: np.ndarray, targets: np.ndarray | None,
              batch_size: int, rng: np.random.Generator,
              forward: Callable[[LayerSpec, torch.Tensor, torch.Tensor], torch.Tensor]) -> Objective:
    """The reconstruction loss of ``layer`` on ``inputs``: exact over all positions via the second moment
    when that is cheaper than a batch's forward pass, else on seeded batches of ``batch_size`` samples
    through ``forward`` (the op itself), against ``targets`` or the float layer's outputs."""
    w = torch.tensor(np.asarray(weight, np.float32))  # a copy: the weight may be a read-only view
    batch = min(batch_size, len(inputs))
    if layer.kind in (OpKind.CONV, OpKind.DEPTHWISE_CONV):
        fan_in, positions = int(np.prod(weight.shape[1:])), int(np.prod(inputs.shape[2:]))
    else:
        fan_in = weight.shape[0] if layer.kind is OpKind.MATMUL else weight.shape[1]
        positions = int(np.prod(inputs.shape[1:-1]))
    if targets is None and fan_in < batch * positions:
        moment = second_moment(layer, inputs, tuple(weight.shape))
        if moment is not None:
            gram, _ = moment
            out_channels = weight.shape[1] if layer.kind is OpKind.MATMUL else weight.shape[0]

            def gram_loss(w_soft: torch.Tensor) -> torch.Tensor:
                delta = _grouped(layer, w_soft - w, gram.shape[0])
                loss: torch.Tensor = _QuadraticForm.apply(delta, gram)
                return loss / out_channels

            return gram_loss
    x_all = torch.as_tensor(np.ascontiguousarray(inputs, np.float32))
    with torch.no_grad():
        y_all = forward(layer, x_all, w) if targets is None else torch.as_tensor(
            np.ascontiguousarray(targets, np.float32))
    order, position = rng.permutation(len(x_all)), 0

    def batch_loss(w_soft: torch.Tensor) -> torch.Tensor:
        nonlocal order, position
        if position + batch > len(x_all):
            order, position = rng.permutation(len(x_all)), 0
        index = torch.as_tensor(order[position:position + batch])
        position += batch
        return F.mse_loss(forward(layer, x_all[index], w_soft), y_all[index])

    return batch_loss


__all__ = ["CHUNK_BYTES", "Objective", "first_moment", "layer_moment", "objective", "patch_rows", "second_moment"]
