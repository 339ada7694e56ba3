"""The ONNX backend agrees with the torch backend on a model exported from torch.

Tolerances (measured: differences are float rounding between the two runtimes):
- same groups in the same order, same MACs, weights, kinds and output channels (names differ);
- uniform-precision output SQNR equal within 0.05 dB;
- phase-1 sensitivity tables: Spearman and Kendall rank correlation >= 0.99, values within 0.05 dB.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
stats = pytest.importorskip("scipy.stats")

from mixq.backends.onnx.backend import OnnxBackend  # noqa: E402
from mixq.backends.torch.backend import TorchBackend  # noqa: E402
from mixq.core.assignment import uniform  # noqa: E402
from mixq.core.precision import Precision, QuantScheme, parse_candidates  # noqa: E402
from mixq.core.quality import sqnr_db  # noqa: E402
from mixq.sensitivity.sqnr import measure_sensitivity  # noqa: E402
from mixq.backends.torch import testing as models  # noqa: E402

CANDIDATES = parse_candidates("w4a8,w8a8,fp16")


def export(module, path, sample):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.from_numpy(sample),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, opset_version=17)
    return path


@pytest.fixture(scope="module", params=["ResidualNet", "DepthwiseNet"])
def pair(request, tmp_path_factory):
    module = getattr(models, request.param)().eval()
    data = models.random_images(32)
    path = export(module, tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx", data[:2])
    torch_traced = TorchBackend().trace(module, data[:1], CANDIDATES)
    onnx_traced = OnnxBackend().trace(path, data[:1], CANDIDATES)
    return (torch_traced, torch_traced.prepare(data, QuantScheme()), onnx_traced,
            onnx_traced.prepare(data, QuantScheme()), data)


def test_same_groups(pair):
    torch_traced, _, onnx_traced, _, _ = pair
    tg, og = list(torch_traced.graph), list(onnx_traced.graph)
    assert len(tg) == len(og)
    for a, b in zip(tg, og):
        assert len(a.ops) == len(b.ops)
        assert (a.macs, a.weight_numel, a.weight_channels, a.kinds) == (b.macs, b.weight_numel, b.weight_channels, b.kinds)
    assert torch_traced.graph.float_params == onnx_traced.graph.float_params


def test_same_output_sqnr(pair):
    torch_traced, torch_sim, onnx_traced, onnx_sim, data = pair
    np.testing.assert_allclose(onnx_sim.run(data), torch_sim.run(data), rtol=1e-4, atol=1e-5)
    for name in ("w4a8", "w8a16", "w3a5"):
        precision = Precision.parse(name)
        a = sqnr_db(torch_sim.run(data), torch_sim.run(data, uniform(torch_traced.graph, precision)))
        b = sqnr_db(onnx_sim.run(data), onnx_sim.run(data, uniform(onnx_traced.graph, precision)))
        assert abs(a - b) < 0.05, (name, a, b)


def test_same_phase1_ranking(pair):
    torch_traced, torch_sim, onnx_traced, onnx_sim, data = pair
    t = measure_sensitivity(torch_sim, data)
    o = measure_sensitivity(onnx_sim, data)
    keys = [(tg.id, og.id, p) for tg, og in zip(torch_traced.graph, onnx_traced.graph) for p in CANDIDATES]
    a = np.array([t.sqnr_db[(tid, p)] for tid, _, p in keys])
    b = np.array([o.sqnr_db[(oid, p)] for _, oid, p in keys])
    assert stats.spearmanr(a, b).statistic >= 0.99
    assert stats.kendalltau(a, b).statistic >= 0.99
    assert np.max(np.abs(a - b)) < 0.05
