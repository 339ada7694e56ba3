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

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from mixq.backends.onnx.backend import OnnxBackend  # noqa: E402
from mixq.core.assignment import Assignment, uniform  # noqa: E402
from mixq.core.precision import Precision, QuantScheme, parse_candidates  # noqa: E402
from mixq.export.checks import compare  # noqa: E402
from mixq.export.onnx_qdq import build_qdq, export_qdq  # noqa: E402

P = Precision.parse


# -- models built with onnx.helper ------------------------------------------------------------------

def _init(name, shape, seed, scale):
    from onnx import numpy_helper

    rng = np.random.default_rng(seed)
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def _model(nodes, x, y, inits):
    from onnx import helper

    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def residual(channels=16):
    """conv1 -> relu -> conv2 -> relu -> conv3 (+ relu1) -> relu -> pool -> fc (Gemm with bias)."""
    from onnx import TensorProto, helper

    c = channels
    inits = [_init("w1", (c, 3, 3, 3), 1, 0.4), _init("b1", (c,), 2, 0.1),
             _init("w2", (c, c, 3, 3), 3, 0.12), _init("b2", (c,), 4, 0.1),
             _init("w3", (c, c, 3, 3), 5, 0.12), _init("b3", (c,), 6, 0.1),
             _init("wfc", (10, c), 7, 0.3), _init("bfc", (10,), 8, 0.1)]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["h"], name="relu1"),
        helper.make_node("Conv", ["h", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["h2"], name="relu2"),
        helper.make_node("Conv", ["h2", "w3", "b3"], ["c3"], name="conv3", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c3", "h"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["r"], name="relu3"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wfc", "bfc"], ["y"], name="fc", transB=1),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])
    return _model(nodes, x, y, inits)


def attention():
    """q/k/v projections of one tensor, q @ k^T -> softmax -> @ v, output projection."""
    from onnx import TensorProto, helper

    inits = [_init(n, (8, 8), i, 0.35) for i, n in enumerate(("wq", "wk", "wv"))] + [_init("wo", (8, 4), 9, 0.35)]
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"], name="q"),
        helper.make_node("MatMul", ["x", "wk"], ["k"], name="k"),
        helper.make_node("MatMul", ["x", "wv"], ["v"], name="v"),
        helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"], name="scores"),
        helper.make_node("Softmax", ["s"], ["attn"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["attn", "v"], ["ctx"], name="context"),
        helper.make_node("MatMul", ["ctx", "wo"], ["y"], name="out"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5, 4])
    return _model(nodes, x, y, inits)


def images(n=16, shape=(3, 16, 16), seed=0):
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((n, shape[0], *(max(1, s // 4) for s in shape[1:]))).astype(np.float32)
    for axis in range(2, coarse.ndim):
        coarse = coarse.repeat(4, axis=axis)
    return np.ascontiguousarray(coarse)


@pytest.fixture
def models():
    return SimpleNamespace(residual=residual, attention=attention, images=images)


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
    proto, _, _ = build_qdq(sim, assignment, int32_bias=False)
    check = compare(sim, assignment, proto, data, optimize=False)
    assert check["sqnr_vs_simulation_db"] >= 90.0, check


def test_int8_export_stores_integers_and_fuses(models, tmp_path):
    data = models.images()
    graph, sim = simulation(models.residual(), data)
    assignment = uniform(graph, P("w8a8"))
    report = export_qdq(sim, assignment, tmp_path / "q.onnx", check_data=data)
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
    exact, _, _ = build_qdq(sim, assignment, int32_bias=False)
    assert compare(sim, assignment, exact, data, optimize=False)["sqnr_vs_simulation_db"] >= 90.0


def test_api_export_from_a_saved_plan(models, tmp_path):
    from mixq.export import export
    from mixq.plan import Plan

    path = tmp_path / "model.onnx"
    onnx.save(models.residual(), str(path))
    data = models.images(24)
    graph, _ = simulation(path, data)
    plan = Plan(Assignment(dict(zip(graph.ids, map(P, ("w8a8", "w4a8", "w8a8", "fp16"))))), costs={},
                predicted_sqnr_db=30.0, provenance={"num_samples": 16, "scheme": {"act_range": "minmax"}})
    plan.save(tmp_path / "plan.json")
    report = export(path, tmp_path / "plan.json", data, tmp_path / "out" / "q.onnx", benchmark=True)
    assert report.path.is_file() and report.check["n_samples"] == 16
    assert_matches_simulation(report.check)
    assert report.latency["float_ms"] > 0 and report.latency["quantized_ms"] > 0
    json.dumps(report.to_dict())


def test_export_refuses_torch_models(models):
    torch = pytest.importorskip("torch")
    from mixq.errors import ConfigError
    from mixq.export import export

    with pytest.raises(ConfigError, match="torch.onnx.export"):
        export(torch.nn.Linear(3, 2), Assignment({}), models.images(2, (3,)), "x.onnx")
