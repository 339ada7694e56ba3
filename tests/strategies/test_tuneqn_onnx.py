"""TuneQn on the ONNX backend: layer outputs with known answers, agreement with torch, search and resume.

Tolerances (measured: the differences are float rounding between ONNX Runtime and torch):
- probe / float outputs against a direct ONNX Runtime run: rtol 1e-5;
- torch vs ONNX layer errors: same ranking, relative errors within rtol 1e-3, local SQNR within 0.05 dB
  (measured: identical to 6 digits, largest SQNR gap 0.03 dB at fp16).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from mixq import api
from mixq.prepared import prepare  # noqa: E402
from mixq.config import SearchConfig  # noqa: E402
from mixq.core.assignment import Assignment  # noqa: E402
from mixq.core.precision import Precision, QuantScheme  # noqa: E402
from mixq.data.dataset import ArrayDataset  # noqa: E402
from mixq.errors import CapabilityError  # noqa: E402
from mixq.evaluation import Evaluator  # noqa: E402
from mixq.export import export as export_plan  # noqa: E402
from mixq.strategies.tuneqn import layer_errors, ranking, run_tuneqn  # noqa: E402
from mixq.backends.onnx import testing as graphs  # noqa: E402
from mixq.backends.torch.testing import ResidualNet, random_images  # noqa: E402

W4A8, W8A8, FP16, FP32 = (Precision.parse(p) for p in ("w4a8", "w8a8", "fp16", "fp32"))


def layered(fixed_batch: bool = False) -> onnx.ModelProto:
    """conv1 -> relu -> {conv_a, conv_b} (one group) -> add -> relu -> pool -> flatten -> fc (Gemm)
    -> proj (MatMul + bias Add, a Linear on tokens as torch exports it). ``fixed_batch``: the input has
    batch 1 and the flatten is a Reshape to (1, -1), so the model only runs at batch 1."""
    inits = [graphs.init("w1", (4, 3, 3, 3), 1), graphs.init("b1", (4,), 2, 0.1), graphs.init("wa", (4, 4, 1, 1), 3),
             graphs.init("wb", (4, 4, 3, 3), 4, 0.2), graphs.init("wfc", (6, 4), 5), graphs.init("bfc", (6,), 6, 0.1),
             graphs.init("wproj", (6, 5), 7), graphs.init("bproj", (5,), 8, 0.5),
             numpy_helper.from_array(np.array([1, -1], np.int64), "shape")]
    flatten = (helper.make_node("Reshape", ["p", "shape"], ["f"], name="flatten") if fixed_batch
               else helper.make_node("Flatten", ["p"], ["f"], name="flatten"))
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["h"], name="relu1"),
        helper.make_node("Conv", ["h", "wa"], ["a"], name="conv_a"),
        helper.make_node("Conv", ["h", "wb"], ["b"], name="conv_b", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["a", "b"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["r"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        flatten,
        helper.make_node("Gemm", ["f", "wfc", "bfc"], ["fc"], name="fc", transB=1),
        helper.make_node("MatMul", ["fc", "wproj"], ["mm"], name="proj"),
        helper.make_node("Add", ["mm", "bproj"], ["y"], name="proj_bias"),
    ]
    batch = 1 if fixed_batch else "N"
    return graphs.model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 6, 6])],
                        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 5])], inits)


#: Each group's output tensors, in op order (``proj``: its bias Add's output, as torch's Linear).
OUTPUTS = {"conv1": ["c1"], "conv_a": ["a", "b"], "fc": ["fc"], "proj": ["y"]}


def direct(model: onnx.ModelProto, data: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """ONNX Runtime on the float model with ``names`` as extra outputs, one sample at a time."""
    extended = onnx.ModelProto()
    extended.CopyFrom(model)
    existing = {o.name for o in extended.graph.output}
    extended.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in existing)
    session = ort.InferenceSession(extended.SerializeToString(), providers=["CPUExecutionProvider"])
    runs = [session.run(names, {"x": data[i:i + 1]}) for i in range(len(data))]
    return {name: np.concatenate([run[k] for run in runs]) for k, name in enumerate(names)}


def expected_outputs(model: onnx.ModelProto, data: np.ndarray) -> dict[str, np.ndarray]:
    values = direct(model, data, sorted({n for names in OUTPUTS.values() for n in names}))
    return {g: np.concatenate([values[n].reshape(len(data), -1) for n in names], axis=1) for g, names in OUTPUTS.items()}


@pytest.mark.parametrize("fixed_batch", [False, True])
def test_probe_returns_each_groups_op_outputs(fixed_batch: bool) -> None:
    model = layered(fixed_batch)
    data = random_images(6, (3, 6, 6), seed=1)
    s = prepare(model, data, "w4a8,w8a8,fp16,fp32", QuantScheme(), 6)
    assert s.sim.model.fixed_batch == (1 if fixed_batch else None)  # 1: every run is chunked sample by sample
    assert [g.id for g in s.graph] == list(OUTPUTS) and [o.name for o in s.graph["conv_a"].ops] == ["conv_a", "conv_b"]
    expected = expected_outputs(model, data)
    probed = s.sim.probe(data)
    isolated = s.sim.isolate(data)
    for group, values in expected.items():
        np.testing.assert_allclose(probed[group], values, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(isolated.float_outputs(group), values, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(isolated.local(group, FP32), isolated.float_outputs(group))

    # only fc quantized: upstream groups unchanged, fc and what follows differ; fc's inputs are float, so
    # its output in the quantized model is its local (QDQ) output
    quantized = s.sim.probe(data, Assignment({"fc": W4A8}))
    for group in ("conv1", "conv_a"):
        np.testing.assert_allclose(quantized[group], expected[group], rtol=1e-5, atol=1e-6)
    for group in ("fc", "proj"):
        assert np.abs(quantized[group] - expected[group]).max() > 1e-3
    np.testing.assert_allclose(isolated.local("fc", W4A8), quantized["fc"], rtol=1e-5, atol=1e-6)
    # the first group reads the model input: in the fully quantized model it is its local output
    low = Assignment({g: W4A8 for g in OUTPUTS})
    np.testing.assert_allclose(isolated.local("conv1", W4A8), s.sim.probe(data, low)["conv1"], rtol=1e-5, atol=1e-6)
    # fewer bits, more damage: the local error orders the candidates
    errors = [float(np.abs(isolated.local("conv_a", p) - expected["conv_a"]).mean()) for p in (W4A8, W8A8, FP16)]
    assert errors[0] > errors[1] > errors[2] > 0


class Tokens(torch.nn.Module):
    """Two Linear layers on (N, 4, 6) tokens: exported as MatMul + Add (the bias outside the MatMul)."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.a, self.b = torch.nn.Linear(6, 12), torch.nn.Linear(12, 5)
            torch.nn.init.normal_(self.a.bias, std=0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def export(module: torch.nn.Module, path: Path, sample: np.ndarray) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.from_numpy(sample),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, opset_version=17)
    return str(path)


