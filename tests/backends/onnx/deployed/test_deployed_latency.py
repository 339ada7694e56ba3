"""The deployed-graph latency model in ONNX Runtime: edges, attribution, probes, kernel prediction, cache.

Timing precision is never asserted (2 shared cores): structure, sums, kernels, loose totals, cache reuse.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from mixq.backends.onnx.backend import OnnxBackend  # noqa: E402
from mixq.backends.onnx.deployed.attribute import GroupMatcher, attribute, matcher  # noqa: E402
from mixq.backends.onnx.deployed.edges import group_edges  # noqa: E402
from mixq.backends.onnx.deployed.model import (  # noqa: E402
    DeployedFit,
    feeds_of,
    fit_deployed,
    plan_proto,
    predict,
    predicted_kernels,
    profiler_for,
)
from mixq.backends.onnx.deployed.ort_profile import OrtProfiler  # noqa: E402
from mixq.backends.onnx.deployed.probes import ProbeSettings, combos, covered, probe_plans  # noqa: E402
from mixq.backends.onnx.deployed.profile import DeployedGraph, DeployedNode  # noqa: E402
from mixq.backends.onnx.testing import images, init, model, residual  # noqa: E402
from mixq.core.graph import GroupId  # noqa: E402
from mixq.core.precision import Precision, QuantScheme  # noqa: E402
from mixq.cost.base import total_cost  # noqa: E402
from mixq.cost.deployed import DeployedLatency  # noqa: E402
from mixq.cost.measured_latency import CACHE_ENV  # noqa: E402
from mixq.core.assignment import Assignment  # noqa: E402
from mixq.errors import CapabilityError  # noqa: E402
from mixq.prepared import Prepared, prepare  # noqa: E402

W8, FP = Precision.parse("w8a8"), Precision.parse("fp32")


@pytest.fixture(autouse=True)
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def chain(convs: int = 5, channels: int = 16) -> Any:
    """conv -> relu -> ... (``convs`` 3x3 convs) -> pool -> fc: a chain where every group has one consumer."""
    inits, nodes, x = [], [], "x"
    for i in range(convs):
        cin = 3 if i == 0 else channels
        inits += [init(f"w{i}", (channels, cin, 3, 3), 10 + i, 0.2), init(f"b{i}", (channels,), 30 + i, 0.1)]
        nodes += [helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        x = f"r{i}"
    inits += [init("wfc", (10, channels), 50, 0.3), init("bfc", (10,), 51, 0.1)]
    nodes += [helper.make_node("GlobalAveragePool", [x], ["p"], name="pool"),
              helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
              helper.make_node("Gemm", ["f", "wfc", "bfc"], ["y"], name="fc", transB=1)]
    return model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return images(8, (3, 16, 16))


@pytest.fixture(scope="module")
def residual_net(data: np.ndarray) -> Prepared:
    return prepare(residual(16), data, ["w8a8", "fp32"], QuantScheme(), 8, 1)


@pytest.fixture(scope="module")
def chain_net(data: np.ndarray) -> Prepared:
    return prepare(chain(), data, ["w8a8", "fp32"], QuantScheme(), 8, 1)


@pytest.fixture(scope="module")
def chain_fit(chain_net: Prepared, data: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> DeployedFit:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
        return fit_deployed(chain_net.sim, data, threads=1, use_cache=False)


def plan(net: Prepared, text: str) -> dict[GroupId, Precision]:
    return {g: Precision.parse(p) for g, p in zip(net.graph.ids, text.split(","))}


def test_edges_of_a_residual_graph(residual_net: Prepared) -> None:
    structure = group_edges(residual_net.sim)
    # conv1's output feeds conv2 and (through the Add, Relu, pooling) the fc; conv3 feeds the fc through the Add
    assert set(structure.edges) == {("conv1", "conv2"), ("conv2", "conv3"), ("conv1", "fc"), ("conv3", "fc")}
    assert len(structure.edges) == len(set(structure.edges))
    assert structure.order == ("conv1", "conv2", "conv3", "fc")
    assert structure.reads_input == {"conv1"} and structure.feeds_output == {"fc"}
    assert structure.consumers("conv1") == ("conv2", "fc")


@pytest.mark.parametrize("text", ["w8a8,w8a8,w8a8,w8a8", "w8a8,fp32,w8a8,w8a8", "fp32,w8a8,fp32,w8a8",
                                  "fp32,fp32,fp32,fp32"])
def test_attribution_sums_to_the_profiled_nodes(residual_net: Prepared, data: np.ndarray, text: str) -> None:
    sim = residual_net.sim
    chosen = plan(residual_net, text)
    graph = OrtProfiler().profile(plan_proto(sim, chosen, data), feeds_of(sim, data), threads=1, runs=5, warmup=1)
    parts = attribute(graph, matcher(sim), group_edges(sim).edges)
    assert parts.total == pytest.approx(graph.node_ms, abs=1e-9)
    assert set(parts.kernels) == set(sim.graph.ids)  # every group's kernel was found
    assert set(parts.where) == {node.name for node in graph.nodes}
    for group, precision in chosen.items():
        if precision == W8 and group != "fc":
            assert parts.kernels[group] in ("QLinearConv", "FusedConv", "Conv")
        if precision == FP and group != "fc":
            assert parts.kernels[group] in ("Conv[nchwc]", "FusedConv", "Conv")


def test_attribution_of_a_synthetic_graph_splits_by_wiring() -> None:
    """Compute nodes by name, ORT's renamings, and a runtime's originals; the rest by its nearest groups."""

    nodes = [DeployedNode("x_q", "QuantizeLinear", 1.0, ("x",), ("xq",)),
             DeployedNode("a_token_3", "QLinearConv", 10.0, ("xq", "wa::w8_q"), ("ya",)),
             DeployedNode("T", "Transpose", 2.0, ("ya",), ("t",)),
             DeployedNode("y_dq", "DequantizeLinear", 3.0, ("t",), ("yd",)),
             DeployedNode("wb::w8_dequantize", "DequantizeLinear", 4.0, ("wb::w8_q",), ("wb",)),
             DeployedNode("b", "FusedConv", 20.0, ("yd", "wb"), ("yb",)),
             DeployedNode("ov", "Convolution", 30.0, ("yb",), ("yc",), originals=("c", "relu_c")),
             DeployedNode("softmax", "Softmax", 5.0, ("yc",), ("out",))]
    match = GroupMatcher({"a": "a", "b": "b", "c": "c"}, {}, {"wa": "a", "wb": "b"})
    parts = attribute(DeployedGraph(tuple(nodes), 80.0), match, [("a", "b"), ("b", "c")])
    assert parts.kernels == {"a": "QLinearConv", "b": "FusedConv", "c": "Convolution"}
    assert parts.edges == {("a", "b"): 5.0}  # the transpose and the dequantize between a and b
    assert parts.own == {"a": 11.0, "b": 24.0, "c": 35.0}  # input Q to a, weight DQ to b, the tail to c
    assert parts.fixed == 0.0 and parts.total == 75.0


def test_probes_are_deterministic_and_cover_every_combination(chain_net: Prepared) -> None:
    structure = group_edges(chain_net.sim)
    candidates = {g.id: tuple(g.candidates) for g in chain_net.graph}
    first = probe_plans(structure.order, candidates, structure.edges, ProbeSettings(seed=3))
    again = probe_plans(structure.order, candidates, structure.edges, ProbeSettings(seed=3))
    assert first == again
    assert first.coverage == 1.0 and not first.missing
    assert {c for p in first.plans for c in covered(p, structure.edges)} == set(combos(structure.edges, candidates))
    assert first.plans[0] == {g: W8 for g in structure.order} and first.plans[1] == {g: FP for g in structure.order}
    capped = probe_plans(structure.order, candidates, structure.edges, ProbeSettings(cap=3, random=0))
    assert len(capped.plans) == 3 and capped.coverage < 1.0 and capped.missing


def test_predicted_kernels_match_what_ort_runs_for_a_new_plan(chain_net: Prepared, chain_fit: DeployedFit,
                                                               data: np.ndarray) -> None:
    sim = chain_net.sim
    # conv0 int8 -> conv1 int8: QLinearConv; conv1 int8 whose float consumer (conv2) feeds int8 conv3: unfused
    fresh = plan(chain_net, "w8a8,w8a8,fp32,w8a8,w8a8,fp32")
    assert fresh not in chain_fit.probes
    graph = OrtProfiler().profile(plan_proto(sim, fresh, data), feeds_of(sim, data), threads=1, runs=3, warmup=1)
    ran = attribute(graph, matcher(sim), group_edges(sim).edges).kernels
    assert ran["conv0"] == "QLinearConv"
    assert ran["conv1"] in ("FusedConv", "Conv")
    assert predicted_kernels(chain_fit, fresh) == ran


def test_the_model_predicts_the_measured_total_loosely(chain_net: Prepared, chain_fit: DeployedFit,
                                                       data: np.ndarray) -> None:
    sim = chain_net.sim
    model = chain_fit.model
    assert chain_fit.coverage == 1.0 and model.coverage() == 1.0
    assert model.reference_ms > 0 and model.runtime == "onnxruntime"
    for text in ("w8a8,fp32,w8a8,fp32,w8a8,w8a8", "fp32,w8a8,w8a8,fp32,fp32,w8a8"):
        chosen = plan(chain_net, text)
        measured = OrtProfiler().profile(plan_proto(sim, chosen, data), feeds_of(sim, data), threads=1).wall_ms
        predicted = predict(model, chosen)
        assert measured / 2 <= predicted <= measured * 2
        # the model is a pairwise CostModel: the generic total agrees with its own prediction
        assert total_cost(model, chain_net.graph, Assignment(chosen)) == pytest.approx(predicted)


class CountingProfiler:
    """ONNX Runtime's profiler, counting the files it profiles."""

    runtime = "onnxruntime"

    def __init__(self) -> None:
        self.inner = OrtProfiler()
        self.calls = 0

    def version(self) -> str:
        return self.inner.version()

    def profile(self, proto: Any, feeds: Mapping[str, np.ndarray], threads: int | None = None, runs: int = 30,
                warmup: int = 5) -> DeployedGraph:
        self.calls += 1
        return self.inner.profile(proto, feeds, threads, runs=3, warmup=1)


