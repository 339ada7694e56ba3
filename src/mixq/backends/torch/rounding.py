"""AdaRound on a torch model's weights (``QuantScheme.weight_rounding == "adaround"``).

The torch twin of :mod:`mixq.backends.onnx.rounding`: at prepare time the captured float graph runs once
more on (at most :data:`~mixq.backends.rounder.MAX_SAMPLES`) calibration samples and keeps each roundable
site's activation input; the shared :class:`~mixq.backends.rounder.AdaRounder` then rounds the weights the
simulation uses (after batch-norm folding) through the core's weight quantizer, so the simulation,
sub-models and the export all see the same integers. Results are cached on disk by content.

Sites AdaRound does not handle keep nearest rounding (logged once): transposed convs, convs with string
padding ``"same"`` or a ``padding_mode`` other than zeros, ops with arguments computed at run time, a
weight shared by several call sites.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from mixq.backends.rounder import BATCH, MAX_SAMPLES, AdaRounder, gather_passes
from mixq.backends.torch.executor import GraphExecutor, Observer
from mixq.backends.torch.trace import OpSite
from mixq.core.graph import OpKind
from mixq.core.rounding import AdaRoundConfig, LayerSpec
from mixq.errors import internal

logger = logging.getLogger(__name__)

_CONV_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: Functional convs and linears AdaRound rounds; every one takes ``(input, weight, bias, stride, padding,
#: dilation, groups)`` (a linear stops at the bias).
_CONV_FUNCTIONS: set[Any] = {torch.nn.functional.conv1d, torch.nn.functional.conv2d, torch.nn.functional.conv3d,
                             torch.conv1d, torch.conv2d, torch.conv3d, torch.ops.aten.conv1d.default,
                             torch.ops.aten.conv2d.default, torch.ops.aten.conv3d.default}
_LINEAR_FUNCTIONS: set[Any] = {torch.nn.functional.linear, torch.ops.aten.linear.default}
_CONV_ARGS = ("stride", "padding", "dilation", "groups")
_CONV_DEFAULTS: dict[str, Any] = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1}


def _per_dim(value: Any, dims: int) -> tuple[int, ...] | None:
    """An int or a sequence of ints as one int per spatial dim; None if it is anything else."""
    if isinstance(value, int):
        return (value,) * dims
    if isinstance(value, (tuple, list)) and len(value) == dims and all(isinstance(v, int) for v in value):
        return tuple(value)
    return None


def _conv_spec(weight: np.ndarray, stride: Any, padding: Any, dilation: Any,
               groups: Any) -> tuple[LayerSpec | None, str]:
    """Mirrors the ONNX side's Conv spec (:func:`mixq.backends.onnx.rounding.layer_spec`) so both backends
    give the same layer, and so the same integers, for the same conv."""
    dims = weight.ndim - 2
    if padding == "valid":
        padding = 0
    if isinstance(padding, str):
        return None, f"padding {padding!r}"
    strides, pads, dilations = _per_dim(stride, dims), _per_dim(padding, dims), _per_dim(dilation, dims)
    if strides is None or pads is None or dilations is None or not isinstance(groups, int):
        return None, "stride, padding, dilation or groups computed at run time"
    kind = OpKind.DEPTHWISE_CONV if groups > 1 and weight.shape[1] == 1 else OpKind.CONV
    return LayerSpec(kind, stride=strides, padding=pads, dilation=dilations, groups=groups), ""


def layer_spec(node: fx.Node, modules: dict[str, nn.Module], weight: np.ndarray) -> tuple[LayerSpec | None, str]:
    """The node's op as AdaRound's layer, or None and why nearest rounding is kept.

    The bias is left out, as on the ONNX side: it adds the same to the float and the rounded layer's
    output, so it does not change what AdaRound minimises."""
    if node.op == "call_module":
        module = modules[str(node.target)]
        if isinstance(module, nn.Linear):
            return LayerSpec(OpKind.LINEAR), ""
        if isinstance(module, _CONV_MODULES):
            if module.padding_mode != "zeros":
                return None, f"padding_mode {module.padding_mode!r}"
            return _conv_spec(weight, module.stride, module.padding, module.dilation, module.groups)
        return None, f"{type(module).__name__} is not rounded by AdaRound"
    if node.op == "call_function" and node.target in _LINEAR_FUNCTIONS:
        return LayerSpec(OpKind.LINEAR), ""
    if node.op == "call_function" and node.target in _CONV_FUNCTIONS:
        values = dict(_CONV_DEFAULTS)
        values.update(zip(_CONV_ARGS, node.args[3:]))
        values.update({k: v for k, v in node.kwargs.items() if k in _CONV_ARGS})
        return _conv_spec(weight, *(values[name] for name in _CONV_ARGS))
    return None, f"{node.target} is not rounded by AdaRound"


def collect_inputs(executor: GraphExecutor, sizes: dict[str, int], calibration: np.ndarray) -> dict[str, np.ndarray]:
    """The float graph's values of the nodes ``sizes`` names (bytes per sample each) on ``calibration``
    (samples first), in batches of :data:`~mixq.backends.rounder.BATCH` and passes of at most
    :data:`~mixq.backends.rounder.PASS_BYTES` of gathered values."""
    count = len(calibration)
    out: dict[str, np.ndarray] = {}
    for names in gather_passes(sizes, count):
        parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
        observer = (names, _appender(parts))
        with torch.inference_mode():
            for start in range(0, count, BATCH):
                batch = np.ascontiguousarray(calibration[start:start + BATCH], dtype=np.float32)
                executor.run(torch.from_numpy(batch), observe=observer)
        for name in names:
            if not parts[name]:
                raise internal(f"AdaRound: the float run never computed {name}")
            out[name] = np.concatenate(parts[name])
    return out


def _appender(parts: dict[str, list[np.ndarray]]) -> Observer:
    """An observer keeping a numpy copy of every value it sees, by node name (the executor frees tensors)."""

    def observe(name: str, value: torch.Tensor) -> None:
        parts[name].append(value.detach().float().cpu().numpy().copy())

    return observe


def adarounder(executor: GraphExecutor, sites: Sequence[OpSite], weights: dict[str, np.ndarray],
               axes: dict[str, int], calibration: np.ndarray, config: AdaRoundConfig | None = None,
               seed: int = 0) -> AdaRounder:
    """The AdaRound rounder of ``sites``' weights (as the simulation uses them: BN folded), their layer
    inputs gathered on the first :data:`~mixq.backends.rounder.MAX_SAMPLES` calibration samples."""
    users: dict[str, int] = {}
    for site in sites:
        if site.weight_key is not None:
            users[site.weight_key] = users.get(site.weight_key, 0) + 1
    specs: dict[str, LayerSpec] = {}
    tensors: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for site in _weighted(sites):
        key = site.weight_key
        if key is None:
            continue
        if users[key] != 1:
            logger.info("AdaRound: %s keeps nearest rounding (its weight %s is shared)", site.op.name, key)
            continue
        spec, reason = layer_spec(executor.by_name[site.node], executor.modules, weights[key])
        if spec is None:
            logger.info("AdaRound: %s keeps nearest rounding (%s)", site.op.name, reason)
            continue
        specs[key] = spec
        tensors[key] = site.op.inputs[0]
        sizes[site.op.inputs[0]] = site.op.act_numel * 4
    values = collect_inputs(executor, sizes, calibration[:MAX_SAMPLES])
    inputs = {key: values[name] for key, name in tensors.items()}
    for key, values_of_key in inputs.items():
        if values_of_key.ndim < 2:
            raise internal(f"AdaRound: the input of {key} has no sample axis")
    return AdaRounder(specs, inputs, weights, axes, config, seed=seed)


def _weighted(sites: Iterable[OpSite]) -> list[OpSite]:
    """Sites with a weight and an activation input (an op on a constant input has nothing to reconstruct)."""
    return [site for site in sites if site.weight_key is not None and site.op.inputs]


__all__ = ["adarounder", "collect_inputs", "layer_spec"]
