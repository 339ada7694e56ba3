"""ZeroQ's distilled data: the BN inputs' statistics move to the running ones, deterministically."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mixq.backends.torch.backend import TorchBackend
from mixq.backends.torch.distill import STAGE, batchnorms, distill
from mixq.backends.torch.testing import INPUT_SHAPE, BatchNormNet, TinyConvNet
from mixq.core.synthetic import SyntheticSettings
from mixq.errors import CapabilityError

SETTINGS = SyntheticSettings(iterations=30, lr=0.2)


def distances(model: nn.Module, x: np.ndarray) -> list[tuple[float, float]]:
    """Per BN layer: distance of its input's batch mean and std to the running mean and std (computed here,
    independently of the loss the optimiser uses)."""
    found: list[tuple[float, float]] = []

    def hook(module: nn.BatchNorm2d, inputs: tuple[torch.Tensor, ...]) -> None:
        value = inputs[0]
        mean, std = value.mean(dim=(0, 2, 3)), value.std(dim=(0, 2, 3), unbiased=False)
        running_std = torch.sqrt(module.running_var)
        found.append((float((mean - module.running_mean).norm()), float((std - running_std).norm())))

    handles = [layer.register_forward_pre_hook(hook) for layer in batchnorms(model)]
    with torch.no_grad():
        model(torch.from_numpy(x))
    for handle in handles:
        handle.remove()
    return found


def test_synthetic_statistics_are_much_closer_than_the_noise_they_start_from() -> None:
    model = BatchNormNet()
    noise = torch.randn((32, *INPUT_SHAPE), generator=torch.Generator().manual_seed(0)).numpy()
    synthetic = distill(model, INPUT_SHAPE, 32, SETTINGS, seed=0)
    before, after = distances(model, noise), distances(model, synthetic)
    assert len(before) == len(after) == 2
    for (mean_before, std_before), (mean_after, std_after) in zip(before, after):
        assert mean_after < 0.2 * mean_before and std_after < 0.2 * std_before, (before, after)
    assert synthetic.shape == (32, *INPUT_SHAPE) and synthetic.dtype == np.float32


def test_deterministic_given_the_seed_and_the_users_model_untouched() -> None:
    model = BatchNormNet()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    first = distill(model, INPUT_SHAPE, 8, SyntheticSettings(iterations=5), seed=3)
    again = distill(model, INPUT_SHAPE, 8, SyntheticSettings(iterations=5), seed=3)
    other = distill(model, INPUT_SHAPE, 8, SyntheticSettings(iterations=5), seed=4)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())


def test_progress_reports_the_synthetic_stage() -> None:
    calls: list[tuple[str, int, int]] = []
    TorchBackend().synthesize_calibration(BatchNormNet(), INPUT_SHAPE, 4, SyntheticSettings(iterations=3), 0,
                                          lambda *call: calls.append(call))
    assert calls[0] == (STAGE, 0, 3) and calls[-1] == (STAGE, 3, 3)


def test_a_model_without_batchnorm_is_refused() -> None:
    with pytest.raises(CapabilityError, match="no BatchNorm layer with running statistics: give real images"):
        distill(TinyConvNet(), INPUT_SHAPE, 4, SETTINGS, seed=0)


def test_a_batchnorm_the_forward_never_runs_is_refused() -> None:
    model = TinyConvNet()
    model.unused = nn.BatchNorm2d(3)  # type: ignore[assignment]
    with pytest.raises(CapabilityError, match="runs none of its BatchNorm layers"):
        distill(model, INPUT_SHAPE, 4, SETTINGS, seed=0)
