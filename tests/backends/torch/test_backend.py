"""Torch backend: capture, group discovery, exact prefix caching, fake-quant fidelity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mixq.backends.torch.backend import TorchBackend
from mixq.core.assignment import Assignment, uniform
from mixq.core.graph import OpKind
from mixq.core.precision import Precision, QuantScheme, parse_candidates
from mixq.core.quality import sqnr_db
from mixq.errors import DataError, UnsupportedModelError

CANDIDATES = parse_candidates("w4a8,w8a8,w8a16")


def images(n: int = 8, shape: tuple[int, ...] = (3, 16, 16), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    low = rng.standard_normal((n, shape[0], shape[1] // 4, shape[2] // 4)).astype(np.float32)
    return np.ascontiguousarray(low.repeat(4, axis=2).repeat(4, axis=3))


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        x = x + self.b(F.relu(self.a(x)))
        return self.fc(x.mean(dim=(2, 3)))


class SharedInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.left = nn.Conv2d(8, 4, 1)
        self.right = nn.Conv2d(8, 4, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        x = torch.cat([self.left(x), self.right(x)], dim=1)
        return self.fc(x.mean(dim=(2, 3)))


class Reused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        x = F.relu(self.block(x))
        x = F.relu(self.block(x))
        return self.fc(x.mean(dim=(2, 3)))


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.weight = nn.Parameter(torch.randn(8, 3, 3, 3) * 0.2)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(F.conv2d(x, self.weight, padding=1)).mean(dim=(2, 3)))


class ShapeBranch(Residual):
    """fx cannot trace a branch on a shape; torch.export can (shapes are static there)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 3:
            x = x * 1.0
        return super().forward(x)


class DataBranch(Residual):
    """A branch on data values: no tracer can capture it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if float(x.sum()) > 1e9:
            return super().forward(x) * 2
        return super().forward(x)


def prepared(model: nn.Module, n: int = 8):
    data = images(n)
    traced = TorchBackend().trace(model, data, CANDIDATES)
    return traced, traced.prepare(data, QuantScheme()), data


def test_float_run_reproduces_the_model():
    model = Residual().eval()
    _, sim, data = prepared(model)
    with torch.no_grad():
        expected = model(torch.from_numpy(data)).numpy()
    np.testing.assert_allclose(sim.run(data), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model_cls", [Residual, SharedInput, Reused])
def test_isolated_runs_equal_full_runs(model_cls):
    """Phase 1's prefix caching must give exactly what a whole-network run gives."""
    traced, sim, data = prepared(model_cls().eval())
    isolated = sim.isolate(data)
    np.testing.assert_array_equal(isolated.reference, sim.run(data))
    for group in traced.graph:
        for precision in CANDIDATES:
            full = sim.run(data, Assignment({group.id: precision}))
            np.testing.assert_allclose(isolated.run(group.id, precision), full, rtol=1e-5, atol=1e-6)


def test_ops_reading_one_tensor_form_one_group():
    traced, _, _ = prepared(SharedInput().eval())
    groups = {g.id: [op.name for op in g.ops] for g in traced.graph}
    assert groups["left"] == ["left", "right"]
    assert "right" not in groups


def test_reused_module_is_one_group_with_two_ops():
    traced, _, _ = prepared(Reused().eval())
    block = traced.graph["block"]
    assert [op.name for op in block.ops] == ["block", "block:1"]
    assert block.weight_numel == 8 * 8 * 9  # the shared weight is counted once


def test_functional_conv_with_parameter_weight_is_found():
    traced, sim, data = prepared(Functional().eval())
    assert traced.graph.ids == ("weight", "fc")
    assert traced.graph["weight"].ops[0].kind is OpKind.CONV
    out = sim.run(data, uniform(traced.graph, Precision.parse("w4a8")))
    assert sqnr_db(sim.run(data), out) < sqnr_db(sim.run(data), sim.run(data, uniform(traced.graph, Precision.parse("w8a8"))))


def test_macs_match_hand_counts():
    traced, _, _ = prepared(Residual().eval())
    graph = traced.graph
    assert graph["stem"].macs == 16 * 16 * 8 * (3 * 9)
    assert graph["a"].macs == 16 * 16 * 8 * (8 * 9)
    assert graph["fc"].macs == 8 * 10
    assert graph.float_params == sum(p.numel() for p in Residual().parameters())


def test_precision_orders_fidelity():
    traced, sim, data = prepared(Residual().eval())
    reference = sim.run(data)
    sqnr = {p: sqnr_db(reference, sim.run(data, uniform(traced.graph, Precision.parse(p))))
            for p in ("w4a8", "w8a8", "w8a16", "w16a16", "fp16")}
    # w8a8 and w8a16 can tie when 8-bit weights dominate the noise; more bits never hurt by much
    assert sqnr["w4a8"] < sqnr["w8a8"] < sqnr["w16a16"]
    assert sqnr["w8a16"] < sqnr["w16a16"] - 20
    assert sqnr["w8a8"] > 25.0
    assert sqnr["fp16"] > 50.0


def test_user_model_is_not_mutated():
    model = Residual().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    traced, sim, data = prepared(model)
    sim.run(data, uniform(traced.graph, Precision.parse("w4a8")))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_shape_branch_falls_back_to_torch_export():
    traced, sim, data = prepared(ShapeBranch().eval())
    assert len(traced.graph) == 4
    with torch.no_grad():
        expected = ShapeBranch().eval()(torch.from_numpy(data)).numpy()
    np.testing.assert_allclose(sim.run(data), expected, rtol=1e-5, atol=1e-6)


def test_untraceable_model_gets_one_clear_error():
    with pytest.raises(UnsupportedModelError, match="could not capture"):
        TorchBackend().trace(DataBranch().eval(), images(2), CANDIDATES)


def test_nan_output_is_reported():
    class NaNNet(Residual):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) * float("nan")

    with pytest.raises(UnsupportedModelError, match="NaN or Inf"):  # refused at tracing, before any work
        TorchBackend().trace(NaNNet().eval(), images(2), CANDIDATES)


def test_wrong_input_size_is_a_data_error():
    class Flat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3 * 16 * 16, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.flatten(1))

    with pytest.raises(DataError, match="preprocess"):
        TorchBackend().trace(Flat().eval(), images(2, shape=(3, 32, 32)), CANDIDATES)
