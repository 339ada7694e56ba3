"""The ONNX test graphs, re-exported from :mod:`mixq.backends.onnx.testing` (their one home) for the test modules
here that import ``onnx_graphs`` (not a conftest, whose name would clash under --doctest-modules)."""

from __future__ import annotations

from mixq.backends.onnx.testing import GRAPHS, attention, branches, deconv, images, init, model, residual

__all__ = ["GRAPHS", "attention", "branches", "deconv", "images", "init", "model", "residual"]
