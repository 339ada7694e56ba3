"""CIFAR ResNets: architecture, traceability and the real checkpoints' accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mixq.data import load_data
from mixq.errors import UnsupportedModelError
from mixq.backends.torch.zoo.cifar_resnet import PREPROCESS, PadShortcut, resnet20, resnet32, resnet44, resnet56


def weights(shared_data: Path, name: str) -> Path:
    path = shared_data / "cifar10-resnets" / name
    if not path.is_file():
        pytest.skip(f"{path} not present (benchmark data lives in ../shared)")
    return path


def top1(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        logits = torch.cat([model(torch.from_numpy(x[i:i + 250])) for i in range(0, len(x), 250)])
    return float((logits.argmax(1).numpy() == y).mean())


def test_architecture_and_names() -> None:
    model = resnet20()
    assert not model.training
    assert sum(p.numel() for p in model.parameters()) == 269_722  # the published 0.27 M
    names = dict(model.named_modules())
    for name in ("conv1", "bn1", "layer1.0.conv1", "layer2.2.bn2", "layer3.0.conv2", "linear"):
        assert name in names
    assert isinstance(names["layer2.0.shortcut"], PadShortcut)
    assert isinstance(names["layer1.0.shortcut"], torch.nn.Identity)
    blocks = {f: len(f().layer1) for f in (resnet20, resnet32, resnet44, resnet56)}
    assert list(blocks.values()) == [3, 5, 7, 9]
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_option_a_shortcut_subsamples_and_zero_pads() -> None:
    x = torch.arange(2 * 4 * 4 * 4, dtype=torch.float32).reshape(2, 4, 4, 4)
    out = PadShortcut(2)(x)
    assert out.shape == (2, 8, 2, 2)
    assert torch.equal(out[:, 2:6], x[:, :, ::2, ::2])
    assert out[:, :2].abs().sum() == 0 and out[:, 6:].abs().sum() == 0


def test_fx_traceable() -> None:
    model = resnet20()
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(traced(x), model(x))
    assert any(node.target is torch.nn.functional.pad for node in traced.graph.nodes)


def test_preprocess_constant() -> None:
    assert PREPROCESS.mean == (0.485, 0.456, 0.406) and PREPROCESS.std == (0.229, 0.224, 0.225)
    assert PREPROCESS.resize is None and PREPROCESS.crop is None


@pytest.mark.slow
def test_resnet20_checkpoint_accuracy(shared_data: Path) -> None:
    model = resnet20(weights(shared_data, "resnet20-12fca82f.th"))
    data = load_data(shared_data / "cifar10-test.npz", PREPROCESS, limit=1000)
    assert data.labels is not None
    accuracy = top1(model, data.load(0, 1000), data.labels)
    assert 0.90 <= accuracy <= 0.93  # measured 0.913 (91.73 % on all 10,000)


@pytest.mark.slow
def test_resnet56_checkpoint_loads(shared_data: Path) -> None:
    model = resnet56(weights(shared_data, "resnet56-4bfd9763.th"))
    data = load_data(shared_data / "cifar10-test.npz", PREPROCESS, limit=250)
    assert data.labels is not None
    assert top1(model, data.load(0, 250), data.labels) >= 0.88  # 93.4 % on all 10,000


def test_bad_weights(tmp_path: Path, shared_data: Path) -> None:
    with pytest.raises(UnsupportedModelError, match="does not exist"):
        resnet20(tmp_path / "missing.th")
    (tmp_path / "junk.th").write_bytes(b"not a checkpoint")
    with pytest.raises(UnsupportedModelError, match="cannot read weights junk.th"):
        resnet20(tmp_path / "junk.th")
    with pytest.raises(UnsupportedModelError, match="another depth"):
        resnet20(weights(shared_data, "resnet56-4bfd9763.th"))
