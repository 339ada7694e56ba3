"""After an export: the written model against the simulation, its latency, and the integer kernels
ONNX Runtime fused (what the exported file really runs, measured rather than assumed)."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx

from mixq.backends.base import Progress
from mixq.backends.onnx.runtime import session
from mixq.backends.onnx.export.output_quantizers import OutputQuantizer
from mixq.backends.onnx.simulation import OnnxSimulation, flatten_outputs
from mixq.core.assignment import Assignment
from mixq.core.quality import sqnr_db
from mixq.errors import DataError

#: Integer kernels ONNX Runtime's CPU EP may fuse a QDQ group into (reported after export).
INTEGER_OPS = ("QLinearConv", "QLinearMatMul", "QGemm", "MatMulIntegerToFloat", "ConvInteger", "MatMulInteger",
               "QLinearAdd", "QLinearMul", "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearConcat",
               "DynamicQuantizeMatMul", "MatMulNBits")
#: The integer kernels among them that compute a quantized op (not a quantized Add, pool or concat).
INTEGER_COMPUTE_OPS = ("QLinearConv", "QLinearMatMul", "QGemm", "MatMulIntegerToFloat", "ConvInteger", "MatMulInteger",
                       "DynamicQuantizeMatMul")

def compare(sim: OnnxSimulation, assignment: Assignment, proto: onnx.ModelProto, data: np.ndarray,
            optimize: bool = True, config: Mapping[str, str] | None = None,
            outputs: Mapping[str, OutputQuantizer] | None = None) -> dict[str, float]:
    """The exported model against the simulation of the same assignment, and both against float.

    ``outputs``: the output quantizers the file has (``QdqModel.outputs``; default: those the simulation
    decides by its settings), simulated with the ranges the file uses, so the two agree to float round-off.

    ``sqnr_vs_simulation_db`` pools noise over the batch (10 log10 of total signal over total difference):
    eq. 3's mean of per-sample ratios would be dominated by samples that happen to match exactly.
    ``optimize=False`` runs without ORT's graph fusions (what the graph itself computes).
    """
    import onnxruntime as ort

    data = np.ascontiguousarray(data, dtype=np.float32)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    # a model with a fixed batch size runs whole batches only: the exported file declares the original's
    # input (a batch of 1, say) even where the simulation relaxed it, so it is run in batches it accepts
    size = sim.model.fixed_batch or declared_batch(proto, sim.model.input_name) or len(data)
    count = len(data) // size * size
    if count == 0:
        raise DataError(f"the check needs at least {size} samples (the model's fixed batch size)")

    def run(model: onnx.ModelProto) -> np.ndarray:
        sess = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return np.concatenate([flatten_outputs(sess.run(None, {sim.model.input_name: data[i:i + size]}))
                               for i in range(0, count, size)])

    exported = run(proto)
    # the simulation under the same session options (ORT's fusions reorder float sums)
    simulated = run(sim.proto(assignment, outputs))
    reference = sim.run(data)[:len(exported)]
    noise = float(np.sum((simulated.astype(np.float64) - exported) ** 2))
    signal = float(np.sum(simulated.astype(np.float64) ** 2))
    return {
        "n_samples": float(len(exported)),
        "sqnr_vs_simulation_db": 10.0 * np.log10(max(signal, 1e-30) / max(noise, 1e-30)) if noise else 300.0,
        "max_abs_diff_vs_simulation": float(np.max(np.abs(simulated - exported))),
        "simulation_sqnr_db": sqnr_db(reference, simulated),
        "exported_sqnr_db": sqnr_db(reference, exported),
        "top1_agreement_vs_simulation": float(np.mean(simulated.argmax(1) == exported.argmax(1))),
    }


def declared_batch(proto: onnx.ModelProto, input_name: str) -> int | None:
    """The fixed batch size ``proto`` declares for its input ``input_name``, or None if it is symbolic."""
    for value in proto.graph.input:
        if value.name == input_name and value.type.tensor_type.HasField("shape"):
            dims = value.type.tensor_type.shape.dim
            if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
                return int(dims[0].dim_value)
    return None


def latency_ms(proto: onnx.ModelProto, input_name: str, batch: np.ndarray, runs: int = 50, warmup: int = 5,
               threads: int | None = None, progress: Progress | None = None, stage: str = "export: latency") -> float:
    """Median wall time of one ``session.run`` after warm-up, in milliseconds."""
    sess = session(proto, "the model to benchmark", threads)
    feeds = {input_name: np.ascontiguousarray(batch, dtype=np.float32)}
    for _ in range(warmup):
        sess.run(None, feeds)
    times = []
    for run in range(runs):
        if progress:
            progress(stage, run, runs)
        started = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - started) * 1e3)
    if progress:
        progress(stage, runs, runs)
    return float(statistics.median(times))


def kernel_notes(fused: Mapping[str, int], planned: int) -> list[str]:
    """What the user should know about the kernels ORT chose (``fused_ops``) for a plan quantizing ``planned``
    ops: float ops it quantized by itself, and integer-weight MatMuls it computes with int8 activations."""
    notes = []
    compute = sum(fused.get(op, 0) for op in INTEGER_COMPUTE_OPS)
    if compute > planned:
        notes.append(f"ONNX Runtime runs {compute} ops as integer kernels where the plan quantizes {planned}: it "
                     "quantizes float ops that sit between quantizers itself (WeightBiasQuantization); create "
                     "the session with disabled_optimizers=['WeightBiasQuantization'] to keep them float")
    if fused.get("MatMulNBits"):
        notes.append(f"ONNX Runtime turns {fused['MatMulNBits']} integer-weight MatMul(s) whose activations are not "
                     "8-bit into MatMulNBits, which by default computes with int8-quantized activations; create the "
                     "session with the config entry session.qdq_matmulnbits_accuracy_level=1 to keep them in float")
    return notes


def optimized_graph(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The graph ONNX Runtime runs for ``proto`` after its QDQ fusions (extended level: no layout changes)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        target = str(Path(tmp) / "optimized.onnx")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = target
        ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return onnx.load(target)


def fused_ops(proto: onnx.ModelProto) -> dict[str, int]:
    """Integer kernels in the graph ONNX Runtime actually runs (after its QDQ fusions)."""
    optimized = optimized_graph(proto)
    counts: dict[str, int] = {}
    for node in optimized.graph.node:
        if node.op_type in INTEGER_OPS or node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts
