"""The graph OpenVINO's CPU plugin really runs for a QDQ ONNX file, node by node, with times.

OpenVINO turns each QuantizeLinear/DequantizeLinear pair into a FakeQuantize and folds FakeQuantizes, pads,
biases, activations and residual adds into the integer (or float) kernel next to them. Its runtime model
(``compiled_model.get_runtime_model()``) says what each executed node implements: ``originalLayersNames``
lists the file's nodes it absorbed (a Conv's own name among them), which makes attribution exact; the
node's wiring, layer type and precisions come from there too. Times come from the plugin's performance
counters (``PERF_COUNT``).

Timing notes (OpenVINO 2026.4, CPU plugin):

- A node's counter is the integer-microsecond *mean over every infer call since compilation* (the plugin
  accumulates a total and a count per node and reports total // count), not the last call's time, so
  per-run medians cannot be recovered. The time of a node is therefore the mean over the ``runs`` timed
  calls: the warm-up calls are subtracted out of the cumulative mean (error under (warmup + runs) / runs
  microseconds from the truncation).
- PERF_COUNT costs a little wall time: about 1-2 % on EfficientNet-Lite0 (2 threads, best of 7 interleaved
  rounds: int8 2.18 vs 2.14 ms, mixed int8/fp32 2.42 vs 2.36 ms, float 2.81 vs 2.76 ms with and without it),
  a timer around each of ~150 nodes. So ``wall_ms`` is timed separately, on the same file compiled without
  PERF_COUNT (same threads, hint and precision), as the median of ``runs`` calls after ``warmup``.
- Float layers run in f32 as the openvino runtime runs files (``openvino_runtime.INFERENCE_PRECISION``); the
  plugin's own default would be bf16 on CPUs with AVX512-BF16/AMX (``Convolution[bf16]``): pass
  ``inference_precision=None`` to profile that default.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx

from mixq.backends.onnx.deployed.profile import DeployedGraph, DeployedNode
from mixq.backends.onnx.openvino_runtime import INFERENCE_PRECISION, _openvino, compile_model

#: Runtime-model layer types that are not executed nodes of the data path.
_NOT_NODES = {"Const", "Input", "Output"}


def integer_kind(kind: str) -> bool:
    """Whether a node's ``kind`` (``Convolution[i8]``, ``Convolution[i8->bf16]``, ``Reorder[u8->f32]``...) computes
    on integers: OpenVINO names u8 and i8 runtime precisions, both shown as ``i8``."""
    return "[i8" in kind


def _precision(value: str) -> str:
    return "i8" if value in ("u8", "i8") else value


def _kind(layer_type: str, runtime_precision: str, output_precisions: str) -> str:
    """``Layer[precision]``, or ``Layer[precision->output]`` when the node writes another precision (an int8
    conv with the dequantization fused writes bf16/f32; a Reorder converts)."""
    precision = _precision(runtime_precision)
    outputs = {_precision(p) for p in output_precisions.split(",") if p}
    if layer_type == "Reorder" and outputs and outputs != {precision}:
        return f"Reorder[{runtime_precision}->{output_precisions}]"
    if outputs and outputs != {precision}:
        return f"{layer_type}[{precision}->{','.join(sorted(outputs))}]"
    return f"{layer_type}[{precision}]"


def _tensor(output: Any) -> str:
    """A tensor's name: its own names where the runtime model kept any, else the producing node's friendly
    name (``:port`` for ports after the first); graph inputs keep the file's input name."""
    names = sorted(output.get_names())
    if names:
        return names[0]
    node = output.get_node().get_friendly_name()
    return node if output.get_index() == 0 else f"{node}:{output.get_index()}"


