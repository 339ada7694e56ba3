"""Backends and built-in models are lazy registry entries: nothing outside ``mixq.backends`` imports a framework."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mixq.backends import BACKENDS, get_backend, list_backends
from mixq.errors import ConfigError
from mixq.models import BUILTIN_MODELS, MODELS


def test_backends_are_lazy_registry_entries() -> None:
    assert list_backends() == ["onnx", "torch"]
    assert all(isinstance(entry.target, str) for entry in BACKENDS.entries())
    with pytest.raises(ConfigError, match="unknown backend 'onx'; did you mean 'onnx'"):
        get_backend("onx")


def test_built_in_models_are_lazy_entries_inside_the_backends() -> None:
    assert set(MODELS.names()) == set(BUILTIN_MODELS) == {"demo", "efficientnet-lite0", "tiny-vit", "tiny-cnn"}
    assert all(str(entry.target).startswith("mixq.backends.") for entry in MODELS.entries())


def test_the_neutral_verbs_import_no_framework() -> None:
    code = ("import sys, mixq.api, mixq.export, mixq.reference, mixq.models, mixq.cost.measured_latency\n"
            "loaded = [m for m in ('torch', 'onnx', 'onnxruntime', 'mixq.backends.torch', 'mixq.backends.onnx') "
            "if m in sys.modules]\n"
            "print(','.join(loaded))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
