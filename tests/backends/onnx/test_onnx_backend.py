"""ONNX backend: quantizable nodes, groups, MACs, shapes, exact phase-1 isolation, fake-quant fidelity."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx_graphs import GRAPHS  # noqa: E402

from mixq.backends.onnx.backend import OnnxBackend  # noqa: E402
from mixq.core.assignment import Assignment, uniform  # noqa: E402
from mixq.core.graph import OpKind  # noqa: E402
from mixq.core.precision import Precision, QuantScheme, parse_candidates  # noqa: E402
from mixq.core.quality import sqnr_db  # noqa: E402
from mixq.errors import DataError, UnsupportedModelError  # noqa: E402


@pytest.fixture
def graphs():
    return GRAPHS

CANDIDATES = parse_candidates("w4a8,w8a8,w8a16,fp16")


def prepared(model, data):
    traced = OnnxBackend().trace(model, data[:1], CANDIDATES)
    return traced, traced.prepare(data, QuantScheme())


def ort_run(model, data):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: data})[0]


def test_groups_kinds_and_macs(graphs):
    traced = OnnxBackend().trace(graphs.branches(), graphs.images(1), CANDIDATES)
    graph = traced.graph
    assert graph.ids == ("conv1", "conv_a", "fc", "proj")
    assert [op.name for op in graph["conv_a"].ops] == ["conv_a", "conv_b"]  # one input tensor: one group
    assert graph["conv1"].macs == 8 * 8 * 8 * (3 * 9)
    assert graph["conv_a"].macs == 8 * 8 * 4 * 8 + 8 * 8 * 4 * (8 * 9)
    assert graph["fc"].macs == 12 * 10 and graph["fc"].ops[0].kind is OpKind.LINEAR
    assert graph["fc"].ops[0].out_channels == 10  # Gemm transB=1: weight (out, in)
    assert graph["proj"].ops[0].out_channels == 6  # MatMul: weight (in, out)
    kept = " ".join(graph.unquantized)
    assert "conv_computed" in kept and "einsum" in kept.lower()
    assert graph.float_params == 8 * 27 + 8 + 32 + 288 + 32 + 120 + 10 + 60 + 30 + 1


def test_activation_matmuls_and_shared_projections(graphs):
    traced = OnnxBackend().trace(graphs.attention(), graphs.images(1, (4, 6)), CANDIDATES)
    graph = traced.graph
    assert graph.ids == ("q", "scores", "context", "out")
    assert [op.name for op in graph["q"].ops] == ["q", "k", "v"]
    scores = graph["scores"].ops[0]
    assert scores.kind is OpKind.MATMUL and scores.inputs == ("q", "kt") and scores.weight_numel == 0
    assert scores.macs == 4 * 4 * 6 and graph["context"].macs == 4 * 6 * 4


def test_conv_transpose_and_depthwise(graphs):
    traced = OnnxBackend().trace(graphs.deconv(), graphs.images(1, (3, 4, 4)), CANDIDATES)
    up = traced.graph["up"].ops[0]
    assert up.kind is OpKind.CONV_TRANSPOSE and up.out_channels == 2 and up.macs == 4 * 4 * 4 * (2 * 2 * 2)


def test_float_run_reproduces_the_model(graphs):
    model, data = graphs.branches(), graphs.images()
    _, sim = prepared(model, data)
    np.testing.assert_allclose(sim.run(data), ort_run(model, data), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,shape", [("branches", (3, 8, 8)), ("attention", (4, 6)), ("deconv", (3, 4, 4))])
def test_isolated_runs_equal_full_runs(graphs, name, shape):
    """Phase 1 runs only the nodes after a group, from cached float tensors: same result as a full run.

    Phase 1 measures the group's own input quantizers, not the export's output quantizer after it (the next
    integer group's input quantizer in an integer chain): the full run it equals is the one without them."""
    data = graphs.images(8, shape)
    traced, sim = prepared(getattr(graphs, name)(), data)
    sim.output_quantizers = False
    isolated = sim.isolate(data)
    np.testing.assert_allclose(isolated.reference, sim.run(data), rtol=1e-6, atol=1e-6)
    for group in traced.graph:
        for precision in CANDIDATES:
            full = sim.run(data, Assignment({group.id: precision}))
            np.testing.assert_allclose(isolated.run(group.id, precision), full, rtol=1e-5, atol=1e-6)
    assert sim.cache_bytes_per_sample() > 0


def test_precision_orders_fidelity(graphs):
    data = graphs.images(16)
    traced, sim = prepared(graphs.branches(), data)
    reference = sim.run(data)
    sqnr = {p: sqnr_db(reference, sim.run(data, uniform(traced.graph, Precision.parse(p))))
            for p in ("w2a8", "w4a8", "w8a8", "w16a16", "fp16")}
    assert sqnr["w2a8"] < sqnr["w4a8"] < sqnr["w8a8"] < sqnr["w16a16"]
    assert sqnr["w8a8"] > 30.0 and sqnr["fp16"] > 50.0


def test_module_is_a_runnable_fake_quant_model(graphs):
    data = graphs.images()
    traced, sim = prepared(graphs.branches(), data)
    assignment = uniform(traced.graph, Precision.parse("w4a8"))
    proto = sim.module(assignment)
    assert isinstance(proto, onnx.ModelProto)
    np.testing.assert_allclose(ort_run(proto, data), sim.run(data, assignment), rtol=1e-5, atol=1e-6)


def test_user_model_is_not_mutated(graphs):
    model = graphs.branches()
    before = model.SerializeToString()
    traced, sim = prepared(model, graphs.images())
    sim.run(graphs.images(), uniform(traced.graph, Precision.parse("w4a8")))
    assert model.SerializeToString() == before


def test_dynamic_spatial_dims_follow_the_data(graphs):
    small = OnnxBackend().trace(graphs.branches(), graphs.images(1, (3, 8, 8)), CANDIDATES).graph
    large = OnnxBackend().trace(graphs.branches(), graphs.images(1, (3, 12, 12)), CANDIDATES).graph
    assert large["conv1"].macs == small["conv1"].macs * 144 // 64


def test_wrong_rank_is_a_data_error(graphs):
    with pytest.raises(DataError, match="rank 4.*preprocess"):
        OnnxBackend().trace(graphs.branches(), graphs.images(1, (3, 8)), CANDIDATES)


def test_fixed_dim_mismatch_is_a_data_error(graphs):
    with pytest.raises(DataError, match="needs size 8 on axis 2"):
        OnnxBackend().trace(graphs.branches(height=8, width=8), graphs.images(1, (3, 16, 16)), CANDIDATES)


def test_shared_dimension_name_the_data_contradicts_falls_back_to_per_axis_sizes(graphs, caplog):
    model = graphs.branches(height="S", width="S")  # one symbolic size on two axes
    with caplog.at_level("WARNING", logger="mixq.backends.onnx.trace"):
        traced = OnnxBackend().trace(model, graphs.images(1, (3, 8, 12)), CANDIDATES)
    assert "per-axis fallback" in caplog.text and len(traced.graph) > 0


@pytest.mark.parametrize("name", ["?", "-1", "", -1])
def test_unknown_dimension_names_are_independent_unknowns(graphs, name, caplog):
    model = graphs.branches(batch=name if name != "" else "N", height=name, width=name)  # as PaddlePaddle exports
    data = graphs.images(3, (3, 8, 12))
    with caplog.at_level("WARNING", logger="mixq.backends.onnx.trace"):
        traced, sim = prepared(model, data)
    assert "fallback" not in caplog.text
    assert sim.run(data).shape == (3, 5)


def test_fixed_batch_that_generalises_is_relaxed(graphs):
    data = graphs.images(5, (3, 4, 4))
    traced, sim = prepared(graphs.deconv(batch=1), data)
    assert traced.model.fixed_batch is None
    assert sim.run(data).shape == (5, 7)


def test_fixed_batch_baked_into_the_graph_runs_in_chunks(graphs):
    model = graphs.deconv(batch=1, hardcoded_reshape=True)
    data = graphs.images(5, (3, 4, 4))
    traced, sim = prepared(model, data)
    assert traced.model.fixed_batch == 1
    expected = np.concatenate([ort_run(model, data[i:i + 1]) for i in range(5)])
    np.testing.assert_allclose(sim.run(data), expected, rtol=1e-5, atol=1e-6)
    isolated = sim.isolate(data)
    full = sim.run(data, Assignment({"up": Precision.parse("w4a8")}))
    np.testing.assert_allclose(isolated.run("up", Precision.parse("w4a8")), full, rtol=1e-5, atol=1e-6)


def test_model_without_quantizable_ops(graphs):
    from onnx import TensorProto, helper

    model = graphs.model([helper.make_node("Relu", ["x"], ["y"], name="relu")],
                         [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                         [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [])
    with pytest.raises(UnsupportedModelError, match="no quantizable op"):
        OnnxBackend().trace(model, graphs.images(1, (3,)), CANDIDATES)


def test_nan_output_is_reported(graphs):
    from onnx import numpy_helper

    model = graphs.branches()
    weight = next(t for t in model.graph.initializer if t.name == "bfc")
    weight.CopyFrom(numpy_helper.from_array(np.full(10, np.nan, np.float32), "bfc"))
    _, sim = prepared(model, graphs.images(2))
    with pytest.raises(UnsupportedModelError, match="NaN or Inf"):
        sim.run(graphs.images(2))
