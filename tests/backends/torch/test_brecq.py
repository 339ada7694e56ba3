"""BRECQ on a small residual torch model: lower output error than nearest rounding, integers on the calibrated
grid, reproduced by the simulation's tuned weight quantizer, deterministic (QDrop too), fp16/fp32 groups left
alone, and refused for a non-torch simulation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from mixq.backends.torch.adaround import adaround
from mixq.backends.torch.blocks import graph_blocks
from mixq.backends.torch.brecq import BrecqTuner, reconstruct
from mixq.backends.torch.simulation import TorchSimulation
from mixq.backends.torch.testing import (
    DepthwiseNet,
    FunctionalConvNet,
    ResidualNet,
    ReusedModuleNet,
    SharedInputNet,
    random_images,
)
from mixq.backends.torch.traced import TorchTraced, trace_module
from mixq.core.assignment import Assignment
from mixq.core.graph import OpKind
from mixq.core.precision import Precision, QuantScheme
from mixq.core.reconstruction import BrecqConfig
from mixq.core.rounding import AdaRoundConfig, LayerSpec
from mixq.core.tuned import TunedQuantizers, TunedWeight
from mixq.errors import CapabilityError

W3A8 = Precision.parse("w3a8")
#: Few steps and blocks of one unit each: a few seconds per reconstruction.
CONFIG = BrecqConfig(iterations=200, batch_size=16, max_groups=1)


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXQ_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def case() -> tuple[TorchTraced, np.ndarray, np.ndarray]:
    calibration, held_out = random_images(64, seed=0), random_images(64, seed=1)
    return trace_module(ResidualNet(0).eval(), calibration[:1], [W3A8]), calibration, held_out


@pytest.fixture(scope="module")
def result(case: tuple[TorchTraced, np.ndarray, np.ndarray]) -> TunedQuantizers:
    traced, calibration, _ = case
    sim = traced.prepare(calibration, QuantScheme())
    return reconstruct(sim, uniform(sim, W3A8), calibration, CONFIG, seed=0)


def uniform(sim: TorchSimulation, precision: Precision) -> Assignment:
    return Assignment({g.id: precision for g in sim.graph})


def tuned_sim(traced: TorchTraced, calibration: np.ndarray, weights: dict[tuple[str, int], TunedWeight]
              ) -> TorchSimulation:
    """A fresh simulation whose weight quantizer uses ``weights`` (as ``Simulation.tune`` will)."""
    sim = traced.prepare(calibration, QuantScheme())
    sim.quantizers._core.tune(weights)
    return sim


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b) ** 2))


def layerwise_adaround(traced: TorchTraced, sim: TorchSimulation, calibration: np.ndarray, bits: int,
                       iterations: int) -> dict[tuple[str, int], TunedWeight]:
    """AdaRound per layer on the float model's inputs of each layer (``--rounding adaround``'s objective)."""
    executor, names = traced.executor, [site.op.inputs[0] for site in traced.sites]
    inputs: dict[str, np.ndarray] = {}
    with torch.no_grad():
        executor.run(torch.from_numpy(calibration),
                     observe=(names, lambda name, value: inputs.setdefault(name, value.numpy().copy())))
    core, out = sim.quantizers._core, {}
    for site in traced.sites:
        module: Any = executor.modules[str(executor.by_name[site.node].target)]
        bias = None if module.bias is None else module.bias.detach().numpy()
        spec = (LayerSpec(OpKind.LINEAR, bias=bias) if isinstance(module, nn.Linear) else
                LayerSpec(OpKind.CONV, module.stride, module.padding, module.dilation, module.groups, bias))
        key = str(site.weight_key)
        params = core.params(key, bits)
        integers = adaround(core.weights[key], params, 0, spec, inputs[site.op.inputs[0]], None,
                            AdaRoundConfig(iterations=iterations), use_cache=False)
        out[(key, bits)] = TunedWeight(integers, params)
    return out


def test_lowers_output_error_below_nearest_rounding(case: tuple[TorchTraced, np.ndarray, np.ndarray],
                                                    result: TunedQuantizers) -> None:
    traced, calibration, held_out = case
    sim = traced.prepare(calibration, QuantScheme())
    plan = uniform(sim, W3A8)
    reference = sim.run(held_out)
    nearest = mse(sim.run(held_out, plan), reference)
    brecq = mse(tuned_sim(traced, calibration, dict(result.weights)).run(held_out, plan), reference)
    layerwise = mse(tuned_sim(traced, calibration, layerwise_adaround(traced, sim, calibration, 3, CONFIG.iterations))
                    .run(held_out, plan), reference)
    print(f"held-out output MSE: nearest {nearest:.4g}, layer-wise AdaRound {layerwise:.4g}, BRECQ {brecq:.4g}")
    # Measured on inputs it did not see: 0.060 (nearest), 0.024 (layer-wise AdaRound, same steps), 0.013 (BRECQ).
    assert brecq < 0.5 * nearest
    # Block reconstruction beats layer-wise AdaRound here by 45%; on these 3-5 layer models and 64 samples
    # it does not at every step count and block size (mixed at 500 steps, see the report), so the margin
    # asserted is only that it is not worse.
    assert brecq < layerwise
    for block in result.details["blocks"]:  # every block's own error falls too, on the calibration samples
        assert block["mse_after"] < block["mse_before"]


def test_integers_on_the_grid_within_one_step(case: tuple[TorchTraced, np.ndarray, np.ndarray],
                                              result: TunedQuantizers) -> None:
    traced, calibration, _ = case
    core = traced.prepare(calibration, QuantScheme()).quantizers._core
    assert {key for key, _ in result.weights} == set(core.weights) and {b for _, b in result.weights} == {3}
    changed = 0
    for (key, bits), tuned in result.weights.items():
        nearest, scale, zero = core.integers(key, bits)
        params = core.params(key, bits)
        assert tuned.params is params or np.array_equal(tuned.params.scale, params.scale)
        assert tuned.integers.dtype == np.int32 and tuned.integers.shape == core.weights[key].shape
        assert tuned.integers.min() >= params.qmin and tuned.integers.max() <= params.qmax
        floor = np.floor(core.weights[key].astype(np.float64) / scale) + zero
        assert np.all((tuned.integers == np.clip(floor, params.qmin, params.qmax))
                      | (tuned.integers == np.clip(floor + 1, params.qmin, params.qmax)))
        assert np.abs(tuned.integers.astype(np.int64) - nearest).max() <= 1
        changed += int(np.sum(tuned.integers != nearest))
    assert changed > 0


def test_the_tuned_simulation_reproduces_the_reconstructed_blocks(
        case: tuple[TorchTraced, np.ndarray, np.ndarray], result: TunedQuantizers) -> None:
    traced, calibration, _ = case
    sim = tuned_sim(traced, calibration, dict(result.weights))
    plan = uniform(sim, W3A8)
    blocks = result.details["blocks"]
    outputs = [block["output"] for block in blocks[:-1]]
    quantized: dict[str, torch.Tensor] = {}
    exact: dict[str, torch.Tensor] = {}
    x = torch.from_numpy(calibration)
    with torch.no_grad():
        sim.executor.run(x, sim._overrides(dict(plan.items())), observe=(outputs, quantized.__setitem__))
        sim.executor.run(x, observe=(outputs, exact.__setitem__))
    for block in blocks[:-1]:
        name = block["output"]
        assert mse(quantized[name].numpy(), exact[name].numpy()) == pytest.approx(block["mse_after"], rel=1e-4)
    assert mse(sim.run(calibration, plan), sim.run(calibration)) == pytest.approx(blocks[-1]["mse_after"], rel=1e-4)


def test_qdrop_off_is_plain_brecq_and_on_is_deterministic(case: tuple[TorchTraced, np.ndarray, np.ndarray]) -> None:
    traced, calibration, held_out = case
    sim = traced.prepare(calibration, QuantScheme())
    plan = uniform(sim, Precision.parse("w3a4"))  # QDrop is about activation noise: 4-bit activations
    samples = calibration[:32]
    short = BrecqConfig(iterations=40, batch_size=16, max_groups=1)
    plain = reconstruct(sim, plan, samples, short, seed=3)
    off = reconstruct(sim, plan, samples, BrecqConfig(iterations=40, batch_size=16, max_groups=1, qdrop=0.0), seed=3)
    drop = BrecqConfig(iterations=40, batch_size=16, max_groups=1, qdrop=0.5)
    on, again = (reconstruct(sim, plan, samples, drop, seed=3) for _ in range(2))
    for key in plain.weights:
        np.testing.assert_array_equal(off.weights[key].integers, plain.weights[key].integers)
        np.testing.assert_array_equal(again.weights[key].integers, on.weights[key].integers)
    assert any(not np.array_equal(on.weights[key].integers, plain.weights[key].integers) for key in plain.weights)
    assert on.details["config"]["qdrop"] == 0.5
    reference = sim.run(held_out)
    nearest = mse(sim.run(held_out, plan), reference)
    # Measured: 0.059 (nearest), 0.035 (BRECQ), 0.032 (BRECQ + QDrop); at 200 steps on 64 samples 0.046 and 0.029.
    assert mse(tuned_sim(traced, calibration, dict(on.weights)).run(held_out, plan), reference) < nearest


def test_float_groups_are_not_reconstructed(case: tuple[TorchTraced, np.ndarray, np.ndarray]) -> None:
    traced, calibration, _ = case
    sim = traced.prepare(calibration, QuantScheme())
    plan = uniform(sim, W3A8).with_("conv2", Precision.parse("fp16")).with_("head.fc", Precision.parse("fp32"))
    before = sim.run(calibration[:4], plan)  # the simulation's caches now hold inference-mode weights
    grads = [p.requires_grad for p in sim.executor.gm.parameters()]
    threads = torch.get_num_threads()
    calls: list[tuple[str, int, int]] = []
    tuned = reconstruct(sim, plan, calibration[:32], BrecqConfig(iterations=20, batch_size=8, max_groups=1),
                        progress=lambda *call: calls.append(call))
    # The simulation, the model's parameters and the thread count are as they were.
    np.testing.assert_array_equal(sim.run(calibration[:4], plan), before)
    assert [p.requires_grad for p in sim.executor.gm.parameters()] == grads and torch.get_num_threads() == threads
    assert set(tuned.weights) == {("conv1.weight", 3), ("conv3.weight", 3)}
    # The fp32 head is not counted: it ends the last block rather than forming one.
    assert [block["groups"] for block in tuned.details["blocks"]] == [["conv1"], ["conv2", "conv3", "head.fc"]]
    assert [block["iterations"] for block in tuned.details["blocks"]] == [20, 20]
    assert calls[-1] == ("brecq", 40, 40) and all(stage == "brecq" for stage, _, _ in calls)
    assert [done for _, done, _ in calls] == sorted(done for _, done, _ in calls)


def test_blocks_keep_a_reused_module_in_one_block() -> None:
    calibration = random_images(4)
    traced = trace_module(ReusedModuleNet(0).eval(), calibration[:1], [W3A8])
    sites = {g.id: [s for s in traced.sites if s.op in g.ops] for g in traced.graph}
    blocks = graph_blocks(traced.executor, sites, calibration[:2], set(sites), 1)
    assert [b.groups for b in blocks] == [("conv1",), ("shared",), ("head.fc",)]
    # Cut after the activations (what the next layer reads), before the pooling (more values to match).
    assert [b.input.name for b in blocks] == ["x", "relu", "relu_2"]
    computed = [n for n in traced.executor.nodes if n.op not in ("placeholder", "get_attr")]
    assert [n for b in blocks for n in b.nodes] == computed  # every computed node, once, in order


def test_a_non_torch_simulation_is_a_capability_error() -> None:
    with pytest.raises(CapabilityError, match="torch model"):
        BrecqTuner(BrecqConfig()).tune(object(), Assignment({}), random_images(2))


@pytest.mark.parametrize(("model", "scheme"), [
    (SharedInputNet, QuantScheme(weight_per_channel=False, weight_symmetric=False)),  # zero-points, one scale
    (DepthwiseNet, QuantScheme(act_dynamic=True)),
    (FunctionalConvNet, QuantScheme()),  # a functional conv: the weight is an argument, not a module's
    (ReusedModuleNet, QuantScheme()),
])
def test_other_graphs_and_schemes(model: type[nn.Module], scheme: QuantScheme) -> None:
    calibration = random_images(16)
    traced = trace_module(model(0).eval(), calibration[:1], [W3A8])
    sim = traced.prepare(calibration, scheme)
    plan = uniform(sim, Precision.parse("w4a8"))
    tuned = reconstruct(sim, plan, calibration, BrecqConfig(iterations=15, batch_size=8, max_groups=1))
    core = sim.quantizers._core
    assert {key for key, _ in tuned.weights} == set(core.weights)
    for (key, bits), weight in tuned.weights.items():
        nearest, _, _ = core.integers(key, bits)
        assert weight.params.qmin <= weight.integers.min() and weight.integers.max() <= weight.params.qmax
        assert np.abs(weight.integers.astype(np.int64) - nearest).max() <= 1
    again = traced.prepare(calibration, scheme)
    again.quantizers._core.tune(dict(tuned.weights))
    last = tuned.details["blocks"][-1]["mse_after"]
    assert mse(again.run(calibration, plan), again.run(calibration)) == pytest.approx(last, rel=1e-4)
