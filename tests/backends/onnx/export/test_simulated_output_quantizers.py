"""The search's simulation applies the output quantizers the export adds (issue #12, item 3).

For several mixed assignments on small graphs (a residual Add; a ReLU read by a conv and the skip; a zero
Pad folded into a conv; 4-bit activations, whose quantizer has a Clip in front), the simulation's outputs
equal the QDQ file's outputs in ONNX Runtime to float round-off, with and without output quantizers, and
both sides decide the same tensors. ORT's graph optimizations are off and biases stay float, so the file
computes what its graph says (its fused integer kernels round the requantization their own way); on
random images QuantizeLinear's division and the simulation's multiplication by the reciprocal do not
split a rounding tie (measured: 0 to 1e-6).
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from mixq.backends.onnx import testing as graphs  # noqa: E402
from mixq.backends.onnx.backend import OnnxBackend  # noqa: E402
from mixq.backends.onnx.export.onnx_qdq import build_qdq, export_qdq  # noqa: E402
from mixq.backends.base import calibration_batches, quantized_tensors  # noqa: E402
from mixq.backends.onnx.qdq import Quantizers  # noqa: E402
from mixq.backends.onnx.simulation import OnnxSimulation, collect_stats  # noqa: E402
from mixq.core.assignment import Assignment  # noqa: E402
from mixq.core.precision import Precision, QuantScheme, parse_candidates  # noqa: E402

#: Float round-off between the simulation and the file (measured <= 1e-6 on these graphs).
ROUND_OFF = 1e-5
#: What one output quantizer the simulation leaves out changes in the outputs (measured 4e-3 .. 2e-2).
MISSED = 1e-3

RESIDUAL = {  # conv1, conv2, conv3, fc
    "int8": "w8a8,w8a8,w8a8,w8a8",
    "fp32 middle": "w8a8,fp32,w8a8,w8a8",
    "fp16 skip": "w8a8,w8a8,fp16,w8a8",
    "narrow reader": "w8a8,w6a4,w8a8,w8a8",
    "int4 weights": "w4a8,w8a8,w8a8,fp32",
    "wide": "w8a16,w8a8,w8a8,w8a8",
}


def prepared(model, data):
    traced = OnnxBackend().trace(model, data[:1], parse_candidates("w8a8"))
    return traced.graph, traced.prepare(data, QuantScheme())


def run_file(proto, data):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([o.reshape(len(data), -1) for o in session.run(None, {name: data})], axis=1)


def assignment_of(graph, spec):
    return Assignment({g.id: Precision.parse(p) for g, p in zip(graph, spec.split(","))})


@pytest.mark.parametrize("case", sorted(RESIDUAL))
def test_residual_simulation_equals_the_file(case):
    data = graphs.images(32)
    graph, sim = prepared(graphs.residual(), data)
    assignment = assignment_of(graph, RESIDUAL[case])
    written = build_qdq(sim, assignment, int32_bias=False, calibration=data)
    assert set(written.outputs) == set(sim.output_plan(assignment))  # one decision
    np.testing.assert_allclose(sim.run(data, assignment), run_file(written.proto, data), rtol=0, atol=ROUND_OFF)
    exact = build_qdq(sim, assignment, int32_bias=False)  # --no-output-quantizers
    assert exact.outputs == {} and exact.output_quantizers == 0
    sim.output_quantizers = False
    np.testing.assert_allclose(sim.run(data, assignment), run_file(exact.proto, data), rtol=0, atol=ROUND_OFF)


def test_the_decision_covers_the_skip_and_the_residual_add():
    data = graphs.images(32)
    graph, sim = prepared(graphs.residual(), data)
    plan = sim.output_plan(assignment_of(graph, RESIDUAL["int8"]))
    # relu1's output is read by conv2's quantizer and the Add: they share it; conv3's output feeds the Add: new
    assert {t: q.shared for t, q in plan.items()} == {"h": True, "c3": False}
    narrow = sim.output_plan(assignment_of(graph, RESIDUAL["narrow reader"]))
    assert narrow["h"].shared is False and narrow["h"].bits == 8  # a Clip in front: not shareable
    assert sim.output_plan(assignment_of(graph, RESIDUAL["int4 weights"])).keys() == {"c3"}  # INT4: no kernel
    assert "h" not in sim.output_plan(assignment_of(graph, RESIDUAL["fp32 middle"]))  # float conv before a Q


def test_old_simulation_misses_what_the_file_does():
    """Regression: without them (the simulation before issue #12 item 3), the file differs where one is added."""
    data = graphs.images(32)
    graph, sim = prepared(graphs.residual(), data)
    assignment = assignment_of(graph, RESIDUAL["int8"])
    written = build_qdq(sim, assignment, int32_bias=False, calibration=data)
    assert written.output_quantizers == 1
    sim.output_quantizers = False
    assert np.max(np.abs(sim.run(data, assignment) - run_file(written.proto, data))) > MISSED


@pytest.mark.parametrize("spec", ["w8a8,w8a8", "w8a8,w8a4", "fp32,w8a8"])
def test_a_folded_pad_graph_matches(spec):
    data = graphs.images(16, (3, 16, 16))
    graph, sim = prepared(graphs.padded(), data)
    assert sim.folded_pads == {"pad"}
    assignment = assignment_of(graph, spec)
    written = build_qdq(sim, assignment, int32_bias=False, calibration=data)
    assert set(written.outputs) == set(sim.output_plan(assignment))
    np.testing.assert_allclose(sim.run(data, assignment), run_file(written.proto, data), rtol=0, atol=ROUND_OFF)


@pytest.mark.parametrize("spec", ["w8a8,w8a8,w8a8,w8a8,w8a8,w8a8", "w8a8,fp32,w8a8,w8a8,w8a8,w8a8",
                                  "w8a8,w8a8,w8a8,w8a8,fp16,w8a8"])
def test_attention_matches(spec):
    data = np.random.default_rng(0).normal(size=(32, 5, 8)).astype(np.float32)
    graph, sim = prepared(graphs.attention(tokens=5, dim=8, out=4, scale=0.35, seeds=(0, 1, 2, 9)), data)
    assignment = assignment_of(graph, spec)
    written = build_qdq(sim, assignment, int32_bias=False, calibration=data)
    assert set(written.outputs) == set(sim.output_plan(assignment))
    np.testing.assert_allclose(sim.run(data, assignment), run_file(written.proto, data), rtol=0, atol=ROUND_OFF)


def test_the_export_check_now_verifies_agreement(tmp_path):
    """As deployed (ORT's fusions, int32 biases) the file is within requantization rounding of the simulation
    it was searched with; before, the added quantizers cost several dB against it."""
    data = graphs.images(32)
    graph, sim = prepared(graphs.residual(), data)
    assignment = assignment_of(graph, RESIDUAL["int8"])
    report = export_qdq(sim, assignment, tmp_path / "m.onnx", check_data=data, calibration=data)
    assert report.output_quantizers == 1 and report.fused.get("QLinearConv") == 3, report.fused
    assert report.check["sqnr_vs_simulation_db"] >= report.check["simulation_sqnr_db"] + 8.0, report.check
    assert not any("below the simulation" in note for note in report.notes), report.notes


def test_phase1_measurements_do_not_change():
    """Phase 1 measures a group's own input quantizers, as before: the extra statistics collected for output
    quantizers leave its ranges and outputs alone (compared with a simulation calibrated the old way)."""
    data = graphs.images(32)
    traced = OnnxBackend().trace(graphs.residual(), data[:1], parse_candidates("w8a8"))
    sim = traced.prepare(data, QuantScheme())
    inputs = quantized_tensors(traced.sites)
    assert set(sim.quantizers.stats) > inputs
    old_stats = collect_stats(traced.model, inputs, calibration_batches(data))
    old = OnnxSimulation(traced.model, traced.graph, traced.sites,
                         Quantizers(sim.quantizers.weights, sim.quantizers.axes, old_stats, QuantScheme()))
    new_runs, old_runs = sim.isolate(data), old.isolate(data)
    for group in traced.graph:
        for precision in ("w8a8", "w4a4", "fp16"):
            np.testing.assert_array_equal(new_runs.run(group.id, Precision.parse(precision)),
                                          old_runs.run(group.id, Precision.parse(precision)))
