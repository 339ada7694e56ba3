"""Tiny deterministic torch models with known structure, for tests of tracing, grouping and search.

Every model is built under a seeded, forked RNG (the global RNG is left as it was), takes NCHW input of
``INPUT_SHAPE`` and returns logits ``(batch, NUM_CLASSES)``. Each one exercises one graph pattern the
backend must get right; ``outlier_net`` gives a search a known answer: one layer that must keep more bits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

INPUT_SHAPE = (3, 16, 16)
"""(C, H, W) of one input sample of every model here."""
NUM_CLASSES = 10
OUTLIER_SCALE = 50.0
"""How much larger than the rest the outlier weights or activations of ``outlier_net`` are."""


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Deterministic random numbers inside, the caller's RNG state restored after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def init_weights(model: nn.Module) -> None:
    """He-normal weights and small random biases (call inside ``seeded``).

    PyTorch's default init shrinks the signal layer after layer, so a random net answers nearly the
    same for every input; with this one the logits depend on the input and argmax agreement means
    something.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.normal_(module.bias, std=0.1)


class _Head(nn.Module):
    """Average pooling to 2x2 (global pooling would average away most of what differs between
    images) then a Linear classifier without bias (so the logits are not one constant)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(channels * 4, NUM_CLASSES, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))


class TinyConvNet(nn.Module):
    """conv-relu-conv-relu-pool-linear: the smallest model with three quantizable layers."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        with seeded(seed):
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
            self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
            self.head = _Head(16)
            init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.conv2(F.relu(self.conv1(x)))))


class BatchNormNet(nn.Module):
    """conv-BN-relu twice, then the head, with running statistics gathered on images unlike N(0, 1) noise
    (positive pixels, one bright channel), as a trained model's are: data-free calibration has a known target."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        with seeded(seed):
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(8, momentum=None)
            self.conv2 = nn.Conv2d(8, 16, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(16, momentum=None)
            self.head = _Head(16)
            init_weights(self)
            images = torch.from_numpy(random_images(64, seed=seed)).abs() * 0.5
            images[:, 0] += 1.0
            self.train()
            with torch.no_grad():  # cumulative averages over these batches (momentum=None)
                for batch in images.split(16):
                    self(batch)
            self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))))


class ResidualNet(nn.Module):
    """A residual add: ``relu(conv3(relu(conv2(h))) + h)`` with ``h = relu(conv1(x))``."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        with seeded(seed):
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
            self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
            self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
            self.head = _Head(8)
            init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x))
        return self.head(F.relu(self.conv3(F.relu(self.conv2(h))) + h))


class DepthwiseNet(nn.Module):
    """Depthwise-separable block (3x3 depthwise with ``groups=channels``, then 1x1 pointwise)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        with seeded(seed):
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
            self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.pointwise = nn.Conv2d(8, 16, 1)
            self.head = _Head(16)
            init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.depthwise(F.relu(self.conv1(x))))
        return self.head(F.relu(self.pointwise(h)))


class SharedInputNet(nn.Module):
    """``branch_a`` and ``branch_b`` read the same tensor, so they share one input quantizer (one group)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        with seeded(seed):
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
            self.branch_a = nn.Conv2d(8, 8, 3, padding=1)
            self.branch_b = nn.Conv2d(8, 8, 1)
            self.head = _Head(16)
            init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x))
        return self.head(F.relu(torch.cat([self.branch_a(h), self.branch_b(h)], dim=1)))


class ReusedModuleNet(nn.Module):
    """One ``nn.Conv2d`` (``shared``) called twice: one weight tensor, two call sites."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        with seeded(seed):
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
            self.shared = nn.Conv2d(8, 8, 3, padding=1)
            self.head = _Head(8)
            init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x))
        h = F.relu(self.shared(h))
        return self.head(F.relu(self.shared(h)))


class FunctionalConvNet(nn.Module):
    """``F.conv2d`` with ``nn.Parameter`` weight and bias instead of an ``nn.Conv2d`` module."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        with seeded(seed):
            self.weight = nn.Parameter(torch.empty(8, 3, 3, 3))
            self.bias = nn.Parameter(torch.empty(8))
            self.head = _Head(8)
            init_weights(self)
            with torch.no_grad():
                nn.init.kaiming_normal_(self.weight, nonlinearity="relu")
                nn.init.normal_(self.bias, std=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(F.conv2d(x, self.weight, self.bias, padding=1)))