@pytest.mark.parametrize("name", ["ResidualNet", "Tokens"])
def test_torch_and_onnx_give_the_same_layer_errors_and_ranking(name: str, tmp_path: Path) -> None:
    if name == "ResidualNet":
        module, data = ResidualNet().eval(), random_images(16, seed=4)
    else:
        module, data = Tokens().eval(), np.random.default_rng(0).standard_normal((16, 4, 6)).astype(np.float32)
    candidates = "w4a8,w8a8,fp16,fp32"
    results = []
    for model in (module, export(module, tmp_path / f"{name}.onnx", data[:2])):
        s = prepare(model, data, candidates, QuantScheme(), len(data))
        results.append(layer_errors(s.sim, data, Assignment({g.id: W4A8 for g in s.graph})))
    from_torch, from_onnx = results
    # group names differ (module paths vs node names) but the graph order is the same: rank by position
    positions = [{e.group: i for i, e in enumerate(errors)} for errors in results]
    assert len(from_torch) == len(from_onnx) >= 2
    assert [positions[0][g] for g in ranking(from_torch)] == [positions[1][g] for g in ranking(from_onnx)]
    for t, o in zip(from_torch, from_onnx):
        assert o.qdq_err == pytest.approx(t.qdq_err, rel=1e-3)
        assert o.xmodel_err == pytest.approx(t.xmodel_err, rel=1e-3)
        assert o.score == pytest.approx(t.score, abs=1e-3)
        for precision in ("w4a8", "w8a8", "fp16"):
            assert o.local_sqnr_db[precision] == pytest.approx(t.local_sqnr_db[precision], abs=0.05)


