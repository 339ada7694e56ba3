"""Integer groups ORT leaves unfused: found from its optimized graph, stored the faster way, bit-identical."""

from __future__ import annotations

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")

from mixq.backends.onnx.backend import OnnxBackend  # noqa: E402
from mixq.backends.onnx.export.onnx_qdq import build_qdq  # noqa: E402
from mixq.backends.onnx.export.unfused import float_weights, store_unfused, unfused_nodes  # noqa: E402
from mixq.backends.onnx.testing import residual  # noqa: E402
from mixq.core.assignment import Assignment  # noqa: E402
from mixq.core.precision import Precision, QuantScheme, parse_candidates  # noqa: E402

W8, FP = Precision.parse("w8a8"), Precision.parse("fp32")


@pytest.fixture(scope="module")
def sandwich():
    """conv1 int8 -> conv2 float -> conv3 int8: conv1 gets no output quantizer (ORT would quantize conv2), so
    ORT runs it as a float kernel on dequantized weights."""
    data = np.random.default_rng(0).standard_normal((8, 3, 12, 12)).astype(np.float32)
    traced = OnnxBackend().trace(residual(8, 5), data[:1], parse_candidates("w8a8,fp32"))
    sim = traced.prepare(data, QuantScheme())
    plan = Assignment({"conv1": W8, "conv2": FP, "conv3": W8, "fc": W8})
    proto = build_qdq(sim, plan, calibration=data).proto
    return proto, data


def _run(proto, data):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": data})[0]


def test_the_sandwiched_integer_conv_is_found_unfused(sandwich) -> None:
    proto, _ = sandwich
    assert unfused_nodes(proto, ["conv1", "conv3", "fc"]) == ("conv1",)


def test_float_storage_is_bit_identical_and_drops_the_per_run_dequantize(sandwich) -> None:
    proto, data = sandwich
    stored = float_weights(proto, ["conv1"])
    assert np.array_equal(_run(proto, data), _run(stored, data))
    weight_dq = [n for n in stored.graph.node if n.op_type == "DequantizeLinear" and n.input[0].startswith("w1")]
    assert not weight_dq and any(t.name.endswith("::f32") for t in stored.graph.initializer)


def test_auto_keeps_the_faster_file_and_says_so(sandwich) -> None:
    proto, _ = sandwich
    times = iter([2.0, 1.0] * 3)  # int8 file 2 ms, float-weights file 1 ms
    kept, choice = store_unfused(proto, ["conv1", "conv3", "fc"], "auto", lambda _: next(times))
    assert choice is not None and choice.storage == "float" and kept is not proto
    assert "stored as float" in choice.note() and "conv1" in choice.note()
    times = iter([1.0, 2.0] * 3)
    kept, choice = store_unfused(proto, ["conv1", "conv3", "fc"], "auto", lambda _: next(times))
    assert choice is not None and choice.storage == "int8" and kept is proto


def test_nothing_to_do_when_every_integer_group_fuses(sandwich) -> None:
    data = sandwich[1]
    traced = OnnxBackend().trace(residual(8, 5), data[:1], parse_candidates("w8a8,fp32"))
    sim = traced.prepare(data, QuantScheme())
    proto = build_qdq(sim, Assignment({g: W8 for g in ("conv1", "conv2", "conv3", "fc")}), calibration=data).proto
    assert store_unfused(proto, ["conv1", "conv2", "conv3", "fc"], "auto", lambda _: 1.0) == (proto, None)
