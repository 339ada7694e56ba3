"""The runtime registry: both built-in runtimes are listed, lazily, and satisfy the Runtime protocol."""

from __future__ import annotations

import pytest

from mixq.errors import ConfigError
from mixq.runtimes import DEFAULT_RUNTIME, RUNTIMES, Runtime


def test_the_registry_lists_both_runtimes_the_default_first() -> None:
    assert RUNTIMES.names() == ["onnxruntime", "openvino"]
    assert DEFAULT_RUNTIME == "onnxruntime"
    # lazy entries: naming them imports no framework
    assert all(isinstance(entry.target, str) and entry.target.startswith("mixq.backends.")
               for entry in RUNTIMES.entries())


def test_an_unknown_runtime_says_did_you_mean() -> None:
    with pytest.raises(ConfigError, match="did you mean 'openvino'"):
        RUNTIMES.get("openvin")


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_entries_are_runtimes(name: str) -> None:
    pytest.importorskip("onnx")
    runtime = RUNTIMES.create(name)  # the openvino package is only imported on first use
    assert isinstance(runtime, Runtime) and runtime.name == name


def test_a_runtime_refuses_what_is_not_an_onnx_file() -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import numpy as np

    with pytest.raises(ConfigError, match="runs ONNX files, and a list is not one"):
        RUNTIMES.create("openvino").run_as_given([], np.zeros((1, 3, 8, 8), np.float32))


def test_without_openvino_the_error_says_pip_install(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    pytest.importorskip("onnx")
    import sys

    import numpy as np

    from mixq.errors import BackendUnavailableError

    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed: import raises ImportError
    with pytest.raises(BackendUnavailableError, match="pip install openvino"):
        RUNTIMES.create("openvino").run_as_given(tmp_path / "model.qdq.onnx", np.zeros((1, 3, 8, 8), np.float32))