class ChannelOffset(nn.Module):
    """Adds a constant to one channel: an activation outlier (the next layer gives it zero weights)."""

    def __init__(self, channels: int, value: float, channel: int = 0) -> None:
        super().__init__()
        offset = torch.zeros(1, channels, 1, 1)
        offset[0, channel] = value
        self.offset: torch.Tensor
        self.register_buffer("offset", offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.offset


OutlierKind = Literal["weights", "activations"]
OUTLIER_CHANNELS = (3, 8, 16, 16, 16)


class OutlierNet(nn.Module):
    """Four unpadded 3x3 convs (``conv0`` .. ``conv3``) with ReLU, then pool and ``fc``.

    With ``layer_index`` set, that conv gets an outlier that leaves the float function unchanged but
    ruins its low-bit quantization:

    - ``"weights"``: the conv reads one extra, always-zero input channel (``F.pad`` of the channels)
      whose weights are ``OUTLIER_SCALE`` times the largest other weight of each output channel, so a
      per-channel (or per-tensor) weight scale leaves no resolution for the real weights;
    - ``"activations"``: the conv reads one extra channel holding a constant ``OUTLIER_SCALE`` times the
      largest input activation, with all-zero weights, so the input range is dominated by the
      outlier while no weight ever multiplies it (quantizing the weights cannot break the identity).
    """

    def __init__(self, seed: int = 0, layer_index: int | None = None, kind: OutlierKind = "weights") -> None:
        super().__init__()
        if layer_index is not None and not 0 <= layer_index < 4:
            raise ValueError(f"layer_index must be 0..3 (conv0 .. conv3), got {layer_index}")
        if kind not in ("weights", "activations"):
            raise ValueError(f"kind must be 'weights' or 'activations', got {kind!r}")
        self.layer_index, self.kind = layer_index, kind
        with seeded(seed):
            self.conv0, self.conv1, self.conv2, self.conv3 = (
                nn.Conv2d(OUTLIER_CHANNELS[i], OUTLIER_CHANNELS[i + 1], 3) for i in range(4))
            self.head = _Head(OUTLIER_CHANNELS[-1])
            init_weights(self)
        self.offset: nn.Module = nn.Identity()
        if layer_index is not None:
            with torch.no_grad():
                self._add_outlier(layer_index, kind)

    @property
    def outlier_layer(self) -> str | None:
        """The name of the conv with the outlier."""
        return None if self.layer_index is None else f"conv{self.layer_index}"

    def _add_outlier(self, index: int, kind: OutlierKind) -> None:
        conv: nn.Conv2d = getattr(self, f"conv{index}")
        wider = nn.Conv2d(conv.in_channels + 1, conv.out_channels, 3)
        wider.weight.zero_()
        wider.weight[:, :-1] = conv.weight
        if wider.bias is not None and conv.bias is not None:
            wider.bias.copy_(conv.bias)
        if kind == "weights":
            largest = conv.weight.abs().amax(dim=(1, 2, 3))
            signs = torch.where(torch.arange(conv.out_channels) % 2 == 0, 1.0, -1.0)
            wider.weight[:, -1, 1, 1] = OUTLIER_SCALE * largest * signs
        else:
            sample = torch.from_numpy(random_images(8, INPUT_SHAPE, seed=1))
            value = OUTLIER_SCALE * float(self._features(sample, stop=index).abs().max())
            self.offset = ChannelOffset(conv.in_channels + 1, value, channel=conv.in_channels)
        setattr(self, f"conv{index}", wider)

    def _features(self, x: torch.Tensor, stop: int = 4) -> torch.Tensor:
        """The input of ``conv{stop}`` (or of the head for ``stop=4``)."""
        for index in range(stop):
            if index == self.layer_index:
                x = self.offset(F.pad(x, (0, 0, 0, 0, 0, 1)))
            x = F.relu(getattr(self, f"conv{index}")(x))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._features(x))


def outlier_net(layer_index: int, kind: OutlierKind = "weights", seed: int = 0) -> OutlierNet:
    """An ``OutlierNet`` whose ``conv{layer_index}`` is ruined by low-bit quantization of its ``kind``.

    Its float outputs equal those of ``OutlierNet(seed)`` (no outlier) up to float rounding.
    """
    return OutlierNet(seed, layer_index, kind).eval()


def random_images(n: int, shape: tuple[int, ...] = INPUT_SHAPE, seed: int = 0) -> np.ndarray:
    """Smooth random float32 images ``(n, *shape)``: bilinearly upsampled coarse Gaussian noise.

    Roughly zero mean and unit scale, like normalized photos; neighbouring pixels are correlated as in
    real images, which white noise is not (and which ranges and outliers depend on).
    """
    channels, height, width = shape
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((n, channels, max(2, height // 4), max(2, width // 4)))
    rows, cols = _interpolation(coarse.shape[2], height), _interpolation(coarse.shape[3], width)
    return np.einsum("hk,nckl,wl->nchw", rows, coarse, cols).astype(np.float32)


def _interpolation(source: int, target: int) -> np.ndarray:
    """``(target, source)`` matrix of linear interpolation weights (corners aligned)."""
    position = np.linspace(0.0, source - 1, target)
    low = np.minimum(position.astype(int), source - 2)
    frac = position - low
    matrix = np.zeros((target, source))
    matrix[np.arange(target), low] = 1.0 - frac
    matrix[np.arange(target), low + 1] = frac
    return matrix
