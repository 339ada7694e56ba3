"""The ``onnxruntime`` entry of :data:`mixq.runtimes.RUNTIMES`: exported files in ONNX Runtime's CPU
execution provider, through the ONNX backend's own as-given runner and export-check timing."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from mixq.backends.onnx.load import is_onnx_model
from mixq.errors import ConfigError


def require_onnx_file(model: object, runtime: str) -> None:
    """Runtimes run ONNX files (paths or protos); anything else is refused with what to do instead."""
    if not is_onnx_model(model):
        what = str(model) if isinstance(model, (str, os.PathLike)) else f"a {type(model).__name__}"
        raise ConfigError(f"the {runtime} runtime runs ONNX files, and {what} is not one: export it "
                          "with mixq export (or torch.onnx.export) first, or drop --runtime")


class OnnxRuntime:
    """ONNX Runtime, CPU execution provider (the default runtime)."""

    name = "onnxruntime"

    def run_as_given(self, model: object, sample: np.ndarray,
                     threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
        from mixq.backends.onnx.as_given import runner_as_given

        require_onnx_file(model, self.name)
        return runner_as_given(model, sample, threads)

    def latency_ms(self, model: object, sample: np.ndarray, runs: int = 50, warmup: int = 5,
                   threads: int | None = None) -> float:
        from mixq.backends.onnx.as_given import bound_as_given
        from mixq.backends.onnx.export.checks import latency_ms

        require_onnx_file(model, self.name)
        proto, input_name, _ = bound_as_given(model, sample)
        return latency_ms(proto, input_name, np.ascontiguousarray(sample[:1], dtype=np.float32), runs, warmup,
                          threads)
