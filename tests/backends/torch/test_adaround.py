"""AdaRound on one layer: lower output error than nearest rounding, mixq-compatible integers, deterministic,
every supported op, and reused from the disk cache by content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mixq.backends.torch import adaround as ada
from mixq.backends.torch.adaround import adaround, dequantize, layer_forward, nearest_integers
from mixq.backends.torch.simulation import TorchSimulation
from mixq.backends.torch.traced import TorchTraced
from mixq.core.assignment import Assignment
from mixq.core.graph import OpKind, QuantGraph
from mixq.core.precision import Precision, QuantScheme, RangeMethod
from mixq.core.quantize import WeightQuantizer
from mixq.core.ranges import QuantParams, weight_params
from mixq.core.rounding import AdaRoundConfig, LayerSpec


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache root (never the user's ~/.cache)."""
    monkeypatch.setenv("MIXQ_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def correlated_images(n: int, channels: int, size: int, noise_seed: int, mix_seed: int = 0) -> np.ndarray:
    """Spatially smooth, channel-mixed inputs (what a conv sees after another conv): the case where the
    rounding errors of neighbouring weights add up and nearest rounding is far from the best rounding."""
    noise = np.random.default_rng(noise_seed).normal(size=(n, channels, size + 4, size + 4)).astype(np.float32)
    smooth = torch.nn.functional.conv2d(torch.as_tensor(noise), torch.ones(channels, 1, 5, 5) / 25, groups=channels)
    rng = np.random.default_rng(mix_seed)
    mix = rng.normal(size=(channels, channels)).astype(np.float32) * 0.5 + np.eye(channels, dtype=np.float32)
    return np.einsum("dc,nchw->ndhw", mix, smooth.numpy()).astype(np.float32) * 3


def output_mse(layer: LayerSpec, x: np.ndarray, weight: np.ndarray, integers: np.ndarray, params: QuantParams,
               axis: int) -> float:
    xt = torch.as_tensor(x)
    with torch.no_grad():
        exact = layer_forward(layer, xt, torch.as_tensor(weight))
        quant = layer_forward(layer, xt, torch.as_tensor(dequantize(integers, params, axis)))
    return float(((exact - quant) ** 2).mean())


def ratio(layer: LayerSpec, weight: np.ndarray, params: QuantParams, axis: int, train: np.ndarray,
          held_out: np.ndarray, config: AdaRoundConfig = AdaRoundConfig()) -> tuple[float, np.ndarray]:
    """AdaRound's output MSE over nearest rounding's, on inputs AdaRound did not see."""
    q = adaround(weight, params, axis, layer, train, None, config)
    nearest = nearest_integers(weight, params, axis)
    return output_mse(layer, held_out, weight, q, params, axis) / output_mse(layer, held_out, weight, nearest, params, axis), q


def count_optimiser_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one each time AdaRound really optimises (not read from the cache)."""
    calls: list[int] = []
    optimise = ada._optimise

    def counted(*args: object, **kwargs: object) -> np.ndarray:
        calls.append(1)
        return optimise(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ada, "_optimise", counted)
    return calls


def conv_case(seed: int = 0) -> tuple[np.ndarray, LayerSpec, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(100 + seed)
    weight = (rng.normal(size=(16, 8, 3, 3)) * 0.2).astype(np.float32)
    layer = LayerSpec(OpKind.CONV, padding=(1,), bias=rng.normal(size=16).astype(np.float32))
    return weight, layer, correlated_images(64, 8, 12, 1, seed), correlated_images(64, 8, 12, 2, seed)


@pytest.mark.parametrize("bits", [4, 3])
def test_conv_output_error_well_below_nearest_rounding(bits: int) -> None:
    # Measured (layer seeds 0-2, held-out inputs): 0.18-0.30 of nearest rounding's MSE at 4 and 3 bits.
    weight, layer, train, held_out = conv_case()
    params = weight_params(weight, bits, RangeMethod.MSE)
    r, _ = ratio(layer, weight, params, 0, train, held_out)
    assert r <= 0.5


def test_integers_in_range_and_at_most_one_from_nearest() -> None:
    weight, layer, train, _ = conv_case(1)
    for params in (weight_params(weight, 3, RangeMethod.MSE),
                   weight_params(weight, 4, RangeMethod.MINMAX, symmetric=False, per_channel=False)):
        q = adaround(weight, params, 0, layer, train, None, AdaRoundConfig(iterations=200))
        nearest = nearest_integers(weight, params, 0)
        assert q.dtype == np.int32 and q.shape == weight.shape
        assert q.min() >= params.qmin and q.max() <= params.qmax
        assert np.abs(q.astype(np.int64) - nearest).max() == 1  # it does change roundings, by one step at most
        assert 0.02 < np.mean(q != nearest) < 0.5


def test_nearest_reference_is_mixqs_weight_quantizer() -> None:
    # AdaRound's integers replace WeightQuantizer.integers: same params, same layout, same dtype.
    weight = np.random.default_rng(0).normal(size=(6, 4, 3, 3)).astype(np.float32)
    quantizer = WeightQuantizer({"w": weight}, {"w": 0}, QuantScheme())
    expected, _, _ = quantizer.integers("w", 4)
    assert expected.dtype == np.int32
    np.testing.assert_array_equal(nearest_integers(weight, quantizer.params("w", 4), 0), expected)


def test_same_seed_same_integers() -> None:
    weight, layer, train, _ = conv_case(2)
    params = weight_params(weight, 3, RangeMethod.MSE)
    config = AdaRoundConfig(iterations=150, batch_size=8)
    threads = torch.get_num_threads()
    first = adaround(weight, params, 0, layer, train, None, config, seed=5, use_cache=False)
    assert torch.get_num_threads() == threads  # runs on one thread, gives the caller's count back
    second = adaround(weight, params, 0, layer, train, None, config, seed=5, use_cache=False)
    np.testing.assert_array_equal(first, second)


def test_linear_and_matmul_agree_and_improve() -> None:
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(32, 32)).astype(np.float32) * 0.3 + np.eye(32, dtype=np.float32)
    train = rng.normal(size=(512, 32)).astype(np.float32) @ mix
    held_out = rng.normal(size=(512, 32)).astype(np.float32) @ mix
    weight = (rng.normal(size=(24, 32)) * 0.2).astype(np.float32)
    params = weight_params(weight, 4, RangeMethod.MSE)
    # Measured 0.57 at 4 bits (0.66 at 3 bits) on held-out inputs.
    r, q_linear = ratio(LayerSpec(OpKind.LINEAR), weight, params, 0, train, held_out)
    assert r <= 0.8
    # MatMul stores the same weight transposed (output channel on axis 1): the same problem, the same answer.
    q_matmul = adaround(weight.T.copy(), params, 1, LayerSpec(OpKind.MATMUL), train, None, AdaRoundConfig())
    np.testing.assert_array_equal(q_matmul, q_linear.T)


def test_depthwise_conv_with_stride() -> None:
    rng = np.random.default_rng(0)
    images = rng.normal(size=(64, 8, 14, 14)).astype(np.float32)
    images = torch.nn.functional.avg_pool2d(torch.as_tensor(images), 3, 1, 1).numpy() * 3
    weight = (rng.normal(size=(8, 1, 3, 3)) * 0.3).astype(np.float32)
    layer = LayerSpec(OpKind.DEPTHWISE_CONV, stride=(2,), padding=(1,), groups=8)
    params = weight_params(weight, 4, RangeMethod.MSE)
    # Measured 0.46 at 4 bits (0.80 at 3 bits) on held-out inputs.
    r, _ = ratio(layer, weight, params, 0, images[:32], images[32:])
    assert r <= 0.8


def test_cache_reuses_result_and_keys_on_content(_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weight, layer, train, _ = conv_case()
    params = weight_params(weight, 4, RangeMethod.MSE)
    config = AdaRoundConfig(iterations=50)
    calls = count_optimiser_calls(monkeypatch)
    first = adaround(weight, params, 0, layer, train, None, config)
    assert len(calls) == 1 and len(list((_cache / "adaround").glob("*.npy"))) == 1
    again = adaround(weight.copy(), params, 0, layer, train.copy(), None, config)
    assert len(calls) == 1  # same content: read back, not optimised
    np.testing.assert_array_equal(again, first)
    # Any change of content is a different result: seed, settings, inputs, bit-width.
    adaround(weight, params, 0, layer, train, None, config, seed=1)
    adaround(weight, params, 0, layer, train, None, AdaRoundConfig(iterations=50, lr=2e-2))
    adaround(weight, params, 0, layer, train[:-1], None, config)
    adaround(weight, weight_params(weight, 3, RangeMethod.MSE), 0, layer, train, None, config)
    assert len(calls) == 5
    # A damaged cache file is optimised again, not trusted.
    for path in (_cache / "adaround").glob("*.npy"):
        path.write_bytes(b"not an array")
    np.testing.assert_array_equal(adaround(weight, params, 0, layer, train, None, config), first)
    assert len(calls) == 6


def test_explicit_targets_are_reconstructed() -> None:
    # Targets other than the layer's own output (e.g. the float model's, under quantized inputs) change
    # what is optimised: with targets from a different weight, the rounding follows them.
    weight, layer, train, _ = conv_case()
    params = weight_params(weight, 3, RangeMethod.MSE)
    shifted = weight + params.scale.reshape(-1, 1, 1, 1).astype(np.float32) * 0.45
    with torch.no_grad():
        targets = layer_forward(layer, torch.as_tensor(train), torch.as_tensor(shifted)).numpy()
    own = adaround(weight, params, 0, layer, train, None, AdaRoundConfig(iterations=200))
    followed = adaround(weight, params, 0, layer, train, targets, AdaRoundConfig(iterations=200))
    # Measured: 36 % of the integers go up, none down.
    assert (followed > own).mean() > 0.2 and (followed < own).mean() < 0.02


# -- on a torch model (--rounding adaround, torch backend) ---------------------------------------------

ADA50 = QuantScheme(weight_rounding="adaround", adaround_iterations=50)
W4A8 = "w4a8"


def _torch_sims(model: torch.nn.Module, images: np.ndarray) -> tuple[TorchTraced, TorchSimulation, TorchSimulation]:
    from mixq.backends.torch.traced import trace_module
    from mixq.core.precision import parse_candidates

    traced = trace_module(model, images[:1], parse_candidates(W4A8))
    return traced, traced.prepare(images, ADA50), traced.prepare(images, QuantScheme())


def _uniform(graph: QuantGraph, name: str = W4A8) -> Assignment:
    return Assignment({g.id: Precision.parse(name) for g in graph})


def test_torch_model_adaround_beats_nearest_rounding_on_the_calibration_data() -> None:
    from mixq.backends.torch.testing import TinyConvNet, random_images
    from mixq.core.quality import sqnr_db

    images = random_images(32, seed=5)
    traced, ada_sim, nearest_sim = _torch_sims(TinyConvNet().eval(), images)
    assignment = _uniform(traced.graph)
    reference = nearest_sim.run(images, None)
    ada_db = sqnr_db(reference, ada_sim.run(images, assignment))
    nearest_db = sqnr_db(reference, nearest_sim.run(images, assignment))
    # Measured 22.4 vs 19.9 dB on 64 samples (every conv and the Linear head rounded).
    assert ada_db > nearest_db + 1.0, (ada_db, nearest_db)
    changed = [key for key in ("conv1.weight", "conv2.weight", "head.fc.weight")
               if not np.array_equal(ada_sim.quantizers.weight_integers(key, 4)[0],
                                     nearest_sim.quantizers.weight_integers(key, 4)[0])]
    assert len(changed) == 3


def test_torch_layer_specs_mirror_the_modules_and_refuse_what_adaround_cannot_mirror() -> None:
    from torch import fx

    from mixq.backends.torch.rounding import layer_spec

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(4, 8, 3, stride=2, padding=(1, 2), dilation=1)
            self.dw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.same = torch.nn.Conv2d(8, 8, 3, padding="same")
            self.valid = torch.nn.Conv1d(8, 8, 3, padding="valid")
            self.circular = torch.nn.Conv2d(8, 8, 3, padding=1, padding_mode="circular")
            self.fc = torch.nn.Linear(8, 4)
            self.up = torch.nn.ConvTranspose2d(8, 8, 2)
            self.w = torch.nn.Parameter(torch.zeros(8, 4, 3, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.conv2d(x, self.w, None, 2, 1, 1, 1)

    net = Net()
    modules = dict(net.named_modules())
    graph = fx.Graph()
    x = graph.placeholder("x")

    def spec(target: str) -> tuple[object, str]:
        weight = modules[target].weight.detach().numpy()
        return layer_spec(graph.call_module(target, (x,)), modules, weight)

    conv, _ = spec("conv")
    assert conv == LayerSpec(OpKind.CONV, stride=(2, 2), padding=(1, 2), dilation=(1, 1), groups=1)
    dw, _ = spec("dw")
    assert dw == LayerSpec(OpKind.DEPTHWISE_CONV, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=8)
    assert spec("valid")[0] == LayerSpec(OpKind.CONV, stride=(1,), padding=(0,), dilation=(1,))
    assert spec("fc")[0] == LayerSpec(OpKind.LINEAR)
    assert spec("same") == (None, "padding 'same'")
    assert spec("circular") == (None, "padding_mode 'circular'")
    assert spec("up")[0] is None
    w = graph.get_attr("w")
    functional = graph.call_function(torch.nn.functional.conv2d, (x, w, None, 2, 1, 1, 1))
    assert layer_spec(functional, modules, net.w.detach().numpy())[0] == LayerSpec(
        OpKind.CONV, stride=(2, 2), padding=(1, 1), dilation=(1, 1))
    keyword = graph.call_function(torch.nn.functional.conv2d, (x, w), {"padding": "same"})
    assert layer_spec(keyword, modules, net.w.detach().numpy()) == (None, "padding 'same'")


def test_a_shared_weight_keeps_nearest_rounding(caplog: pytest.LogCaptureFixture) -> None:
    from mixq.backends.torch.testing import ReusedModuleNet, random_images

    images = random_images(8, seed=1)
    with caplog.at_level("INFO", logger="mixq.backends.torch.rounding"):
        _, ada_sim, nearest_sim = _torch_sims(ReusedModuleNet().eval(), images)
    assert "shared.weight is shared" in caplog.text
    np.testing.assert_array_equal(ada_sim.quantizers.weight_integers("shared.weight", 4)[0],
                                  nearest_sim.quantizers.weight_integers("shared.weight", 4)[0])


def test_torch_and_onnx_backends_give_the_same_integers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    from mixq.backends.onnx.backend import OnnxBackend
    from mixq.backends.torch.export import map_groups, to_onnx
    from mixq.backends.torch.testing import TinyConvNet, random_images
    from mixq.core.precision import parse_candidates

    model = TinyConvNet().eval()  # no batch norm: both backends round the very same weights
    images = random_images(32, seed=2)
    monkeypatch.setenv("MIXQ_CACHE_DIR", str(tmp_path / "torch"))  # each backend optimises on its own
    traced, torch_sim, _ = _torch_sims(model, images)
    path = tmp_path / "tiny.onnx"
    path.write_bytes(to_onnx(model, images).SerializeToString())
    monkeypatch.setenv("MIXQ_CACHE_DIR", str(tmp_path / "onnx"))
    onnx_traced = OnnxBackend().trace(str(path), images[:1], parse_candidates(W4A8))
    onnx_sim = onnx_traced.prepare(images, ADA50)
    mapping = map_groups(traced, onnx_traced, images)
    torch_keys = {site.op.name: site.weight_key for site in traced.sites if site.weight_key is not None}
    onnx_keys = {site.op.name: site.weight_key for site in onnx_traced.sites if site.weight_key is not None}
    assert len(mapping.ops) == 3
    for match in mapping.ops:
        key = onnx_keys[match.onnx_op]
        ours = torch_sim.quantizers.weight_integers(torch_keys[match.torch_op], 4)[0]
        theirs = onnx_sim.quantizers.weight_integers(key, 4)[0]
        quantizers = onnx_sim.quantizers
        nearest = nearest_integers(quantizers.weights[key], quantizers.weight_params(key, 4), quantizers.axes[key])
        assert not np.array_equal(theirs, nearest)  # AdaRound did round differently
        if ours.shape != theirs.shape:  # nn.Linear exported as a MatMul stores its weight (in, out)
            ours = ours.T
        np.testing.assert_array_equal(ours, theirs, err_msg=match.torch_op)


class _BnTinyNet(torch.nn.Module):
    """conv+BN, depthwise conv+BN, Linear: BN statistics far from (0, 1), so folding changes the weights."""

    def __init__(self) -> None:
        super().__init__()
        from mixq.backends.torch.testing import init_weights, seeded

        with seeded(0):
            self.conv, self.bn0 = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8)
            self.dw, self.bn1 = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), torch.nn.BatchNorm2d(8)
            self.fc = torch.nn.Linear(32, 10)
            init_weights(self)
            with torch.no_grad():
                for bn in (self.bn0, self.bn1):
                    bn.running_mean.normal_(0.0, 0.3)  # type: ignore[union-attr]
                    bn.running_var.uniform_(0.3, 3.0)  # type: ignore[union-attr]
                    bn.weight.uniform_(0.5, 1.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn0(self.conv(x)))
        h = torch.relu(self.bn1(self.dw(h)))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(h, 2), 1))


def test_the_exported_file_carries_the_torch_simulations_integers(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from mixq.backends.torch.testing import random_images
    from mixq.core.quality import sqnr_db
    from mixq.export import export

    model = _BnTinyNet().eval()  # BN folded on the torch side and by torch.onnx.export
    images = random_images(16, seed=4)
    traced, ada_sim, nearest_sim = _torch_sims(model, images)
    report = export(model, Precision.parse(W4A8), images, tmp_path / "ada.onnx", scheme=ADA50, check_samples=16,
                    output_quantizers=False, int32_bias=False)
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    exported = session.run(None, {session.get_inputs()[0].name: images})[0]
    assignment = _uniform(traced.graph)
    adarounded = ada_sim.run(images, assignment)
    nearest = nearest_sim.run(images, assignment)
    # The file computes the AdaRound simulation up to float rounding (measured 119 dB; 19 dB against the
    # nearest-rounded simulation).
    assert sqnr_db(adarounded, exported) > 80.0, sqnr_db(adarounded, exported)
    assert sqnr_db(nearest, exported) < 40.0


def test_a_second_prepare_reuses_the_disk_cache(_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mixq.backends.torch.testing import TinyConvNet, random_images

    calls = count_optimiser_calls(monkeypatch)
    images = random_images(16, seed=6)
    progress: list[tuple[str, int, int]] = []
    _, first, _ = _torch_sims(TinyConvNet().eval(), images)
    assert len(calls) == 3 and len(list((_cache / "adaround").glob("*.npy"))) == 3
    from mixq.prepared import prepare

    # The public path (what search and eval call): the torch backend is no longer refused.
    again = prepare(TinyConvNet().eval(), images, [W4A8], ADA50, len(images),
                    progress=lambda stage, done, total: progress.append((stage, done, total))).sim
    assert isinstance(again, TorchSimulation)
    assert len(calls) == 3  # read back, not optimised
    assert ("adaround", 3, 3) in progress
    np.testing.assert_array_equal(again.quantizers.weight_integers("conv2.weight", 4)[0],
                                  first.quantizers.weight_integers("conv2.weight", 4)[0])