class KilledAfter(CountingProfiler):
    """Dies (as a killed process would stop) after ``limit`` profiles."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def profile(self, proto: Any, feeds: Mapping[str, np.ndarray], threads: int | None = None, runs: int = 30,
                warmup: int = 5) -> DeployedGraph:
        if self.calls >= self.limit:
            raise KeyboardInterrupt
        return super().profile(proto, feeds, threads, runs, warmup)


def test_a_killed_fit_resumes_without_profiling_again(residual_net: Prepared, data: np.ndarray,
                                                      cache_root: Path) -> None:
    """The probes are measurements: a fit killed part-way keeps what it finished and profiles only the rest."""
    with pytest.raises(KeyboardInterrupt):
        fit_deployed(residual_net.sim, data, threads=1, profiler=KilledAfter(7))  # 3 probes (anchor + probe each)
    assert list(cache_root.glob("latency/deployed/*.probes.jsonl"))
    again = CountingProfiler()
    resumed = fit_deployed(residual_net.sim, data, threads=1, profiler=again)
    total = 2 * len(resumed.probes) * ProbeSettings().rounds
    assert again.calls == total - 6  # the 3 finished probe profiles (and their anchor runs) are not redone
    assert not list(cache_root.glob("latency/deployed/*.probes.jsonl"))  # folded into the saved model
    assert resumed.model.probes == len(resumed.probes)


def test_the_model_is_cached_and_reused_without_profiling(residual_net: Prepared, data: np.ndarray,
                                                          cache_root: Path) -> None:
    counting = CountingProfiler()
    progress: list[tuple[str, int, int]] = []
    first = fit_deployed(residual_net.sim, data, threads=1, profiler=counting,
                         progress=lambda *a: progress.append(a))
    rounds = ProbeSettings().rounds  # each file profiled that many times in turn, the fastest kept
    # each probe profiled in every round, each right after a short run of the float file (the drift anchor)
    assert counting.calls == first.profiled == 2 * len(first.probes) * rounds
    # one progress step per probe profile (its anchor run is part of it)
    assert progress[0] == ("latency model", 0, len(first.probes) * rounds) and progress[-1][1] == progress[-1][2]
    assert list(cache_root.glob("latency/deployed/*.json"))
    again = CountingProfiler()
    second = fit_deployed(residual_net.sim, data, threads=1, profiler=again)
    assert again.calls == 0 and second.profiled == 0
    assert second.model.to_records() == first.model.to_records()
    assert isinstance(DeployedLatency.from_records(second.model.to_records()), DeployedLatency)
    other = CountingProfiler()
    fit_deployed(residual_net.sim, data, threads=2, profiler=other)  # another thread count: measured anew
    assert other.calls > 0


def test_the_backend_measures_through_its_runtime_profiler(residual_net: Prepared, data: np.ndarray) -> None:
    model = OnnxBackend().measure_deployed_latency(residual_net.sim, data, threads=1)
    assert isinstance(model, DeployedLatency)
    assert {g for g, _ in model.unary} == set(residual_net.graph.ids)
    with pytest.raises(CapabilityError, match="no deployed-latency profiler for runtime 'nope'"):
        profiler_for("nope")


def test_the_fit_moves_a_kernel_that_depends_on_its_consumer_into_the_edge() -> None:
    """An int8 producer runs unfused (slower) when its consumer is float: unary holds its mean, the edge the
    difference, so every probe's total is reproduced exactly."""
    from mixq.backends.onnx.deployed.attribute import Attribution
    from mixq.backends.onnx.deployed.model import fit

    own_a = {(W8, W8): 10.0, (W8, FP): 16.0, (FP, W8): 20.0, (FP, FP): 20.0}
    own_b = {W8: 5.0, FP: 9.0}
    between = {(W8, W8): 0.0, (W8, FP): 2.0, (FP, W8): 3.0, (FP, FP): 0.0}
    plans, graphs, parts = [], [], []
    for p, q in own_a:
        found = Attribution(own={"a": own_a[(p, q)], "b": own_b[q]}, edges={("a", "b"): between[(p, q)]})
        plans.append({"a": p, "b": q})
        parts.append(found)
        graphs.append(DeployedGraph((DeployedNode("all", "X", found.total),), found.total + 1.0))
    model = fit(plans, graphs, parts, [("a", "b")], {"a": (W8, FP), "b": (W8, FP)}, 30.0, "onnxruntime")
    assert model.unary[("a", W8)] == 13.0 and model.fixed_ms == 1.0
    assert model.pairs[("a", "b")][(W8, W8)] == -3.0 and model.pairs[("a", "b")][(W8, FP)] == 5.0
    for chosen, graph in zip(plans, graphs):
        assert predict(model, chosen) == pytest.approx(graph.wall_ms)


def test_files_are_profiled_in_rounds_and_the_fastest_profile_is_kept() -> None:
    from mixq.backends.onnx.deployed.model import fastest_profiles

    walls = iter([5.0, 9.0, 3.0, 12.0])  # round 1: files 0, 1; round 2: files 0, 1
    made: list[int] = []

    class Fake:
        runtime = "fake"

        def version(self) -> str:
            return "0"

        def profile(self, proto: Any, feeds: Mapping[str, np.ndarray], threads: int | None = None, runs: int = 30,
                    warmup: int = 5) -> DeployedGraph:
            return DeployedGraph((), next(walls))

    def make(i: int) -> Any:
        made.append(i)
        return onnx.ModelProto()

    graphs = fastest_profiles(Fake(), [lambda: make(0), lambda: make(1)], {}, None, rounds=2)
    assert [g.wall_ms for g in graphs] == [3.0, 9.0]
    assert made == [0, 1]  # each file made once
