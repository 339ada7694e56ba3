"""What makes an export run on ONNX Runtime's integer kernels: zero Pads folded into convs (exact) and
quantizers at integer groups' outputs (calibrated when the simulation is prepared, and simulated by it)."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from mixq.backends.onnx.backend import OnnxBackend  # noqa: E402
from mixq.core.assignment import Assignment, uniform  # noqa: E402
from mixq.core.precision import Precision, QuantScheme, parse_candidates  # noqa: E402
from mixq.backends.onnx.export.fold_pads import fold_pads  # noqa: E402
from mixq.backends.onnx.export.onnx_qdq import export_qdq  # noqa: E402
from mixq.backends.onnx import testing as graphs  # noqa: E402


padded = graphs.padded


def run(proto, data):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": data})[0]


def ops(proto):
    return [node.op_type for node in proto.graph.node]


def test_a_zero_pad_moves_into_the_conv_exactly():
    proto = padded()
    data = graphs.blocky_images()
    before = run(proto, data)
    folded = onnx.ModelProto()
    folded.CopyFrom(proto)
    assert fold_pads(folded) == 1
    assert "Pad" not in ops(folded) and "Concat" not in ops(folded)  # its constant subgraph went with it
    conv2 = next(n for n in folded.graph.node if n.name == "conv2")
    assert list(helper.get_attribute_value(next(a for a in conv2.attribute if a.name == "pads"))) == [0, 0, 1, 1]
    np.testing.assert_allclose(run(folded, data), before, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["nonzero", "reflect", "channels"])
def test_pads_a_conv_cannot_express_stay(kind):
    proto = padded(pad_value=1.0) if kind == "nonzero" else padded(mode="reflect") if kind == "reflect" \
        else padded(channel_pad=True)
    assert fold_pads(proto) == 0
    assert "Pad" in ops(proto)


def export(proto, data, tmp_path, precision="w8a8", output_quantizers=True):
    traced = OnnxBackend().trace(proto, data[:1], parse_candidates("w8a8"))
    sim = traced.prepare(data, QuantScheme())
    assignment = uniform(traced.graph, Precision.parse(precision))
    report = export_qdq(sim, assignment, tmp_path / f"{precision}-{output_quantizers}.onnx", check_data=data,
                        calibration=data if output_quantizers else None)
    return report, traced.graph


def test_the_padded_export_fuses_both_convs(tmp_path):
    data = graphs.blocky_images()
    report, _ = export(padded(), data, tmp_path)
    assert report.fused.get("QLinearConv") == 2, report.fused
    assert any("Pad" in note for note in report.notes)
    assert abs(report.check["exported_sqnr_db"] - report.check["simulation_sqnr_db"]) < 0.5, report.check


def test_output_quantizers_turn_every_integer_conv_into_an_integer_kernel(tmp_path):
    data = graphs.blocky_images()
    exact, _ = export(graphs.residual(), data, tmp_path, output_quantizers=False)
    fused, graph = export(graphs.residual(), data, tmp_path)
    convs = sum(op.kind.value.endswith("conv") for group in graph for op in group.ops)
    assert convs == 3
    assert exact.fused.get("QLinearConv", 0) < convs  # conv3 feeds the residual Add: no quantizer there
    assert fused.fused.get("QLinearConv", 0) == convs, fused.fused
    assert any("output quantizer" in note for note in fused.notes)
    # the simulation has the added quantizers too: both files are within requantization rounding of theirs
    for report in (exact, fused):
        assert abs(report.check["exported_sqnr_db"] - report.check["simulation_sqnr_db"]) < 0.5, report.check
        assert report.check["sqnr_vs_simulation_db"] >= report.check["simulation_sqnr_db"] + 8.0, report.check


def test_int4_weights_get_no_output_quantizer_unless_stored_as_int8(tmp_path):
    data = graphs.blocky_images()
    traced = OnnxBackend().trace(graphs.residual(), data[:1], parse_candidates("w8a8"))
    sim = traced.prepare(data, QuantScheme())
    assignment = uniform(traced.graph, Precision.parse("w4a8"))
    packed = export_qdq(sim, assignment, tmp_path / "int4.onnx", check_data=data, calibration=data)
    assert not any("output quantizer" in note for note in packed.notes)  # ORT dequantizes INT4: no gain
    assert not packed.fused.get("QLinearConv")
    as_int8 = export_qdq(sim, assignment, tmp_path / "int8.onnx", check_data=data, calibration=data, int4=False)
    assert as_int8.fused.get("QLinearConv") == 3, as_int8.fused  # 4-bit values in int8: integer kernels


def test_float_and_wide_groups_get_no_output_quantizer(tmp_path):
    data = graphs.blocky_images()
    traced = OnnxBackend().trace(graphs.residual(), data[:1], parse_candidates("w8a8"))
    sim = traced.prepare(data, QuantScheme())
    groups = [g.id for g in traced.graph]
    assignment = Assignment({gid: Precision.parse("fp32" if i % 2 else "w8a16") for i, gid in enumerate(groups)})
    report = export_qdq(sim, assignment, tmp_path / "wide.onnx", check_data=data, calibration=data)
    assert not any("output quantizer" in note for note in report.notes), report.notes


def test_the_api_and_cli_switch_output_quantizers_off(tmp_path):
    import json

    from mixq.cli.main import main
    from mixq.export import export as api_export

    data = graphs.blocky_images()
    model = tmp_path / "residual.onnx"
    onnx.save(graphs.residual(), str(model))
    traced = OnnxBackend().trace(str(model), data[:1], parse_candidates("w8a8"))
    assignment = uniform(traced.graph, Precision.parse("w8a8"))
    on = api_export(str(model), assignment, data, tmp_path / "on.onnx", num_samples=16, check_samples=16)
    off = api_export(str(model), assignment, data, tmp_path / "off.onnx", num_samples=16, check_samples=16,
                     output_quantizers=False)
    assert on.fused["QLinearConv"] == 3 > off.fused.get("QLinearConv", 0)
    np.savez(tmp_path / "data.npz", x=data)
    (tmp_path / "plan.json").write_text(json.dumps({"assignment": {g: "w8a8" for g in assignment}}))
    assert main(["export", str(model), "--plan", str(tmp_path / "plan.json"), "--data", str(tmp_path / "data.npz"),
                 "-o", str(tmp_path / "cli.onnx"), "--no-output-quantizers", "--json", "-q"]) == 0
    cli = onnx.load(str(tmp_path / "cli.onnx"))
    quantizers = sum(node.op_type == "QuantizeLinear" for node in cli.graph.node)
    assert quantizers == sum(node.op_type == "QuantizeLinear" for node in onnx.load(str(tmp_path / "off.onnx")).graph.node)


def test_a_bias_shared_through_identity_still_becomes_int32(tmp_path):
    """torch.onnx.export shares equal biases between convs through Identity nodes."""
    nodes = [helper.make_node("Identity", ["b"], ["b1"], name="share1"),
             helper.make_node("Identity", ["b"], ["b2"], name="share2"),
             helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
             helper.make_node("GlobalAveragePool", ["c2"], ["y"], name="pool")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 1, 1])
    proto = graphs.model(nodes, [x], [y], [graphs.init("w1", (8, 3, 3, 3), 1), graphs.init("w2", (8, 8, 3, 3), 2),
                                           graphs.init("b", (8,), 3, 0.1)])
    report, _ = export(proto, graphs.blocky_images(), tmp_path)
    written = onnx.load(str(report.path))
    producers = {out: node for node in written.graph.node for out in node.output}
    inits = {t.name: t for t in written.graph.initializer}
    for conv in (n for n in written.graph.node if n.op_type == "Conv"):
        dequantize = producers[conv.input[2]]
        assert dequantize.op_type == "DequantizeLinear", conv.name
        assert inits[dequantize.input[0]].data_type == TensorProto.INT32
    assert report.fused.get("QLinearConv") == 2, report.fused


def test_a_float_group_between_integer_groups_stays_float(tmp_path):
    """ORT quantizes a float conv that reads a DequantizeLinear and feeds a QuantizeLinear by itself: no
    output quantizer may put a float group there (conv2 -> relu -> conv3's quantizer)."""
    data = graphs.blocky_images()
    traced = OnnxBackend().trace(graphs.residual(), data[:1], parse_candidates("w8a8"))
    sim = traced.prepare(data, QuantScheme())
    ids = [g.id for g in traced.graph]
    conv2 = next(g for g in ids if "conv2" in g)
    assignment = Assignment({g: Precision.parse("fp32" if g == conv2 else "w8a8") for g in ids})
    report = export_qdq(sim, assignment, tmp_path / "mixed.onnx", check_data=data, calibration=data)
    integer_convs = sum(op.kind.value.endswith("conv") for g in traced.graph if g.id != conv2 for op in g.ops)
    assert report.fused.get("QLinearConv", 0) <= integer_convs, report.fused
    written = onnx.load(str(report.path))
    producers = {out: node.op_type for node in written.graph.node for out in node.output}
    node = next(n for n in written.graph.node if n.name == conv2)
    assert producers.get(node.input[0]) != "DequantizeLinear"


def test_a_float_group_before_a_residual_add_may_read_an_output_quantizer(tmp_path):
    """conv3 feeds the residual Add, not a quantizer: ORT keeps it float even when its input is
    dequantized, so conv2 may get its output quantizer and run as an integer kernel."""
    data = graphs.blocky_images()
    traced = OnnxBackend().trace(graphs.residual(), data[:1], parse_candidates("w8a8"))
    sim = traced.prepare(data, QuantScheme())
    ids = [g.id for g in traced.graph]
    assignment = Assignment({g: Precision.parse("fp32" if g == "conv3" else "w8a8") for g in ids})
    report = export_qdq(sim, assignment, tmp_path / "mixed.onnx", check_data=data, calibration=data)
    assert report.fused.get("QLinearConv") == 2, report.fused  # conv1 and conv2; conv3 float
    assert not any("WeightBiasQuantization" in note for note in report.notes)
