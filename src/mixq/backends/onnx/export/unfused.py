"""Integer groups the runtime does not fuse: stored the way that runs fastest, measured, and said.

ONNX Runtime runs ``DQ -> Conv -> Q`` as one integer kernel only when the conv's output is quantized. An
integer group whose output is read by a float group that itself feeds a quantizer gets no output quantizer
(ORT would quantize that float group by itself), so it runs as a float kernel on weights dequantized from
int8 **on every run**: the file pays a DequantizeLinear per run for storage it does not need. The same
numbers can be stored as float (the dequantized values, bit-identical: ``(q - zero) * scale`` in float32 as
DequantizeLinear computes them), which costs 4x the bytes of those weights and no per-run work. Which is
faster depends on the runtime and the weight's size, so both files are timed and the faster one is kept;
``ExportSettings.unfused_weights`` forces one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from mixq.backends.base import UNFUSED_WEIGHTS
from mixq.backends.onnx.export.checks import optimized_graph

#: Kernels ORT runs a conv / gemm / matmul as when it did not fuse it into an integer one.
_FLOAT_KERNELS = {"Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul", "ConvTranspose"}
#: How much faster (fraction) float storage must measure to be kept: the smaller int8 file wins near-ties.
MARGIN = 0.03
#: ``ExportSettings.unfused_weights`` values.
CHOICES = UNFUSED_WEIGHTS


@dataclass(frozen=True)
class UnfusedChoice:
    """What the export did with its unfused integer groups.

    Attributes:
        nodes: the integer nodes ORT runs as float kernels.
        storage: ``int8`` (kept, dequantized per run) or ``float`` (dequantized values stored).
        int8_ms / float_ms: the whole file's measured latency each way (None when not timed).
    """

    nodes: tuple[str, ...]
    storage: str
    int8_ms: float | None = None
    float_ms: float | None = None

    def note(self) -> str:
        timed = (f" (measured: {self.float_ms:.3g} ms stored as float, {self.int8_ms:.3g} ms as int8 + "
                 "DequantizeLinear)" if self.int8_ms is not None and self.float_ms is not None else "")
        shown = ", ".join(self.nodes[:6]) + (f" (+{len(self.nodes) - 6} more)" if len(self.nodes) > 6 else "")
        how = ("their weights are stored as float (the dequantized values, bit-identical), so no "
               "DequantizeLinear runs per inference" if self.storage == "float" else
               "their weights stay int8 and are dequantized on every run")
        return (f"{len(self.nodes)} integer group op(s) run as float kernels in ONNX Runtime (a float group that "
                f"feeds a quantizer reads their output): {shown}; {how}{timed}")


def unfused_nodes(proto: onnx.ModelProto, integer_nodes: Collection[str]) -> tuple[str, ...]:
    """The nodes of ``integer_nodes`` that ONNX Runtime's optimized graph still runs as float kernels."""
    optimized = optimized_graph(proto)
    wanted = set(integer_nodes)
    return tuple(sorted(node.name for node in optimized.graph.node
                        if node.op_type in _FLOAT_KERNELS and node.name in wanted))


def float_weights(proto: onnx.ModelProto, nodes: Collection[str]) -> onnx.ModelProto:
    """A copy of ``proto`` where the listed nodes read their weights as stored float32 (the values their
    weight DequantizeLinear computes) instead of int8 + DequantizeLinear; the DQ nodes no one else reads go."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    graph = out.graph
    inits = {t.name: t for t in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    targets = {n.name: n for n in graph.node if n.name in set(nodes)}
    dropped: set[str] = set()
    for node in targets.values():
        if len(node.input) < 2:
            continue
        dq = producers.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or not all(i in inits for i in dq.input if i):
            continue
        values = _dequantize(dq, inits)
        name = node.input[1] + "::f32"
        if name not in inits:
            tensor = numpy_helper.from_array(values, name)
            graph.initializer.append(tensor)
            inits[name] = tensor
        readers[node.input[1]] -= 1
        node.input[1] = name
        if readers[dq.output[0]] == 0:
            dropped.add(dq.name)
    if dropped:
        kept = [n for n in graph.node if n.name not in dropped]
        del graph.node[:]
        graph.node.extend(kept)
        used = {i for n in graph.node for i in n.input}
        kept_inits = [t for t in graph.initializer if t.name in used]
        del graph.initializer[:]
        graph.initializer.extend(kept_inits)
    return out


def _dequantize(dq: onnx.NodeProto, inits: Mapping[str, onnx.TensorProto]) -> np.ndarray:
    """``(q - zero) * scale`` in float32, per axis when the scale is a vector (DequantizeLinear's arithmetic)."""
    q = numpy_helper.to_array(inits[dq.input[0]]).astype(np.float32)
    scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32)
    zero = (numpy_helper.to_array(inits[dq.input[2]]).astype(np.float32) if len(dq.input) > 2 and dq.input[2]
            else np.zeros_like(scale))
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    if scale.ndim == 1 and scale.size > 1:
        shape = [1] * q.ndim
        shape[axis if axis >= 0 else q.ndim + axis] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((q - zero) * scale).astype(np.float32)


TimeFile = Callable[[onnx.ModelProto], float]


def store_unfused(proto: onnx.ModelProto, integer_nodes: Collection[str], choice: str = "auto",
                  time_file: TimeFile | None = None, rounds: int = 3) -> tuple[onnx.ModelProto, UnfusedChoice | None]:
    """``proto`` with its unfused integer groups' weights stored as ``choice`` says (``auto``: both files timed
    with ``time_file`` in ``rounds`` interleaved rounds, float kept only when at least ``MARGIN`` faster; int8
    when nothing can time them).

    Returns the model to write and what was done (None when every integer group fuses).
    """
    if choice not in CHOICES:
        raise ValueError(f"unfused weights must be one of {CHOICES}, got {choice!r}")
    nodes = unfused_nodes(proto, integer_nodes)
    if not nodes:
        return proto, None
    if choice == "int8":
        return proto, UnfusedChoice(nodes, "int8")
    as_float = float_weights(proto, nodes)
    if choice == "float" or time_file is None:
        return (as_float, UnfusedChoice(nodes, "float")) if choice == "float" else (proto, UnfusedChoice(nodes, "int8"))
    int8_times, float_times = [], []
    for _ in range(rounds):
        int8_times.append(time_file(proto))
        float_times.append(time_file(as_float))
    int8_ms, float_ms = float(np.median(int8_times)), float(np.median(float_times))
    if float_ms < (1.0 - MARGIN) * int8_ms:  # clearly faster: timing noise alone does not change the file
        return as_float, UnfusedChoice(nodes, "float", int8_ms, float_ms)
    return proto, UnfusedChoice(nodes, "int8", int8_ms, float_ms)
