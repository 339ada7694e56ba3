"""QDQ export: real integer tensors in the file, outputs that match the simulation, the api-level call.

Tolerances. With ORT's graph optimizations off and float biases, the exported graph computes what the
simulation computes except where QuantizeLinear's division and the simulation's multiplication by the
reciprocal round a tie differently: >= 90 dB pooled SQNR between them (measured 100-300 dB). As deployed
(ORT's fusions into QLinearConv etc., int32 biases), values near a rounding boundary may land one step
apart: we require the exported model's SQNR against float to be within 0.5 dB of the simulation's and
its difference from the simulation to be >= 8 dB below the quantization noise itself (measured 12-25 dB).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from mixq.backends.onnx.backend import OnnxBackend  # noqa: E402
from mixq.core.assignment import Assignment, uniform  # noqa: E402
from mixq.core.precision import Precision, QuantScheme, RangeMethod, parse_candidates  # noqa: E402
from mixq.backends.onnx.export.checks import compare  # noqa: E402
from mixq.backends.onnx.export.onnx_qdq import build_qdq, export_qdq  # noqa: E402
from mixq.backends.onnx import testing as graphs  # noqa: E402

P = Precision.parse


def attention():
    """The shared attention graph at this file's size: 5 tokens of 8 channels, 4 outputs."""
    return graphs.attention(tokens=5, dim=8, out=4, scale=0.35, seeds=(0, 1, 2, 9))


@pytest.fixture
def models():
    return SimpleNamespace(residual=graphs.residual, attention=attention, images=graphs.blocky_images)


def simulation(model, data):
    traced = OnnxBackend().trace(model, data[:1], parse_candidates("w8a8"))
    return traced.graph, traced.prepare(data, QuantScheme())


def initializer_types(proto):
    return {t.name: onnx.TensorProto.DataType.Name(t.data_type) for t in proto.graph.initializer}


def assert_matches_simulation(check):
    assert abs(check["exported_sqnr_db"] - check["simulation_sqnr_db"]) < 0.5, check
    assert check["sqnr_vs_simulation_db"] >= check["simulation_sqnr_db"] + 8.0, check
    assert check["top1_agreement_vs_simulation"] >= 0.9, check


@pytest.mark.parametrize("name", ["w8a8", "w4a8", "w6a6", "w8a16", "fp16", "mixed"])
def test_graph_computes_the_simulation(models, name):
    data = models.images()
    graph, sim = simulation(models.residual(), data)
    if name == "mixed":
        assignment = Assignment(dict(zip(graph.ids, map(P, ("w8a16", "w4a8", "fp16", "fp32")))))
    else:
        assignment = uniform(graph, P(name))
    written = build_qdq(sim, assignment, int32_bias=False)  # without output quantizers: checked without them
    check = compare(sim, assignment, written.proto, data, optimize=False, outputs=written.outputs)
    assert check["sqnr_vs_simulation_db"] >= 90.0, check


def test_int8_export_stores_integers_and_fuses(models, tmp_path):
    data = models.images()
    graph, sim = simulation(models.residual(), data)
    assignment = uniform(graph, P("w8a8"))
    # int8 storage forced: without output quantizers two groups run unfused, and "auto" would time both files
    report = export_qdq(sim, assignment, tmp_path / "q.onnx", check_data=data, unfused_weights="int8")
    assert_matches_simulation(report.check)
    proto = onnx.load(str(report.path))
    types = initializer_types(proto)
    assert "w2" not in types  # the float weights are gone
    assert sorted(v for k, v in types.items() if k.endswith("_q")) == ["INT32"] * 4 + ["INT8"] * 4
    weight_dq = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == "w2::w255_q"]
    assert [a.i for a in weight_dq[0].attribute if a.name == "axis"] == [0]  # per output channel
    assert report.weight_storage == {"int8": 4}
    assert report.fused.get("QLinearConv", 0) >= 1  # conv2 -> relu -> conv3's quantizer became an integer conv
    assert report.file_bytes < 0.5 * report.float_file_bytes
    assert proto.graph.input[0].type.tensor_type.shape.dim[2].dim_param == "H"  # dynamic dims kept


def test_int4_weights(models, tmp_path):
    data = models.images()
    graph, sim = simulation(models.residual(), data)
    report = export_qdq(sim, uniform(graph, P("w4a8")), tmp_path / "q4.onnx", check_data=data)
    assert report.opset >= 21 and report.weight_storage == {"int4": 4}
    types = initializer_types(onnx.load(str(report.path)))
    assert types["w2::w15_q"] == "INT4"
    assert_matches_simulation(report.check)
    as_int8 = export_qdq(sim, uniform(graph, P("w4a8")), tmp_path / "q4i8.onnx", check_data=data, int4=False)
    assert as_int8.weight_storage == {"int8": 4} and as_int8.opset == 17
    assert report.file_bytes < as_int8.file_bytes


def test_fp16_and_fp32_groups(models, tmp_path):
    data = models.images()
    graph, sim = simulation(models.residual(), data)
    assignment = Assignment(dict(zip(graph.ids, map(P, ("fp16", "w8a8", "fp32", "fp16")))))
    report = export_qdq(sim, assignment, tmp_path / "m.onnx", check_data=data)
    proto = onnx.load(str(report.path))
    types = initializer_types(proto)
    assert types["w1::fp16_h"] == "FLOAT16" and types["w3"] == "FLOAT"
    conv3 = next(n for n in proto.graph.node if n.name == "conv3")
    assert list(conv3.input) == ["h2", "w3", "b3"]  # fp32: untouched
    assert_matches_simulation(report.check)


def test_activation_matmuls_quantize_both_operands(models, tmp_path):
    data = models.images(16, (5, 8))
    graph, sim = simulation(models.attention(), data)
    assert graph.ids == ("q", "scores", "context", "out")
    assignment = uniform(graph, P("w8a8"))
    report = export_qdq(sim, assignment, tmp_path / "att.onnx", check_data=data)
    proto = onnx.load(str(report.path))
    scores = next(n for n in proto.graph.node if n.name == "scores")
    producers = {o: n.op_type for n in proto.graph.node for o in n.output}
    assert [producers[i] for i in scores.input] == ["DequantizeLinear", "DequantizeLinear"]
    assert_matches_simulation(report.check)
    exact = build_qdq(sim, assignment, int32_bias=False)
    assert compare(sim, assignment, exact.proto, data, optimize=False,
                   outputs=exact.outputs)["sqnr_vs_simulation_db"] >= 90.0


def test_api_export_from_a_saved_plan(models, tmp_path):
    from mixq.export import export
    from mixq.plan import Plan

    path = tmp_path / "model.onnx"
    onnx.save(models.residual(), str(path))
    data = models.images(24)
    graph, _ = simulation(path, data)
    plan = Plan(Assignment(dict(zip(graph.ids, map(P, ("w8a8", "w4a8", "w8a8", "fp16"))))), costs={},
                predicted_sqnr_db=30.0, num_samples=16, scheme=QuantScheme(act_range=RangeMethod.MINMAX))
    plan.save(tmp_path / "plan.json")
    report = export(path, tmp_path / "plan.json", data, tmp_path / "out" / "q.onnx", benchmark=True)
    assert report.path.is_file() and report.check["n_samples"] == 16
    assert_matches_simulation(report.check)
    assert report.latency["float_ms"] > 0 and report.latency["quantized_ms"] > 0
    json.dumps(report.to_dict())
