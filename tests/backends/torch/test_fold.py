"""Batch-norm folding keeps the float function and leaves what it cannot fold alone."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from mixq.backends.torch.fold import fold_batchnorm
from mixq.backends.torch.trace import capture


def _randomize_bn(model: nn.Module) -> nn.Module:
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            channels = module.num_features
            module.running_mean.copy_(torch.randn(channels, generator=generator))
            module.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
            if module.affine:
                module.weight.data.copy_(torch.randn(channels, generator=generator))
                module.bias.data.copy_(torch.randn(channels, generator=generator))
    return model.eval()


class ModuleConvs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))


class FunctionalConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 3, 3, 3))
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.conv2d(x, self.weight, None, 1, 1))


class SharedOutput(nn.Module):
    """The conv's output also feeds a skip: folding the BN would change the skip."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def folded(model: nn.Module, x: torch.Tensor) -> tuple[int, torch.Tensor]:
    gm = capture(copy.deepcopy(model), x)
    count = fold_batchnorm(gm)
    with torch.no_grad():
        return count, gm(x)


def test_module_and_functional_convs_fold_exactly() -> None:
    torch.manual_seed(0)
    for model, expected in ((ModuleConvs(), 2), (FunctionalConv(), 1)):
        model = _randomize_bn(model)
        x = torch.randn(2, 3, 12, 12)
        count, out = folded(model, x)
        with torch.no_grad():
            reference = model(x)
        assert count == expected
        torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-4)


def test_bn_after_a_shared_output_is_not_folded() -> None:
    model = _randomize_bn(SharedOutput())
    x = torch.randn(2, 4, 8, 8)
    count, out = folded(model, x)
    assert count == 0
    with torch.no_grad():
        torch.testing.assert_close(out, model(x))


def test_users_model_keeps_its_batchnorm() -> None:
    model = _randomize_bn(ModuleConvs())
    before = copy.deepcopy(model.state_dict())
    folded(model, torch.randn(1, 3, 12, 12))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
