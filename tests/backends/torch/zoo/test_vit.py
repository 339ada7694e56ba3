"""The hand-written ViT: deterministic, fx-traceable, attention as explicit matmuls."""

from __future__ import annotations

import operator

import pytest
import torch
from torch import nn

from mixq.backends.torch.testing import random_images
from mixq.backends.torch.zoo.vit import ViTConfig, tiny_vit


def test_shape_and_determinism() -> None:
    state = torch.get_rng_state()
    model = tiny_vit()
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is untouched
    x = torch.from_numpy(random_images(8, (3, 32, 32), seed=3))
    with torch.no_grad():
        out = model(x)
        assert out.shape == (8, 10)
        torch.testing.assert_close(tiny_vit()(x), out, rtol=0, atol=0)
        assert not torch.allclose(tiny_vit(seed=1)(x), out)
    assert out.argmax(1).unique().numel() >= 2  # the output depends on the input
    assert not model.training


def test_layers_are_separate_linears() -> None:
    model = tiny_vit(depth=3, dim=32, heads=2, num_classes=5)
    names = {name for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    for i in range(3):
        assert {f"blocks.{i}.attn.{p}" for p in ("q", "k", "v", "proj")} <= names
        assert {f"blocks.{i}.mlp.fc1", f"blocks.{i}.mlp.fc2"} <= names
    assert "head" in names and isinstance(model.patch_embed, nn.Conv2d)
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 5)


def test_fx_trace_matches_and_exposes_matmuls() -> None:
    model = tiny_vit(image_size=16, patch=4, depth=2)
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))
    matmuls = [n for n in traced.graph.nodes if n.op == "call_function" and n.target is operator.matmul]
    assert len(matmuls) == 2 * 2  # q @ k^T and attn @ v per block
    softmax = [n for n in traced.graph.nodes if n.op == "call_method" and n.target == "softmax"]
    assert len(softmax) == 2


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="multiple of patch"):
        ViTConfig(image_size=30, patch=4)
    with pytest.raises(ValueError, match="multiple of heads"):
        ViTConfig(dim=30, heads=4)
    assert ViTConfig().tokens == 65
