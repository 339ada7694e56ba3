"""The ``openvino`` entry of :data:`mixq.runtimes.RUNTIMES`: exported QDQ ONNX files in OpenVINO's CPU plugin.

OpenVINO reads the QDQ ONNX file mixq exports as is (its frontend turns QuantizeLinear/DequantizeLinear
pairs into FakeQuantize and runs integer kernels where the CPU has them), so the same file is measured in a
second runtime. The input is bound to the data's shape as for ONNX Runtime; a graph that only runs at its
exported batch size is run in padded chunks of it. ``openvino`` is imported on first use: without it,
:class:`BackendUnavailableError` says ``pip install openvino``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from mixq.backends.base import require_finite
from mixq.backends.onnx.load import describe
from mixq.backends.onnx.runtimes import require_onnx_file
from mixq.backends.onnx.simulation import flatten_outputs
from mixq.errors import BackendUnavailableError, UnsupportedModelError

DEVICE = "CPU"
#: Float layers run in f32, as the plan says: the CPU plugin's default on CPUs with AVX512-BF16/AMX is bf16,
#: which would run a plan's fp32 groups (and the float reference) at a precision nobody chose (on
#: EfficientNet-Lite0 that alone moved agreement of a mixed plan from 98.9 % to 98.4 %).
INFERENCE_PRECISION = "f32"


def _openvino() -> Any:
    try:
        import openvino
    except ImportError:
        raise BackendUnavailableError("the openvino runtime needs OpenVINO: pip install openvino "
                                      "(or pip install 'mixq[openvino]')") from None
    return openvino


def compile_model(proto: onnx.ModelProto, what: str, threads: int | None = None,
                  extra: Mapping[str, Any] | None = None) -> Any:
    """OpenVINO's compiled model of ``proto`` on the CPU plugin, float layers in f32 (``threads``:
    INFERENCE_NUM_THREADS; ``extra``: more CPU plugin properties, e.g. the profiler's PERF_COUNT)."""
    ov = _openvino()
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": INFERENCE_PRECISION}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    config.update(extra or {})
    config = {key: value for key, value in config.items() if value is not None}  # None: the plugin's default
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save(proto, str(path))  # OpenVINO's ONNX frontend reads files; the compiled model outlives it
        try:
            return ov.Core().compile_model(str(path), DEVICE, config)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise UnsupportedModelError(f"OpenVINO cannot compile {what} for its CPU plugin: {first}") from None


class _Runner:
    """One infer request on a compiled model; batches of any size (chunked when the graph's batch is fixed)."""

    def __init__(self, compiled: Any, fixed_batch: int | None) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.fixed_batch = fixed_batch

    def _infer(self, batch: np.ndarray) -> list[np.ndarray]:
        result = self.request.infer({0: batch})
        return [np.array(result[output], dtype=np.float32, copy=True) for output in self.compiled.outputs]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        size = self.fixed_batch
        if size is None or len(batch) == size:
            return require_finite(flatten_outputs(self._infer(batch)))
        parts = []
        for start in range(0, len(batch), size):
            chunk = batch[start:start + size]
            padded = np.concatenate([chunk, np.zeros((size - len(chunk), *chunk.shape[1:]), np.float32)]) \
                if len(chunk) < size else chunk
            parts.append(flatten_outputs(self._infer(padded))[:len(chunk)])
        return require_finite(np.concatenate(parts))


class OpenVinoRuntime:
    """OpenVINO, CPU plugin, on the QDQ ONNX file (pip install openvino)."""

    name = "openvino"

    def run_as_given(self, model: object, sample: np.ndarray,
                     threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
        from mixq.backends.onnx.as_given import bound_as_given

        require_onnx_file(model, self.name)
        _openvino()  # before any work: the missing package is the first thing to say
        proto, _, fixed_batch = bound_as_given(model, sample)
        return _Runner(compile_model(proto, describe(model), threads), fixed_batch)

    def latency_ms(self, model: object, sample: np.ndarray, runs: int = 50, warmup: int = 5,
                   threads: int | None = None) -> float:
        from mixq.backends.onnx.as_given import bound_as_given

        require_onnx_file(model, self.name)
        _openvino()
        proto, _, _ = bound_as_given(model, sample)
        request = compile_model(proto, describe(model), threads).create_infer_request()
        feeds = {0: np.ascontiguousarray(sample[:1], dtype=np.float32)}
        for _ in range(warmup):
            request.infer(feeds)
        times = []
        for _ in range(max(1, runs)):
            started = time.perf_counter()
            request.infer(feeds)
            times.append((time.perf_counter() - started) * 1e3)
        return float(statistics.median(times))
