from __future__ import annotations

import pytest

from mixq.core.assignment import uniform
from mixq.core.graph import OpKind, QuantGraph, QuantizerGroup, QuantOp
from mixq.core.precision import Precision
from mixq.cost import COST_MODELS, Bops, WeightSize, default_cost_models, total_cost

W4A8, W8A8, W8A16, FP16 = (Precision.parse(t) for t in ("w4a8", "w8a8", "w8a16", "fp16"))


def group(name: str, macs: int, numel: int, channels: int, n_ops: int = 1) -> QuantizerGroup:
    ops = tuple(
        QuantOp(f"{name}.{i}", OpKind.CONV, macs // n_ops, numel // n_ops, channels // n_ops, (f"{name}:x{i}",), f"w{i}")
        for i in range(n_ops)
    )
    return QuantizerGroup(name, ops, (W4A8, W8A8, W8A16))


def graph(*groups: QuantizerGroup, float_params: int = 0) -> QuantGraph:
    return QuantGraph({g.id: g for g in groups}, float_params=float_params)


def test_bops_of_one_group_is_macs_times_both_bit_widths() -> None:
    g = group("a", macs=1000, numel=10, channels=1)
    assert Bops().cost(g, W4A8) == 32_000
    assert Bops().cost(g, W8A8) == 64_000
    assert Bops().cost(g, W8A16) == 128_000
    assert Bops().cost(g, FP16) == 256_000


def test_bops_ratios_are_relative_to_all_w8a16() -> None:
    model = graph(group("a", 1000, 10, 1), group("b", 3000, 10, 1))
    bops = Bops()
    reference = bops.reference(model)
    assert reference == 4000 * 128
    assert total_cost(bops, model, uniform(model, W8A16)) / reference == 1.0
    assert total_cost(bops, model, uniform(model, W8A8)) / reference == 0.5
    assert total_cost(bops, model, uniform(model, W4A8)) / reference == 0.25
    mixed = uniform(model, W4A8).with_("a", W8A16)
    assert total_cost(bops, model, mixed) == 1000 * 128 + 3000 * 32
    assert bops.fixed(model) == 0.0


def test_size_counts_weight_bits_plus_one_fp32_scale_per_channel() -> None:
    g = group("a", macs=1, numel=1000, channels=10)
    assert WeightSize().cost(g, W4A8) == 1000 * 4 / 8 + 10 * 4
    assert WeightSize().cost(g, W8A16) == 1000 + 10 * 4
    assert WeightSize(per_channel=False).cost(g, W4A8) == 500 + 1 * 4
    assert WeightSize().cost(g, FP16) == 2000  # float weights carry no scales


def test_size_per_tensor_has_one_scale_per_op() -> None:
    g = group("a", macs=2, numel=1000, channels=10, n_ops=2)
    assert WeightSize(per_channel=False).cost(g, W8A8) == 1000 + 2 * 4
    assert WeightSize(per_channel=True).cost(g, W8A8) == 1000 + 10 * 4


def test_activation_only_matmul_has_no_weight_bytes() -> None:
    op = QuantOp("attn", OpKind.MATMUL, 500, 0, 0, ("q", "k"))
    g = QuantizerGroup("attn", (op,), (W8A8,))
    assert WeightSize().cost(g, W8A8) == 0
    assert Bops().cost(g, W8A8) == 500 * 64


def test_size_reference_is_the_float_model_and_fixed_the_unquantized_rest() -> None:
    model = graph(group("a", 1, 1000, 10), group("b", 1, 3000, 20), float_params=4100)
    size = WeightSize()
    assert size.reference(model) == 4100 * 4
    assert size.fixed(model) == 100 * 4  # biases and norms stay fp32
    total = total_cost(size, model, uniform(model, W8A8))
    assert total == 400 + (1000 + 40) + (3000 + 80)
    assert total / size.reference(model) == pytest.approx(4520 / 16400)


def test_reused_weight_is_stored_once() -> None:
    shared = tuple(QuantOp(f"m{i}", OpKind.LINEAR, 100, 64, 8, (f"x{i}",), "w") for i in range(2))
    g = QuantizerGroup("m0", shared, (W8A8,))
    assert WeightSize().cost(g, W8A8) == 64 + 8 * 4
    assert Bops().cost(g, W8A8) == 200 * 64


def test_registry_names_match_the_models() -> None:
    assert {name: model.name for name, model in default_cost_models().items()} == {"bops": "bops", "size": "size"}
    assert COST_MODELS.names() == ["bops", "size", "latency", "memory"]
