"""``--bias-correction`` and ``--weight-range output`` on ONNX models: the simulation uses the corrected bias
(an op without one gets one), the exported file holds it, the torch backend simulates the same, plans carry
the scheme, and the CLI flags set it."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

import onnx
from onnx import TensorProto, helper, numpy_helper

from mixq.backends.onnx import testing
from mixq.backends.onnx.backend import OnnxBackend
from mixq.backends.torch import testing as torch_models
from mixq.backends.torch.backend import TorchBackend
from mixq.core.assignment import Assignment, uniform
from mixq.core.precision import Precision, QuantScheme, RangeMethod, parse_candidates
from mixq.core.quality import sqnr_db
from mixq.cost.totals import CostRecord
from mixq.errors import ConfigError
from mixq.export import export
from mixq.plan import Plan

CORRECTED = QuantScheme(bias_correction=True)
CHANNELS = 8


def _depthwise(bias: bool) -> onnx.ModelProto:
    """One 3x3 depthwise conv (padded): the layer bias correction helps most at low bits."""
    inits = [testing.init("w", (CHANNELS, 1, 3, 3), 1, 0.5)]
    inits += [testing.init("b", (CHANNELS,), 2, 0.1)] if bias else []
    node = helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["y"], name="dw", pads=[1, 1, 1, 1],
                            group=CHANNELS)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", CHANNELS, 6, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", CHANNELS, 6, 6])
    return testing.model([node], [x], [y], inits)


def _inputs(count: int, seed: int) -> np.ndarray:
    """Post-ReLU-like inputs: a non-zero mean per channel, which is what weight errors shift."""
    rng = np.random.default_rng(seed)
    return np.maximum(rng.standard_normal((count, CHANNELS, 6, 6)) + rng.uniform(0.0, 1.5, (1, CHANNELS, 1, 1)),
                      0.0).astype(np.float32)


CALIB = _inputs(64, 0)


def _channel_errors(model: onnx.ModelProto, scheme: QuantScheme, precision: str) -> tuple[np.ndarray, float]:
    """Per output channel, the mean error of the quantized layer on the calibration data; and its output MSE."""
    traced = OnnxBackend().trace(model, CALIB[:1], parse_candidates(precision))
    sim = traced.prepare(CALIB, scheme)
    reference = sim.run(CALIB).reshape(CALIB.shape)
    quantized = sim.run(CALIB, uniform(traced.graph, Precision.parse(precision))).reshape(CALIB.shape)
    error = quantized - reference
    return error.mean(axis=(0, 2, 3)), float(np.mean(error**2))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("precision", ["w3a16", "w4a16"])
def test_bias_correction_zeroes_the_mean_error_and_lowers_the_output_mse(bias: bool, precision: str) -> None:
    model = _depthwise(bias)
    before, mse_before = _channel_errors(model, QuantScheme(), precision)
    after, mse_after = _channel_errors(model, CORRECTED, precision)
    assert np.abs(before).max() > 1e-2, before  # the weight quantization did shift the channel means
    assert np.abs(after).max() < 0.05 * np.abs(before).max(), (before, after)  # a16: only activation noise left
    assert mse_after < 0.9 * mse_before, (mse_before, mse_after)


def test_the_output_range_lowers_the_output_error_of_the_layer() -> None:
    model = _depthwise(True)
    _, mse = _channel_errors(model, QuantScheme(), "w3a16")
    _, output = _channel_errors(model, QuantScheme(weight_range=RangeMethod.OUTPUT), "w3a16")
    assert output < mse, (mse, output)


def _torch_onnx_pair(tmp_path: Path) -> tuple[torch.nn.Module, Path, np.ndarray]:
    module = torch_models.DepthwiseNet().eval()
    data = torch_models.random_images(32)
    path = tmp_path / "dw.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.from_numpy(data[:2]),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, opset_version=17)
    return module, path, data


@pytest.mark.parametrize("scheme", [CORRECTED, QuantScheme(bias_correction=True, weight_range=RangeMethod.OUTPUT)],
                         ids=["bias", "bias+output-range"])
def test_the_onnx_and_torch_simulations_and_the_exported_file_agree(tmp_path: Path, scheme: QuantScheme) -> None:
    module, path, data = _torch_onnx_pair(tmp_path)
    w4a8 = Precision.parse("w4a8")
    runs = {}
    for name, backend, model in (("torch", TorchBackend(), module), ("onnx", OnnxBackend(), path)):
        traced = backend.trace(model, data[:1], (w4a8,))
        plain, corrected = traced.prepare(data, QuantScheme()), traced.prepare(data, scheme)
        for sim in (plain, corrected):  # the torch simulation has no output quantizers (the export's)
            if hasattr(sim, "output_quantizers"):
                sim.output_quantizers = False
        reference = plain.run(data)
        runs[name] = (reference, plain.run(data, uniform(traced.graph, w4a8)),
                      corrected.run(data, uniform(traced.graph, w4a8)))
    for a, b in zip(runs["torch"], runs["onnx"]):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)
    reference, plain, corrected = runs["onnx"]
    assert sqnr_db(reference, corrected) > sqnr_db(reference, plain)  # it did change (and help) the output
    report = export(path, w4a8, data, tmp_path / "q.onnx", num_samples=32, scheme=scheme, check_samples=16)
    assert report.check["sqnr_vs_simulation_db"] > 35.0, report.check
    stored = onnx.load(tmp_path / "q.onnx")
    assert any("corrected_bias" in t.name for t in stored.graph.initializer)


def test_an_op_without_a_bias_gets_one_in_the_file(tmp_path: Path) -> None:
    report = export(_depthwise(False), Precision.parse("w4a8"), CALIB, tmp_path / "q.onnx", num_samples=64,
                    scheme=CORRECTED, check_samples=16)
    assert report.check["sqnr_vs_simulation_db"] > 35.0, report.check
    (conv,) = [n for n in onnx.load(tmp_path / "q.onnx").graph.node if n.op_type == "Conv"]
    assert len(conv.input) == 3
    plain = export(_depthwise(False), Precision.parse("w4a8"), CALIB, tmp_path / "p.onnx", num_samples=64,
                   check_samples=0)
    assert plain.path.exists()
    (conv,) = [n for n in onnx.load(tmp_path / "p.onnx").graph.node if n.op_type == "Conv"]
    assert len(conv.input) == 2  # without bias correction nothing is added


def test_plans_carry_it_and_the_export_applies_it(tmp_path: Path) -> None:
    scheme = QuantScheme(bias_correction=True, weight_range=RangeMethod.OUTPUT)
    plan = Plan(Assignment({"dw": Precision.parse("w4a8")}), {"bops": CostRecord(1.0, "BOPs", 0.5)}, 20.0,
                scheme=scheme, num_samples=64)
    stored = json.loads(plan.save(tmp_path / "plan.json").read_text())
    assert stored["scheme"]["bias_correction"] is True and stored["scheme"]["weight_range"] == "output"
    assert Plan.load(tmp_path).scheme == scheme
    export(_depthwise(True), Plan.load(tmp_path), CALIB, tmp_path / "q.onnx", check_samples=0)
    names = [t.name for t in onnx.load(tmp_path / "q.onnx").graph.initializer]
    assert any("corrected_bias" in name for name in names)
    bias = numpy_helper.to_array(next(t for t in _depthwise(True).graph.initializer if t.name == "b"))
    assert bias.shape == (CHANNELS,)


def test_the_cli_flags_set_the_scheme_and_refuse_the_output_range_for_activations() -> None:
    from mixq.cli.main import _scheme
    from mixq.cli.parser import build_parser

    parser = build_parser()
    for verb in (["search", "--out", "run"], ["eval"]):
        args = parser.parse_args([*verb, "m.onnx", "--data", "d", "--bias-correction", "--weight-range", "output"])
        assert _scheme(args) == QuantScheme(bias_correction=True, weight_range=RangeMethod.OUTPUT)
        assert _scheme(parser.parse_args([*verb, "m.onnx", "--data", "d"])) == QuantScheme()
        with pytest.raises(ConfigError, match="weight ranges only"):
            _scheme(parser.parse_args([*verb, "m.onnx", "--data", "d", "--act-range", "output"]))
    args = parser.parse_args(["export", "m.onnx", "--data", "d", "--uniform", "w4a8", "-o", "q.onnx",
                              "--bias-correction"])
    assert args.bias_correction
