"""CIFAR-10 ResNets (He et al. 2016, section 4.2) with option-A shortcuts.

Layer names and the shortcut match the public ``pytorch_resnet_cifar10`` checkpoints, so they load
as they are (after stripping ``module.``). The shortcut is a module with a plain forward (no lambda),
so ``torch.fx.symbolic_trace`` sees a strided slice and an ``F.pad``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mixq.data.preprocess import Preprocess
from mixq.errors import UnsupportedModelError

PREPROCESS = Preprocess(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
"""Pixels scaled to [0, 1] then normalized with the ImageNet statistics, as the checkpoints were trained."""


class PadShortcut(nn.Module):
    """Option A: subsample by 2 and zero-pad the new channels (no parameters)."""

    def __init__(self, extra_channels: int) -> None:
        super().__init__()
        self.extra = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.extra, self.extra))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm, plus the shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut: nn.Module = PadShortcut(planes // 4)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2): 16, 32 and 64 channels over three stages of ``n`` blocks each."""

    def __init__(self, blocks_per_stage: int, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, blocks_per_stage, 1)
        self.layer2 = self._stage(16, 32, blocks_per_stage, 2)
        self.layer3 = self._stage(32, 64, blocks_per_stage, 2)
        self.linear = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_planes, planes, stride)]
        layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.linear(out)


def load_checkpoint(model: nn.Module, weights: str | Path) -> None:
    """Load a ``pytorch_resnet_cifar10`` checkpoint (``{"state_dict": {"module.conv1.weight": ...}}``)."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UnsupportedModelError(f"weights file {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors for bad files
        raise UnsupportedModelError(f"cannot read weights {path.name}: {type(exc).__name__}: {exc}") from exc
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise UnsupportedModelError(f"{path.name} holds no state_dict")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    result = model.load_state_dict(state, strict=False)
    missing = [key for key in result.missing_keys if not key.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise UnsupportedModelError(
            f"{path.name} does not fit {type(model).__name__} with {sum(1 for _ in model.parameters())} parameter "
            f"tensors: {len(missing)} missing (e.g. {(missing or ['none'])[0]}), {len(result.unexpected_keys)} "
            f"unexpected (e.g. {(result.unexpected_keys or ['none'])[0]}); is it a checkpoint of another depth?")


def _build(blocks_per_stage: int, weights: str | Path | None) -> CifarResNet:
    model = CifarResNet(blocks_per_stage)
    if weights is not None:
        load_checkpoint(model, weights)
    return model.eval()


def resnet20(weights: str | Path | None = None) -> CifarResNet:
    """ResNet-20 (0.27 M parameters); random init when no weights are given."""
    return _build(3, weights)


def resnet32(weights: str | Path | None = None) -> CifarResNet:
    """ResNet-32."""
    return _build(5, weights)


def resnet44(weights: str | Path | None = None) -> CifarResNet:
    """ResNet-44."""
    return _build(7, weights)


def resnet56(weights: str | Path | None = None) -> CifarResNet:
    """ResNet-56 (0.85 M parameters)."""
    return _build(9, weights)
