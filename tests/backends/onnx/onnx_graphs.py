"""The ONNX test graphs, re-exported from :mod:`mixq.testing.onnx_graphs` (their one home) for the test modules
here that import ``onnx_graphs`` (not a conftest, whose name would clash under --doctest-modules)."""

from __future__ import annotations

from mixq.testing.onnx_graphs import GRAPHS, attention, branches, deconv, images, init, model, residual

__all__ = ["GRAPHS", "attention", "branches", "deconv", "images", "init", "model", "residual"]
