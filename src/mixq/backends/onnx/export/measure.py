"""What a configuration costs once deployed: the exported file's size and its measured latency.

TuneQn (section IV-E) compares configurations on objectives only a runtime gives; on an ONNX model each
configuration of the decremental walk is written as the QDQ file ``mixq export`` would write (output
quantizers included) and timed in ONNX Runtime at batch 1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from mixq.backends.onnx.export.onnx_qdq import build_qdq
from mixq.backends.onnx.simulation import OnnxSimulation
from mixq.core.assignment import Assignment


def deployed_costs(sim: OnnxSimulation, calibration: np.ndarray, threads: int | None = None,
                   runs: int = 30, runtime: str = "onnxruntime") -> Callable[[Assignment], Mapping[str, float]]:
    """``measure(assignment) -> {"file_bytes", "latency_ms"}`` (median of ``runs`` after 5 warm-up runs), the
    file timed in ``runtime`` (a ``mixq.runtimes.RUNTIMES`` entry)."""
    from mixq.runtimes import get_runtime

    batch = np.ascontiguousarray(calibration[:sim.model.fixed_batch or 1], dtype=np.float32)
    engine = get_runtime(runtime)

    def measure(assignment: Assignment) -> Mapping[str, float]:
        proto = build_qdq(sim, assignment, calibration=calibration).proto
        ms = engine.latency_ms(proto, batch, runs=runs, warmup=5, threads=threads)
        return {"file_bytes": float(proto.ByteSize()), "latency_ms": ms}

    return measure
