"""The layers' input moments of a captured torch model, for bias correction and the output-aware weight range.

One float pass on at most :data:`MAX_SAMPLES` calibration samples (as the ONNX backend gathers them) keeps the
input of every ``nn.Conv1d``/``nn.Conv2d`` (zero padding given as numbers) and ``nn.Linear`` whose weight no
other op shares; their means are computed at once, second moments (the output range only) per weight on
first use (:func:`mixq.backends.torch.reconstruction_loss.second_moment` keeps the last). Other ops (functional
calls, transposed convs, shared weights) keep their bias and MSE weight ranges (logged).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from mixq.backends.torch.executor import GraphExecutor
from mixq.backends.torch.reconstruction_loss import first_moment, second_moment
from mixq.backends.torch.trace import OpSite
from mixq.core.graph import OpKind
from mixq.core.rounding import LayerSpec

logger = logging.getLogger(__name__)

#: Calibration samples whose layer inputs the moments are computed on (as the ONNX backend's AdaRound).
MAX_SAMPLES = 64


def module_spec(module: nn.Module) -> tuple[LayerSpec | None, str]:
    """The module as a layer with a patch view, or None and why not."""
    if isinstance(module, nn.Linear):
        return LayerSpec(OpKind.LINEAR), ""
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        if isinstance(module.padding, str) and module.padding != "valid":
            return None, f"padding {module.padding!r}"
        if module.padding_mode != "zeros":
            return None, f"padding mode {module.padding_mode}"
        dims = len(module.kernel_size)
        padding = (0,) * dims if isinstance(module.padding, str) else tuple(module.padding)
        kind = OpKind.DEPTHWISE_CONV if module.groups > 1 and module.weight.shape[1] == 1 else OpKind.CONV
        return LayerSpec(kind, stride=tuple(module.stride), padding=padding, dilation=tuple(module.dilation),
                         groups=module.groups), ""
    return None, f"{type(module).__name__} has no patch view"


class TorchMoments:
    """:class:`mixq.core.bias_correction.LayerMoments` of a captured model's layers, plus their biases."""

    def __init__(self, executor: GraphExecutor, sites: Sequence[OpSite], weights: dict[str, np.ndarray],
                 calibration: np.ndarray, keep_inputs: bool) -> None:
        users: dict[str, int] = {}
        for site in sites:
            if site.weight_key is not None:
                users[site.weight_key] = users.get(site.weight_key, 0) + 1
        self.specs: dict[str, LayerSpec] = {}
        self.biases: dict[str, np.ndarray | None] = {}
        tensors: dict[str, str] = {}
        for site in sites:
            key = site.weight_key
            if key is None or site.weight_arg is not None:
                continue
            module = executor.modules.get(str(executor.by_name[site.node].target))
            spec, reason = module_spec(module) if module is not None else (None, "not a module")
            if users[key] != 1:
                spec, reason = None, f"its weight {key} is shared"
            if spec is None:
                logger.info("layer moments: %s is left out (%s)", site.node, reason)
                continue
            self.specs[key] = spec
            bias = getattr(module, "bias", None)
            self.biases[key] = None if bias is None else bias.detach().cpu().numpy().astype(np.float32)
            tensors[key] = site.op.inputs[site.act_args[0]]
        inputs = _gather(executor, set(tensors.values()), calibration[:MAX_SAMPLES])
        self.shapes = {key: tuple(weights[key].shape) for key in self.specs}
        self._inputs = {key: inputs[name] for key, name in tensors.items()} if keep_inputs else {}
        self._means = {key: first_moment(self.specs[key], inputs[name], self.shapes[key])
                       for key, name in tensors.items()}

    def mean(self, key: str) -> np.ndarray | None:
        return self._means.get(key)

    def gram(self, key: str) -> np.ndarray | None:
        if key not in self._inputs:
            return None
        moment = second_moment(self.specs[key], self._inputs[key], self.shapes[key])
        return None if moment is None else moment[0].double().numpy()


def _gather(executor: GraphExecutor, tensors: set[str], samples: np.ndarray) -> dict[str, np.ndarray]:
    """The float model's values of ``tensors`` on ``samples`` (samples first, float32)."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in tensors}

    def observe(name: str, value: torch.Tensor) -> None:
        parts[name].append(value.detach().float().cpu().numpy())

    with torch.inference_mode():
        for start in range(0, len(samples), 16):
            batch = np.ascontiguousarray(samples[start:start + 16], np.float32)
            executor.run(torch.from_numpy(batch), observe=(tensors, observe))
    return {name: np.concatenate(values) for name, values in parts.items() if values}


__all__ = ["MAX_SAMPLES", "TorchMoments", "module_spec"]
