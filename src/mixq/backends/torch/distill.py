"""ZeroQ's Distilled Data (Cai et al. 2020): inputs whose batch-norm statistics match the float model's.

Runs on the user's ``nn.Module`` itself (a private copy), before tracing folds the BatchNorms away: the
running mean and variance are the only description of the training data a model carries.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mixq.backends.base import Progress
from mixq.core.synthetic import SyntheticSettings
from mixq.errors import CapabilityError, DataError, UnsupportedModelError

STAGE = "synthetic"
NO_BATCHNORM = ("data-free calibration (--data synthetic) matches the inputs to the model's batch-norm statistics, "
                "and this model has no BatchNorm layer with running statistics: give real images (--data FOLDER "
                "or an .npz)")


def batchnorms(model: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers whose running statistics describe the training data."""
    return [m for m in model.modules()
            if isinstance(m, _BatchNorm) and m.running_mean is not None and m.running_var is not None]


def distill(model: object, shape: tuple[int, ...], samples: int, settings: SyntheticSettings, seed: int,
            progress: Progress | None = None) -> np.ndarray:
    """``samples`` inputs of one-sample ``shape``, optimised from N(0, 1) noise with Adam so that at every
    BatchNorm the per-channel mean and std of its input over the batch match its running statistics
    (loss: sum over layers of ``||mu~ - mu||_2 + ||sigma~ - sigma||_2``). Deterministic given ``seed``."""
    if not isinstance(model, nn.Module):
        raise UnsupportedModelError(f"the torch backend takes an nn.Module, not {type(model).__name__}")
    if samples < 1:
        raise DataError("no calibration samples to synthesise: --num-samples must be at least 1")
    model = copy.deepcopy(model).eval()
    layers = batchnorms(model)
    if not layers:
        raise CapabilityError(NO_BATCHNORM)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((samples, *shape), generator=generator).requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=settings.lr)
    loss_of = _statistics_loss(model, layers)
    for step in range(settings.iterations):
        if progress:
            progress(STAGE, step, settings.iterations)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of(x)
        loss.backward()
        optimizer.step()
    if progress:
        progress(STAGE, settings.iterations, settings.iterations)
    out = x.detach().numpy().astype(np.float32)
    if not np.isfinite(out).all():
        raise DataError("data-free calibration diverged (NaN or Inf in the synthetic inputs): lower the learning "
                        "rate, or give real images (--data FOLDER)")
    return out


def statistics_loss(model: nn.Module, x: torch.Tensor) -> float:
    """The distillation loss of ``x`` on ``model`` (how far its BN inputs are from the running statistics)."""
    model = copy.deepcopy(model).eval()
    layers = batchnorms(model)
    if not layers:
        raise CapabilityError(NO_BATCHNORM)
    with torch.no_grad():
        return float(_statistics_loss(model, layers)(x))


def _statistics_loss(model: nn.Module, layers: list[_BatchNorm]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``loss(x)``: runs ``model`` on ``x`` and sums each BN's distance to its running statistics."""
    seen: list[torch.Tensor] = []

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if not isinstance(module, _BatchNorm) or module.running_mean is None or module.running_var is None:
            return
        value = inputs[0]
        axes = [0, *range(2, value.dim())]  # every axis but the channels
        mean = value.mean(dim=axes)
        std = torch.sqrt(value.var(dim=axes, unbiased=False) + module.eps)
        seen.append(torch.linalg.vector_norm(mean - module.running_mean)
                    + torch.linalg.vector_norm(std - torch.sqrt(module.running_var + module.eps)))

    for layer in layers:
        layer.register_forward_pre_hook(hook)

    def loss(x: torch.Tensor) -> torch.Tensor:
        seen.clear()
        try:
            model(x)
        except Exception as exc:
            raise DataError(f"the model cannot run on synthetic inputs of shape {tuple(x.shape[1:])}: "
                            f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}; give the model's input size "
                            "(--preprocess crop=H,W)") from exc
        if not seen:
            raise CapabilityError(NO_BATCHNORM.replace("has no BatchNorm layer with running statistics",
                                                       "runs none of its BatchNorm layers"))
        return torch.stack(seen).sum()

    return loss
