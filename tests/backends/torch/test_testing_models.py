"""The tiny test models: deterministic, traceable, with the graph patterns and outliers they promise."""

from __future__ import annotations

import operator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from mixq.backends.torch.testing import (
    INPUT_SHAPE,
    NUM_CLASSES,
    OUTLIER_SCALE,
    DepthwiseNet,
    FunctionalConvNet,
    OutlierNet,
    ResidualNet,
    ReusedModuleNet,
    SharedInputNet,
    TinyConvNet,
    outlier_net,
    random_images,
)

MODELS = [TinyConvNet, ResidualNet, DepthwiseNet, SharedInputNet, ReusedModuleNet, FunctionalConvNet, OutlierNet]


def batch(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(random_images(n, INPUT_SHAPE, seed))


@pytest.mark.parametrize("cls", MODELS)
def test_models_are_deterministic_and_traceable(cls: type[nn.Module]) -> None:
    state = torch.get_rng_state()
    model = cls().eval()
    assert torch.equal(torch.get_rng_state(), state)
    x = batch()
    with torch.no_grad():
        out = model(x)
        assert out.shape == (16, NUM_CLASSES)
        torch.testing.assert_close(cls().eval()(x), out, rtol=0, atol=0)
        assert not torch.allclose(cls(seed=1).eval()(x), out)
        torch.testing.assert_close(fx.symbolic_trace(model)(x), out)
    assert out.argmax(1).unique().numel() >= 2  # logits depend on the input


def _consumers(graph: fx.Graph, target: str) -> list[fx.Node]:
    return [n for n in graph.nodes if n.op == "call_module" and n.target == target]


def test_shared_input_branches_read_one_tensor() -> None:
    graph = fx.symbolic_trace(SharedInputNet()).graph
    (a,), (b,) = _consumers(graph, "branch_a"), _consumers(graph, "branch_b")
    assert a.args[0] is b.args[0]


def test_reused_module_is_called_twice() -> None:
    model = ReusedModuleNet()
    calls = _consumers(fx.symbolic_trace(model).graph, "shared")
    assert len(calls) == 2 and calls[0].args[0] is not calls[1].args[0]
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 2


def test_residual_depthwise_and_functional_patterns() -> None:
    residual = fx.symbolic_trace(ResidualNet()).graph
    assert any(n.op == "call_function" and n.target is operator.add for n in residual.nodes)
    depthwise = DepthwiseNet().depthwise
    assert depthwise.groups == depthwise.in_channels == depthwise.out_channels == 8
    functional = fx.symbolic_trace(FunctionalConvNet()).graph
    conv = [n for n in functional.nodes if n.op == "call_function" and n.target is F.conv2d]
    assert len(conv) == 1 and conv[0].args[1].op == "get_attr" and conv[0].args[1].target == "weight"
    assert isinstance(FunctionalConvNet().weight, nn.Parameter)


def _fake_quant_weight(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric per-output-channel, as a backend would."""
    scale = w.abs().amax(dim=(1, 2, 3), keepdim=True) / (2 ** (bits - 1) - 1)
    return torch.round(w / scale) * scale


def _fake_quant_act(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Asymmetric per-tensor min-max."""
    low, high = x.min(), x.max()
    scale = (high - low) / (2**bits - 1)
    return torch.round((x - low) / scale) * scale + low


def _errors(index: int, kind: str, bits: int = 4) -> list[float]:
    """Relative output error when only conv{j} is quantized, for j = 0..3."""
    x = batch(32)
    reference = outlier_net(index, kind)(x)
    errors = []
    for j in range(4):
        model = outlier_net(index, kind)
        conv = getattr(model, f"conv{j}")
        if kind == "weights":
            conv.weight.copy_(_fake_quant_weight(conv.weight, bits))
        else:
            conv.register_forward_pre_hook(lambda _module, args: (_fake_quant_act(args[0], bits),))
        errors.append(float((model(x) - reference).norm() / reference.norm()))
    return errors


@pytest.mark.parametrize("kind", ["weights", "activations"])
@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_outlier_layer_is_the_sensitive_one(index: int, kind: str) -> None:
    model = outlier_net(index, kind)
    assert model.outlier_layer == f"conv{index}"
    x = batch()
    with torch.no_grad():
        torch.testing.assert_close(model(x), OutlierNet().eval()(x), rtol=1e-4, atol=1e-4)  # same float function
        torch.testing.assert_close(fx.symbolic_trace(model)(x), model(x))
        errors = _errors(index, kind)
    others = [e for j, e in enumerate(errors) if j != index]
    assert errors[index] > 0.5 and errors[index] > 5 * max(others), errors


def test_outlier_magnitudes() -> None:
    conv = outlier_net(2, "weights").conv2
    regular, outlier = conv.weight[:, :-1].abs().amax(dim=(1, 2, 3)), conv.weight[:, -1].abs().amax(dim=(1, 2))
    torch.testing.assert_close(outlier, OUTLIER_SCALE * regular)
    model = outlier_net(1, "activations")
    captured: list[torch.Tensor] = []
    model.conv1.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
    with torch.no_grad():
        model(batch())
    channel_max = captured[0].abs().amax(dim=(0, 2, 3))
    assert channel_max[-1] > 20 * channel_max[:-1].max()
    assert torch.count_nonzero(model.conv1.weight[:, -1]) == 0


def test_outlier_net_arguments() -> None:
    with pytest.raises(ValueError, match="0..3"):
        outlier_net(4)
    with pytest.raises(ValueError, match="kind"):
        outlier_net(1, "biases")  # type: ignore[arg-type]
    assert OutlierNet().outlier_layer is None


def test_random_images_are_smooth_and_reproducible() -> None:
    a = random_images(4, (3, 16, 16), seed=5)
    assert a.shape == (4, 3, 16, 16) and a.dtype == np.float32
    np.testing.assert_array_equal(a, random_images(4, (3, 16, 16), seed=5))
    assert not np.allclose(a, random_images(4, (3, 16, 16), seed=6))
    assert 0.3 < a.std() < 2.0
    neighbours = np.corrcoef(a[..., :-1].ravel(), a[..., 1:].ravel())[0, 1]
    assert neighbours > 0.8  # not white noise
    assert random_images(2, (1, 5, 7)).shape == (2, 1, 5, 7)