def _bound(proto: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """``proto`` with its fed inputs' shapes fixed to the feeds' (batch 1 as fed; no dynamic shapes)."""
    bound = onnx.ModelProto()
    bound.CopyFrom(proto)
    for graph_input in bound.graph.input:
        if graph_input.name in feeds:
            shape = graph_input.type.tensor_type.shape
            del shape.dim[:]
            for size in np.shape(feeds[graph_input.name]):
                shape.dim.add().dim_value = int(size)
    return bound


def _counters(request: Any) -> dict[str, float]:
    """Each executed node's cumulative mean microseconds so far."""
    ov = _openvino()
    return {info.node_name: info.real_time.total_seconds() * 1e6 for info in request.get_profiling_info()
            if info.status == ov.ProfilingInfo.Status.EXECUTED}


class OpenVinoProfiler:
    """OpenVINO's CPU plugin with its performance counters on (``PERF_COUNT``), latency hint, one stream."""

    runtime = "openvino"

    def __init__(self, inference_precision: str | None = INFERENCE_PRECISION) -> None:
        #: ``INFERENCE_PRECISION_HINT``: f32 as the openvino runtime runs files; None keeps the plugin's
        #: default (bf16 for float layers on CPUs that have it).
        self.inference_precision = inference_precision

    def version(self) -> str:
        precision = f"+{self.inference_precision}" if self.inference_precision else ""
        return f"openvino {_openvino().get_version()}{precision}"

    def profile(self, proto: onnx.ModelProto, feeds: Mapping[str, np.ndarray], threads: int | None = None,
                runs: int = 30, warmup: int = 5) -> DeployedGraph:
        """The runtime model's executed nodes in execution order, each with its mean time over ``runs`` calls
        (see the module notes on why a mean), and the median wall time of ``runs`` calls without profiling."""
        extra: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        extra["INFERENCE_PRECISION_HINT"] = self.inference_precision or None  # None: the plugin's default
        bound = _bound(proto, feeds)
        inputs = {name: np.ascontiguousarray(value) for name, value in feeds.items()}
        runs = max(1, runs)
        compiled = compile_model(bound, "the profiled file", threads, extra | {"PERF_COUNT": True})
        request = compiled.create_infer_request()
        for _ in range(warmup):
            request.infer(inputs)
        before = _counters(request) if warmup else {}
        for _ in range(runs):
            request.infer(inputs)
        after = _counters(request)
        mean_us = {name: max(0.0, (total * (warmup + runs) - before.get(name, 0.0) * warmup) / runs)
                   for name, total in after.items()}
        nodes = _nodes(compiled.get_runtime_model(), mean_us, _file_names(proto))
        del request, compiled
        return DeployedGraph(nodes=nodes, wall_ms=_wall_ms(compile_model(bound, "the profiled file", threads, extra),
                                                           inputs, runs, warmup))


def _file_names(proto: onnx.ModelProto) -> dict[str, str]:
    """The file's node names, and each tensor's producing node (OpenVINO names a Gemm's bias Add after its
    output tensor, e.g. ``logits``)."""
    names = {node.name: node.name for node in proto.graph.node if node.name}
    for node in proto.graph.node:
        for output in node.output:
            names.setdefault(output, node.name)
    return names


def _originals(raw: str, file_names: Mapping[str, str]) -> tuple[str, ...]:
    """``originalLayersNames`` as the file's node names: OpenVINO's frontend splits a node into parts named
    after it (``/conv/Conv/WithoutBiases``, ``/fc/Gemm/WithoutBiases/DequantizationMultiply``), so a name
    that is not the file's is cut at its last ``/`` until it is; names the frontend made up (``Multiply_16199``,
    a DequantizeLinear's ``Subtract_17074``) name no node of the file and are left out."""
    found: dict[str, None] = {}
    for name in (part for part in raw.split(",") if part):
        while name not in file_names and "/" in name:
            name = name.rsplit("/", 1)[0]
        if file_names.get(name):
            found[file_names[name]] = None
    return tuple(found)


def _wall_ms(compiled: Any, inputs: Mapping[str, np.ndarray], runs: int, warmup: int) -> float:
    """Median milliseconds of one call, without the performance counters' timers."""
    request = compiled.create_infer_request()
    for _ in range(warmup):
        request.infer(inputs)
    walls = []
    for _ in range(runs):
        started = time.perf_counter()
        request.infer(inputs)
        walls.append((time.perf_counter() - started) * 1e3)
    return float(statistics.median(walls))


def _nodes(runtime_model: Any, mean_us: Mapping[str, float],
           file_names: Mapping[str, str]) -> tuple[DeployedNode, ...]:
    """The runtime model's nodes on the data path, plus executed constant-side nodes (a weight or bias
    Reorder run on every call costs time too); constants, inputs and outputs are not nodes."""
    constant: set[str] = set()
    found: list[tuple[int, DeployedNode]] = []
    for op in runtime_model.get_ordered_ops():
        name = op.get_friendly_name()
        info = op.get_rt_info()
        layer_type = info["layerType"].astype(str)
        producers = [port.get_source_output() for port in op.inputs()]
        if layer_type == "Const" or (producers and all(p.get_node().get_friendly_name() in constant
                                                       for p in producers)):
            constant.add(name)
        if layer_type in _NOT_NODES or (name in constant and not mean_us.get(name)):
            continue
        originals = _originals(info["originalLayersNames"].astype(str), file_names)
        node = DeployedNode(
            name=name,
            kind=_kind(layer_type, info["runtimePrecision"].astype(str), info["outputPrecisions"].astype(str)),
            ms=mean_us.get(name, 0.0) / 1e3,
            inputs=tuple(_tensor(p) for p in producers if p.get_node().get_friendly_name() not in constant),
            outputs=tuple(_tensor(output) for output in op.outputs()),
            originals=originals)
        found.append((int(info["execOrder"].astype(str)), node))
    return tuple(node for _, node in sorted(found, key=lambda item: item[0]))
