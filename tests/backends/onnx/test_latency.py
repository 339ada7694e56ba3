"""Per-group kernel models and their timing in ONNX Runtime (a fake clock where numbers must be exact)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import numpy_helper  # noqa: E402
from onnx_graphs import GRAPHS  # noqa: E402

from mixq.backends.onnx.backend import OnnxBackend  # noqa: E402
from mixq.backends.onnx.latency import fingerprint, kernel_model, measure_latency  # noqa: E402
from mixq.backends.onnx.timing import Timer, kernel_of  # noqa: E402
from mixq.core.precision import Precision, parse_candidates  # noqa: E402
from mixq.cost.measured_latency import CACHE_ENV, cache_path  # noqa: E402

FP32, FP16, W8A8, W4A8, W8A16 = (Precision.parse(t) for t in ("fp32", "fp16", "w8a8", "w4a8", "w8a16"))


@pytest.fixture(autouse=True)
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


class FakeClock:
    """Advances ``step`` seconds per call: every timed run takes exactly ``step``."""

    def __init__(self, step: float = 0.001) -> None:
        self.now, self.step, self.calls = 0.0, step, 0

    def __call__(self) -> float:
        self.calls += 1
        self.now += self.step
        return self.now


def traced(model=None, shape=(3, 16, 16), candidates="fp32,w8a8"):
    return OnnxBackend().trace(model if model is not None else GRAPHS.branches(), GRAPHS.images(1, shape),
                               parse_candidates(candidates))


def ops(proto) -> list[str]:
    return [node.op_type for node in proto.graph.node]


def run(proto, feeds):
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def test_fp32_kernel_model_is_the_group_alone_and_computes_what_the_model_does() -> None:
    t = traced()
    group = t.graph["conv_a"]  # conv_a and conv_b read one tensor: one group, one input
    assert [op.name for op in group.ops] == ["conv_a", "conv_b"]
    proto, feeds = kernel_model(t, group, FP32)
    onnx.checker.check_model(proto)
    assert ops(proto) == ["Conv", "Conv"]
    assert list(feeds) == ["h"] and feeds["h"].shape == (1, 8, 16, 16)
    out_a, out_b = run(proto, feeds)
    assert out_a.shape == (1, 4, 16, 16) and out_b.shape == (1, 4, 16, 16)
    w = numpy_helper.to_array(t.model.index.initializers["wa"])  # 1x1 conv: a channel mix
    np.testing.assert_allclose(out_a[0], np.einsum("oc,chw->ohw", w[:, :, 0, 0], feeds["h"][0]), rtol=1e-4,
                               atol=1e-5)


def test_integer_kernel_model_is_the_qdq_form_ort_fuses() -> None:
    t = traced()
    proto, feeds = kernel_model(t, t.graph["conv1"], W8A8)
    onnx.checker.check_model(proto)
    # uint8 in (what the previous integer kernel hands over) -> DQ, int8 per-channel weights, int32 bias,
    # the conv, and the next kernel's QuantizeLinear: ORT fuses all of it into one QLinearConv
    assert sorted(ops(proto)) == sorted(["DequantizeLinear", "DequantizeLinear", "DequantizeLinear", "Conv",
                                         "QuantizeLinear"])
    assert [i.type.tensor_type.elem_type for i in proto.graph.input] == [onnx.TensorProto.UINT8]
    assert [o.type.tensor_type.elem_type for o in proto.graph.output] == [onnx.TensorProto.UINT8]
    assert feeds["x::int8"].dtype == np.uint8
    inits = {i.name: i for i in proto.graph.initializer}
    assert inits["w1::w8_q"].data_type == onnx.TensorProto.INT8
    assert inits["b1::int32_q"].data_type == onnx.TensorProto.INT32
    assert inits["x::q8_zero"].data_type == onnx.TensorProto.UINT8
    weight_dq = next(n for n in proto.graph.node if n.output[0] == "w1::w8")
    assert {a.name: a.i for a in weight_dq.attribute} == {"axis": 0}  # per output channel
    assert run(proto, feeds)[0].shape == (1, 8, 16, 16)


def test_wide_narrow_and_fp16_kernel_models() -> None:
    t = traced()
    wide, _ = kernel_model(t, t.graph["conv1"], W8A16)
    inits = {i.name: i for i in wide.graph.initializer}
    assert inits["x::q16_zero"].data_type == onnx.TensorProto.UINT16
    assert "b1::int32_q" not in inits  # the int32 bias is for 8-bit kernels only
    narrow, feeds = kernel_model(t, t.graph["conv1"], W4A8)
    assert {i.name: i for i in narrow.graph.initializer}["w1::w4_q"].data_type == onnx.TensorProto.INT4
    half, _ = kernel_model(t, t.graph["fc"], FP16)
    assert ops(half).count("Cast") == 3  # activation to fp16 and back, fp16 weight to fp32
    for proto in (wide, narrow, half):
        onnx.checker.check_model(proto)
    assert run(narrow, feeds)[0].shape == (1, 8, 16, 16)


def test_activation_matmul_quantizes_both_operands() -> None:
    t = OnnxBackend().trace(GRAPHS.attention(), np.ones((1, 4, 6), np.float32), parse_candidates("w8a8"))
    proto, feeds = kernel_model(t, t.graph["scores"], W8A8)
    assert sorted(feeds) == ["kt::int8", "q::int8"]  # both operands arrive as 8-bit tensors
    assert ops(proto).count("DequantizeLinear") == 2 and ops(proto).count("QuantizeLinear") == 1  # + the output
    assert run(proto, feeds)[0].shape == (1, 4, 4)


def test_timer_takes_the_median_of_repeated_runs_after_warmup() -> None:
    t = traced()
    proto, feeds = kernel_model(t, t.graph["fc"], FP32)
    clock = FakeClock(0.002)
    ms, graph_ops = Timer(threads=1, warmup=2, min_runs=5, min_seconds=0.0, clock=clock, kernels_only=False).measure(proto, feeds)
    assert ms == pytest.approx(2.0)
    assert clock.calls == 2 * 5  # warm-up runs are not timed
    assert kernel_of(graph_ops) == "Gemm"
    longer = FakeClock(0.002)
    Timer(threads=1, warmup=0, min_runs=1, max_runs=8, min_seconds=0.01, clock=longer).measure(proto, feeds)
    assert longer.calls == 2 * 5  # runs until 10 ms were spent
    capped = FakeClock(0.002)
    Timer(threads=1, warmup=0, min_runs=1, max_runs=3, min_seconds=1.0, clock=capped).measure(proto, feeds)
    assert capped.calls == 2 * 3


def test_kernel_of_ignores_plumbing() -> None:
    assert kernel_of(["QuantizeLinear", "Transpose", "QLinearConv", "Transpose", "DequantizeLinear"]) == "QLinearConv"
    assert kernel_of(["Cast", "Cast", "Conv[nchwc]", "ReorderOutput[nchwc]"]) == "Conv[nchwc]"
    assert kernel_of(["DequantizeLinear", "Conv", "QuantizeLinear", "Conv"]) == "Conv"


def test_measure_latency_fills_the_table_records_fused_kernels_and_caches_it() -> None:
    t = traced(candidates="fp32,w8a8")
    timer = Timer(threads=1, warmup=0, min_runs=1, min_seconds=0.0, clock=FakeClock(0.001), kernels_only=False)
    calls: list[tuple[str, int, int]] = []
    table = measure_latency(t, timer=timer, progress=lambda *a: calls.append(a))
    assert set(table.entries) == {(g.id, p) for g in t.graph for p in (FP32, W8A8)}
    assert all(entry.ms == pytest.approx(1.0) for entry in table.entries.values())
    assert table.measured == len(table.entries) == 8
    assert calls[-1][1:] == (8, 8)
    kernels = {(g, str(p)): e.kernel for (g, p), e in table.entries.items()}
    # ORT's QDQ fusions for 8-bit: the integer kernels really run
    assert kernels[("conv1", "w8a8")] == "QLinearConv"
    assert kernels[("fc", "w8a8")] == "QGemm"
    assert kernels[("proj", "w8a8")] == "QLinearMatMul"
    assert kernels[("conv1", "fp32")].startswith("Conv") and kernels[("fc", "fp32")] == "Gemm"
    assert table.extra["model_fp32_ms"] == pytest.approx(1.0)
    assert cache_path(table.key).is_file()
    stored = json.loads(cache_path(table.key).read_text())
    assert stored["key"]["machine"]["onnxruntime"] == ort.__version__
    assert stored["key"]["timer"]["threads"] == 1
    again = measure_latency(traced(candidates="fp32,w8a8"), timer=timer)
    assert again.measured == 0 and again.entries == table.entries
    more = measure_latency(traced(candidates="fp32,w8a8,fp16"), timer=timer)
    assert more.measured == 4  # only the fp16 entries are new


def test_fingerprint_follows_structure_and_shapes_not_weights() -> None:
    base = fingerprint(traced())
    assert fingerprint(traced()) == base
    assert fingerprint(traced(shape=(3, 8, 8))) != base  # other input size, other kernels
    changed = GRAPHS.branches()
    weight = next(i for i in changed.graph.initializer if i.name == "w1")
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 2, "w1"))
    assert fingerprint(traced(changed)) == base


def test_search_by_measured_latency_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake timer: 1 ms when ORT fused an integer kernel, 4 ms otherwise. Four groups: all w8a16 (not fused)
    is the 16 ms reference, so latency<=0.3 (4.8 ms) leaves only all w8a8 (4 ms)."""
    from mixq.api import search
    from mixq.config import SearchConfig

    real = Timer.measure

    def fake_measure(self, proto, feeds):
        graph_ops = real(Timer(threads=1, warmup=0, min_runs=1, min_seconds=0.0), proto, feeds)[1]
        fused = any(op.startswith(("QLinear", "QGemm")) for op in graph_ops)
        return (1.0 if fused else 4.0), graph_ops

    monkeypatch.setattr(Timer, "measure", fake_measure)
    data = GRAPHS.images(8, (3, 16, 16))
    config = SearchConfig(candidates=parse_candidates("w8a8,w8a16"), budgets=("latency<=0.3",), cost="latency",
                          num_samples=4, solver="ilp", latency_model="kernels", verify=0)
    stages: list[str] = []
    result = search(GRAPHS.branches(), data, config, out=tmp_path / "run", progress=lambda s, d, n: stages.append(s))
    assert any(stage.startswith("latency") for stage in stages)
    assert {str(p) for _, p in result.plan.assignment.items()} == {"w8a8"}  # w8a16 is not fused: 4 ms
    assert result.plan.costs["latency"].value == pytest.approx(4 * 1.0)
    assert result.plan.costs["latency"].ratio == pytest.approx(0.25)
    written = json.loads((tmp_path / "run" / "latency_table.json").read_text())
    assert written["kernels"]["w8a8"] == {"QLinearConv": 2, "QGemm": 1, "QLinearMatMul": 1}
    assert written["bops_vs_latency"]["within_group"]["mean_spearman"] == pytest.approx(1.0)
    assert "latency_table_s" in result.timings


