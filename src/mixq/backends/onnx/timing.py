"""Timing ONNX models in ONNX Runtime: the median of repeated runs, warm-up excluded, and which kernels
ORT really ran (its optimized graph). ``kernels_only`` sums the compute nodes of ORT's profile."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from mixq.errors import UnsupportedModelError

#: Optimized-graph nodes that move or convert data rather than compute the op.
_PLUMBING = {"QuantizeLinear", "DequantizeLinear", "Cast", "Clip", "ReorderInput", "ReorderOutput", "Identity",
             "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Shape", "Flatten"}

@dataclass(frozen=True)
class Timer:
    """How kernels are timed: ORT CPU EP, sequential execution, the median of repeated runs.

    Runs repeat until ``min_runs`` and ``min_seconds`` are both reached (at most ``max_runs``), after
    ``warmup`` untimed runs. ``clock`` is injectable so tests are deterministic.
    """

    threads: int | None = None
    warmup: int = 3
    min_runs: int = 10
    max_runs: int = 200
    min_seconds: float = 0.05
    clock: Callable[[], float] = time.perf_counter
    #: Time only the compute kernels (ORT's profiler), not the layout changes an op alone needs: in a
    #: network ORT keeps consecutive convs in its blocked (NCHWc) or NHWC layout, so the Reorder/Transpose
    #: around an isolated op would otherwise count as much as the op itself.
    kernels_only: bool = True

    def settings(self) -> dict[str, Any]:
        return {"threads": self.threads, "warmup": self.warmup, "min_runs": self.min_runs,
                "max_runs": self.max_runs, "min_seconds": self.min_seconds, "kernels_only": self.kernels_only}

    def session(self, proto: onnx.ModelProto, optimized: str | None = None, profile: str | None = None) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if self.threads is not None:
            options.intra_op_num_threads = self.threads
        if optimized is not None:
            options.optimized_model_filepath = optimized
        if profile is not None:
            options.enable_profiling = True
            options.profile_file_prefix = profile
        return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def measure(self, proto: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> tuple[float, list[str]]:
        """Median milliseconds of one run, and the nodes of the graph ORT runs (after its fusions)."""
        with tempfile.TemporaryDirectory() as tmp:
            target = str(Path(tmp) / "optimized.onnx")
            try:
                sess = self.session(proto, target, str(Path(tmp) / "profile") if self.kernels_only else None)
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                raise UnsupportedModelError(f"ONNX Runtime cannot run a kernel model: {first}") from None
            ops = [_label(node) for node in onnx.load(target).graph.node] if os.path.isfile(target) else []
            for _ in range(self.warmup):
                sess.run(None, feeds)
            times: list[float] = []
            spent = 0.0
            while len(times) < self.max_runs and (len(times) < self.min_runs or spent < self.min_seconds):
                started = self.clock()
                sess.run(None, feeds)
                elapsed = self.clock() - started
                times.append(elapsed * 1e3)
                spent += elapsed
            if self.kernels_only:
                kernels = _kernel_ms(sess.end_profiling(), self.warmup, len(times))
                if kernels is not None:
                    return kernels, ops
        return float(statistics.median(times)), ops


def _kernel_ms(profile: str, warmup: int, runs: int) -> float | None:
    """Median over the timed runs of the summed durations of compute nodes in ORT's profile (None: none)."""
    events = json.loads(Path(profile).read_text())
    durations = [event["dur"] for event in events
                 if event.get("cat") == "Node" and str(event.get("name", "")).endswith("_kernel_time")
                 and event.get("args", {}).get("op_name") not in _PLUMBING]
    total = warmup + runs
    if not durations or len(durations) % total:
        return None
    per_run = len(durations) // total
    sums = [sum(durations[i * per_run:(i + 1) * per_run]) for i in range(warmup, total)]
    return float(statistics.median(sums)) / 1e3  # microseconds -> ms


def _label(node: onnx.NodeProto) -> str:
    domain = node.domain.rsplit(".", 1)[-1] if node.domain not in ("", "ai.onnx", "com.microsoft") else ""
    return f"{node.op_type}[{domain}]" if domain else node.op_type


def kernel_of(ops: Sequence[str]) -> str:
    """The compute op(s) among the optimized graph's nodes, e.g. ``QLinearConv`` or ``Conv[nchwc]``."""
    compute = [op for op in ops if op.split("[")[0] not in _PLUMBING]
    return "+".join(dict.fromkeys(compute)) or "+".join(dict.fromkeys(ops)) or "?"