def test_search_on_onnx_writes_a_plan_and_a_checkpoint_and_resumes(tmp_path: Path) -> None:
    model = layered()
    images = random_images(16, (3, 6, 6), seed=5)
    config = SearchConfig(candidates="w8a8,fp32", budgets=("agreement>=0.9",), num_samples=16, strategy="tuneqn")
    first = api.search(model, images, config, out=tmp_path / "run")
    groups = len(first.graph)
    assert first.plan.provenance.strategy == "tuneqn" and first.plan.quality["agreement"] >= 0.9
    assert first.plan.quality["evaluations"] == groups + 1
    assert (tmp_path / "run" / "plan.json").exists()
    state = json.loads((tmp_path / "run" / "tuneqn.json").read_text())
    assert len(state["iterations"]) == groups + 1 and sorted(state["ranking"]) == sorted(OUTPUTS)
    assert set(first.sensitivity.sqnr_db) == {(g.id, p) for g in first.graph for p in g.candidates}

    # the runtime objectives of IV-E: each configuration written as the exported QDQ file and timed
    assert all(it["measured"]["latency_ms"] > 0 for it in state["iterations"])
    quantized = Assignment({g.id: Precision.parse("w8a8") for g in first.graph})  # iteration 0
    report = export_plan(model, quantized, images, tmp_path / "w8a8.onnx", num_samples=16, check_samples=0)
    assert state["iterations"][0]["measured"]["file_bytes"] == report.file_bytes
    assert len({it["measured"]["file_bytes"] for it in state["iterations"]}) == groups + 1

    state["iterations"] = state["iterations"][:2]  # killed after two iterations
    (tmp_path / "run" / "tuneqn.json").write_text(json.dumps(state))
    second = api.search(model, images, config, out=tmp_path / "run")
    assert second.plan.quality["evaluations"] == groups + 1 - 2  # only the missing iterations
    assert second.plan.assignment == first.plan.assignment


def test_interrupted_walk_on_onnx_resumes_without_repeating_evaluations(tmp_path: Path) -> None:
    """As the torch test in test_tuneqn.py: the resumed walk evaluates exactly what was not yet done."""
    import math

    from mixq.core.budget import parse_budget
    from mixq.core.tables import SensitivityTable
    from mixq.cost import default_cost_models
    from mixq.solvers.base import AllocationProblem

    def problem_of(graph) -> AllocationProblem:
        table = SensitivityTable({(g.id, p): math.inf for g in graph for p in g.candidates})
        return AllocationProblem(graph, table, default_cost_models(), "bops")

    model = layered()
    images = random_images(16, (3, 6, 6), seed=4)

    def run(calls: list[Assignment]):
        s = prepare(model, images, "w8a8,fp32", QuantScheme(), 16)
        evaluator = Evaluator(s.sim, ArrayDataset(images))

        def evaluate(assignment: Assignment):
            calls.append(assignment)
            return evaluator.quality(assignment)

        return run_tuneqn(s.sim, images, problem_of(s.graph), evaluate, [parse_budget("bops<=0.75")], None, None,
                          tmp_path / "tuneqn.json", {"model": "x"})

    first: list[Assignment] = []
    complete = run(first)
    assert len(first) == len(OUTPUTS) + 1
    path = tmp_path / "tuneqn.json"
    stored = json.loads(path.read_text())
    stored["iterations"] = stored["iterations"][:2]
    path.write_text(json.dumps(stored))
    second: list[Assignment] = []
    resumed = run(second)
    assert second == first[2:]
    assert resumed.chosen.k == complete.chosen.k and resumed.state.ranking == complete.state.ranking


def test_a_backend_without_layer_outputs_is_refused_before_any_work(tmp_path: Path, monkeypatch) -> None:
    from mixq.backends.onnx.simulation import OnnxSimulation

    monkeypatch.delattr(OnnxSimulation, "probe")
    config = SearchConfig(candidates="w8a8,fp32", budgets=("bops<=2",), num_samples=8, strategy="tuneqn")
    with pytest.raises(CapabilityError, match="two-phase"):
        api.search(layered(), random_images(8, (3, 6, 6)), config, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()
