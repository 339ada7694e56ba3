"""Model factories for the benchmarks: real checkpoints from ../shared (not shipped with mixq).

Used as MODEL specs, e.g. ``mixq search bench/models.py:resnet20 --data ../shared/data/cifar10-test.npz``.
"""

from __future__ import annotations

from pathlib import Path

from mixq.backends.torch.zoo.cifar_resnet import PREPROCESS, resnet20 as _resnet20, resnet56 as _resnet56

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def resnet20():
    return _resnet20(SHARED / "cifar10-resnets" / "resnet20-12fca82f.th"), PREPROCESS


def resnet56():
    return _resnet56(SHARED / "cifar10-resnets" / "resnet56-4bfd9763.th"), PREPROCESS


def resnet20_raw():
    """ResNet20 without preprocessing: for data already preprocessed (``bench/out/resnet20-*.npz``)."""
    return _resnet20(SHARED / "cifar10-resnets" / "resnet20-12fca82f.th")
