"""``mixq.list_*`` and the table of plug-in kinds."""

from __future__ import annotations

import subprocess
import sys

import pytest

import mixq
from mixq import plugins
from mixq.errors import ConfigError


def test_lists_take_wildcards_and_are_sorted() -> None:
    assert mixq.list_solvers() == ["evolution", "exhaustive", "fallback", "greedy", "ilp", "iqp"]
    assert mixq.list_solvers("i*") == ["ilp", "iqp"]
    assert mixq.list_strategies() == ["tuneqn", "two-phase"]
    assert mixq.list_cost_models() == ["bops", "latency", "memory", "size"]
    assert mixq.list_hardware("*cpu") == ["onnxruntime-cpu", "openvino-cpu"]
    assert mixq.list_metrics() == ["sqnr"]
    assert mixq.list_backends() == ["onnx", "torch"]
    assert "kd" in mixq.list_tuners()
    assert mixq.list_tasks() == [] and mixq.list_runtimes() == ["onnxruntime", "openvino"] and mixq.list_executors() == []


def test_every_kind_names_its_registry_and_entry_point_group() -> None:
    for kind in plugins.KINDS:
        registry = kind.load()
        assert registry.group == kind.group and kind.group == f"mixq.{kind.name}"
        assert f"list_{kind.name}" in mixq.__all__ and callable(getattr(plugins, f"list_{kind.name}"))
    with pytest.raises(ConfigError, match="unknown kind of plug-in 'solver'"):
        plugins.kind("solver")


def test_import_mixq_stays_light() -> None:
    code = ("import sys, mixq; before = sorted(m for m in sys.modules if m.startswith('mixq')); mixq.list_strategies; "
            "print(before, sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'torch', 'yaml', 'scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['mixq', 'mixq.version'] []", "the registries load on first use, without heavy imports"
