"""Dynamic activation quantization on the ONNX backend: each run's own range, as the torch backend and
ONNX Runtime's dynamic mode compute it; exported as DynamicQuantizeLinear.

Tolerance: both backends compute min/max, scale and zero-point in float32 graph ops (ONNX) or Python
floats (torch), so a value at a rounding boundary may land one step apart: >= 40 dB between them.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from mixq.backends import get_backend  # noqa: E402
from mixq.core.assignment import Assignment, uniform  # noqa: E402
from mixq.core.precision import Precision, QuantScheme, parse_candidates  # noqa: E402
from mixq.errors import ConfigError  # noqa: E402
from mixq.backends.onnx.export.onnx_qdq import export_qdq  # noqa: E402
from mixq.backends.torch.testing import ResidualNet, random_images  # noqa: E402

DYNAMIC = QuantScheme(act_dynamic=True)
CANDIDATES = parse_candidates("w4a8,w8a8")


def sqnr(reference: np.ndarray, other: np.ndarray) -> float:
    noise = np.sum((reference.astype(np.float64) - other) ** 2)
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / max(noise, 1e-30)))


@pytest.fixture(scope="module")
def both():
    model, images = ResidualNet().eval(), random_images(16, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto = _export(model, images)
    torch_sim = get_backend("torch").trace(model, images[:1], CANDIDATES).prepare(images, DYNAMIC)
    onnx_traced = get_backend("onnx").trace(proto, images[:1], CANDIDATES)
    return torch_sim, onnx_traced, onnx_traced.prepare(images, DYNAMIC), images


def _export(model, images):
    import io

    buffer = io.BytesIO()
    torch.onnx.export(model, (torch.from_numpy(images[:1]),), buffer, dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, opset_version=17)
    return onnx.load_from_string(buffer.getvalue())


@pytest.mark.parametrize("precision", ["w8a8", "w4a8", "w8a4"])
def test_onnx_and_torch_dynamic_simulations_agree(both, precision):
    torch_sim, onnx_traced, onnx_sim, images = both
    p = Precision.parse(precision)
    by_torch = torch_sim.run(images, uniform(torch_sim.graph, p))
    by_onnx = onnx_sim.run(images, uniform(onnx_sim.graph, p))
    assert sqnr(by_torch, by_onnx) >= 40.0
    # inputs 4x larger than the calibration's: static ranges clip them, each run's own range does not
    louder = images * 4
    static = onnx_traced.prepare(images, QuantScheme())
    reference = onnx_sim.run(louder)
    dynamic_sqnr = sqnr(reference, onnx_sim.run(louder, uniform(onnx_sim.graph, p)))
    assert dynamic_sqnr > sqnr(reference, static.run(louder, uniform(onnx_sim.graph, p))) + 6.0


def test_phase1_parts_compute_what_the_full_dynamic_model_computes(both):
    _, _, sim, images = both
    isolated = sim.isolate(images)
    fp32 = Precision.parse("fp32")
    for group in sim.graph:
        for precision in (Precision.parse("w8a8"), Precision.parse("w4a8")):
            alone = Assignment({g.id: precision if g.id == group.id else fp32 for g in sim.graph})
            np.testing.assert_allclose(isolated.run(group.id, precision), sim.run(images, alone), rtol=1e-4,
                                       atol=1e-5)


def test_dynamic_export_writes_dynamicquantizelinear_and_matches_the_simulation(both, tmp_path):
    _, _, sim, images = both
    assignment = uniform(sim.graph, Precision.parse("w8a8"))
    report = export_qdq(sim, assignment, tmp_path / "dynamic.onnx", check_data=images, calibration=images)
    ops = [node.op_type for node in onnx.load(str(report.path)).graph.node]
    assert "DynamicQuantizeLinear" in ops and "QuantizeLinear" not in ops  # no static range anywhere
    assert any("dynamically" in note for note in report.notes)
    assert report.check["sqnr_vs_simulation_db"] >= report.check["simulation_sqnr_db"] + 8.0, report.check


def test_dynamic_export_of_other_widths_is_refused(both, tmp_path):
    _, _, sim, images = both
    with pytest.raises(ConfigError, match="DynamicQuantizeLinear, which is 8-bit only"):
        export_qdq(sim, uniform(sim.graph, Precision.parse("w8a4")), tmp_path / "x.onnx", check_data=images)