def test_a_bias_shared_through_identity_is_a_constant_and_fuses() -> None:
    """torch's exporter shares equal folded-BN biases through ``Identity`` nodes: still a constant bias."""
    from onnx import TensorProto, helper

    inits = [GRAPHS.init("w", (4, 3, 3, 3), 1), GRAPHS.init("b_shared", (4,), 2, 0.1)]
    nodes = [helper.make_node("Identity", ["b_shared"], ["b"], name="share"),
             helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[1, 1, 1, 1])]
    model = GRAPHS.model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                         [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])], inits)
    t = OnnxBackend().trace(model, GRAPHS.images(1), parse_candidates("w8a8"))
    proto, feeds = kernel_model(t, t.graph["conv"], W8A8)
    assert list(feeds) == ["x::int8"]  # the bias is not fed as data
    assert "b_shared::int32_q" in {i.name for i in proto.graph.initializer}
    _, graph_ops = Timer(threads=1, warmup=0, min_runs=1, min_seconds=0.0).measure(proto, feeds)
    assert kernel_of(graph_ops) == "QLinearConv"


def test_kernel_time_sums_compute_nodes_per_run_and_skips_layout_changes(tmp_path) -> None:
    import json

    from mixq.backends.onnx.timing import _kernel_ms

    def node(op: str, dur: int) -> dict:
        return {"cat": "Node", "name": f"{op}_kernel_time", "dur": dur, "args": {"op_name": op}}

    events = [{"cat": "Session", "name": "model_run", "dur": 999}]
    for conv in (900, 800, 100, 120, 110):  # two warm-up runs, then three timed ones
        events += [node("Transpose", 50), node("QLinearConv", conv), node("Add", 10), node("Transpose", 40)]
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(events))
    assert _kernel_ms(str(profile), warmup=2, runs=3) == pytest.approx(0.120)  # median of 110, 130, 120 us
    assert _kernel_ms(str(profile), warmup=1, runs=3) is None  # events do not split into the runs made


def test_a_real_kernel_timing_counts_no_layout_nodes() -> None:
    t = traced()
    proto, feeds = kernel_model(t, t.graph["conv1"], Precision.parse("fp32"))
    ms, graph_ops = Timer(threads=1, warmup=1, min_runs=3, min_seconds=0.0).measure(proto, feeds)
    assert ms > 0 and kernel_of(graph_ops).split("[")[0] == "Conv"
