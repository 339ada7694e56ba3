"""What differs by framework is a backend capability; a backend without one says what to do instead."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mixq.backends import get_backend  # noqa: E402
from mixq.backends.base import ExportSettings  # noqa: E402
from mixq.backends.torch.testing import TinyConvNet, random_images  # noqa: E402
from mixq.core.assignment import uniform  # noqa: E402
from mixq.core.precision import Precision, QuantScheme, parse_candidates  # noqa: E402
from mixq.errors import CapabilityError  # noqa: E402
from mixq.reference import is_quantized_file, stored_weight_bytes  # noqa: E402


@pytest.fixture(scope="module")
def torch_sim():
    backend = get_backend("torch")
    images = random_images(4)
    traced = backend.trace(TinyConvNet(), images[:1], parse_candidates("w8a8"))
    return backend, traced, traced.prepare(images, QuantScheme()), images


def test_a_torch_model_cannot_be_timed(torch_sim) -> None:
    backend, traced, _, _ = torch_sim
    with pytest.raises(CapabilityError, match="measured latency needs an ONNX model.*torch.onnx.export.*--hardware"):
        backend.require_latency()
    with pytest.raises(CapabilityError, match="measured latency needs an ONNX model"):
        backend.measure_latency(traced)


def test_tuneqn_deployed_costs_are_absent_on_torch(torch_sim) -> None:
    backend, _, sim, images = torch_sim
    with pytest.raises(CapabilityError, match="deployed costs .* need an ONNX model: export it to ONNX"):
        backend.deployed_costs(sim, images)


def test_a_torch_model_is_never_a_quantized_file(torch_sim) -> None:
    backend, _, _, _ = torch_sim
    model = TinyConvNet()
    assert not backend.is_quantized_file(model) and not is_quantized_file(model)
    with pytest.raises(CapabilityError, match="exported ONNX files"):
        stored_weight_bytes(model)


def test_torch_runs_as_given_as_its_float_simulation(torch_sim) -> None:
    backend, _, sim, images = torch_sim
    model = TinyConvNet()
    traced = backend.trace(model, images[:1], parse_candidates("w8a8"))
    expected = traced.prepare(images[:1], QuantScheme()).run(images, None)
    np.testing.assert_array_equal(backend.run_as_given(model, images)(images), expected)


def test_the_onnx_backend_runs_a_float_file_as_given() -> None:
    pytest.importorskip("onnxruntime")
    from mixq.backends.onnx import testing as graphs

    backend = get_backend("onnx")
    backend.require_latency()  # no error: ONNX kernels are timed in ONNX Runtime
    model, data = graphs.residual(), graphs.images(4, (3, 8, 8))
    assert not backend.is_quantized_file(model)
    traced = backend.trace(model, data[:1], parse_candidates("w8a8"))
    expected = traced.prepare(data, QuantScheme()).run(data, None)
    np.testing.assert_allclose(backend.run_as_given(model, data)(data), expected, rtol=1e-6, atol=1e-6)


def test_export_settings_default_to_the_search_defaults() -> None:
    settings = ExportSettings()
    assert settings.scheme == QuantScheme() and settings.check_samples == 64 and settings.output_quantizers


def test_an_assignment_is_exported_through_the_backend(torch_sim, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from mixq.export import ExportReport, export

    backend, traced, _, images = torch_sim
    assignment = uniform(traced.graph, Precision.parse("w8a8"))
    report = export(TinyConvNet(), assignment, images, tmp_path / "model.onnx", num_samples=4, check_samples=2)
    assert isinstance(report, ExportReport) and report.path.is_file() and is_quantized_file(report.path)
    assert stored_weight_bytes(report.path) < report.float_file_bytes


def test_an_unwritable_output_is_an_export_error_before_any_work(tmp_path: Path) -> None:
    from mixq.errors import ExportError
    from mixq.export import export

    (tmp_path / "taken").write_text("a file")
    with pytest.raises(ExportError, match="is a file, not a folder"):
        export(TinyConvNet(), {}, random_images(2), tmp_path / "taken" / "model.onnx")
    with pytest.raises(ExportError, match="is a directory"):
        export(TinyConvNet(), {}, random_images(2), tmp_path)


def test_an_invalid_qdq_model_is_a_mixq_bug(torch_sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    from onnx import helper

    from mixq.backends.onnx.export import onnx_qdq
    from mixq.errors import InternalError
    from mixq.export import export

    def corrupt(proto):  # a writer bug: a node without its input
        proto.graph.node.append(helper.make_node("Relu", [], ["broken"], name="broken"))
        return 0

    monkeypatch.setattr(onnx_qdq, "fold_pads", corrupt)
    _, traced, _, images = torch_sim
    with pytest.raises(InternalError, match="mixq bug: the exported QDQ model is invalid"):
        export(TinyConvNet(), uniform(traced.graph, Precision.parse("w8a8")), images, tmp_path / "m.onnx",
               num_samples=4, check_samples=0)
