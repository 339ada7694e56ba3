"""Loading ONNX models: clear one-line errors for bad files and opsets, conversion of old opsets."""

from __future__ import annotations

import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx_graphs import GRAPHS  # noqa: E402

from mixq import backends  # noqa: E402
from mixq.backends.onnx import load as load_module  # noqa: E402
from mixq.backends.onnx.backend import OnnxBackend  # noqa: E402
from mixq.backends.onnx.load import load, opset  # noqa: E402
from mixq.core.precision import parse_candidates  # noqa: E402
from mixq.errors import UnsupportedModelError  # noqa: E402


@pytest.fixture
def graphs():
    return GRAPHS


def test_path_and_proto_load_alike(graphs, tmp_path):
    model = graphs.branches()
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    for source in (model, path, str(path)):
        loaded = load(source)
        assert [n.name for n in loaded.graph.node] == [n.name for n in model.graph.node]


def test_resolve_picks_the_onnx_backend(graphs, tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(graphs.branches(), str(path))
    assert backends.resolve(path).name == "onnx"
    assert backends.resolve(str(path)).name == "onnx"
    assert backends.resolve(graphs.branches()).name == "onnx"
    with pytest.raises(UnsupportedModelError, match="onnx.ModelProto"):
        backends.resolve(object())


def test_missing_file(tmp_path):
    with pytest.raises(UnsupportedModelError, match="does not exist"):
        load(tmp_path / "nope.onnx")


def test_corrupt_file(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x08\x07this is not a protobuf \xff\xfe" * 10)
    with pytest.raises(UnsupportedModelError, match="corrupt or truncated"):
        load(path)


def test_truncated_file(graphs, tmp_path):
    data = graphs.branches().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnsupportedModelError, match=r"cut\.onnx"):
        load(path)


def test_invalid_graph_fails_the_checker(graphs):
    model = graphs.branches()
    model.graph.node[1].input[0] = "no_such_tensor"
    with pytest.raises(UnsupportedModelError, match="checker"):
        load(model)


@pytest.mark.parametrize("version", [11, 12])
def test_old_opsets_are_converted(graphs, version):
    model = graphs.deconv(opset=version)
    assert opset(load(model)) == 13
    assert opset(model) == version  # the caller's proto is not changed
    traced = OnnxBackend().trace(model, graphs.images(1, (3, 4, 4)), parse_candidates("w8a8"))
    assert traced.graph.ids == ("conv", "up", "fc")


def test_too_old_opset_is_refused(graphs):
    model = graphs.branches(opset=12)
    model.opset_import[0].version = 6
    with pytest.raises(UnsupportedModelError, match="opset 6.*re-export"):
        load(model)


def test_failed_conversion_says_so(graphs, monkeypatch):
    def fail(model, version):
        raise RuntimeError("no adapter for Foo")

    monkeypatch.setattr(load_module.version_converter, "convert_version", fail)
    with pytest.raises(UnsupportedModelError, match="conversion failed.*no adapter for Foo"):
        load(graphs.branches(opset=12))


def test_several_inputs_are_refused(graphs):
    model = graphs.branches()
    model.graph.input.append(onnx.helper.make_tensor_value_info("mask", onnx.TensorProto.FLOAT, ["N", 1]))
    with pytest.raises(UnsupportedModelError, match="2 inputs"):
        OnnxBackend().trace(model, graphs.images(1), parse_candidates("w8a8"))
