"""Per-group kernel latency in ONNX Runtime: each group's op(s) alone, at every candidate, timed here.

For one (group, precision) a small model holds just the group's node(s) at their traced input shapes
(batch 1), written the way ``mixq.backends.onnx.export.onnx_qdq`` writes that precision:

- ``fp32``: the node as it is;
- ``fp16``: activations cast to float16 and back, weights stored as float16 and cast (the CPU EP has no
  general float16 kernels, so the exported fp16 model runs exactly this);
- ``wNaM`` that ORT runs as an integer kernel (8-bit activations, weights stored in int8): the 8-bit
  activation as the graph input, its ``DequantizeLinear``, int8 per-channel weights, an int32 bias and a
  ``QuantizeLinear`` on the output, which ORT fuses into one QLinearConv / QGemm / QLinearMatMul taking
  and giving 8-bit tensors, as inside a chain of integer groups;
- other ``wNaM`` (INT4 weights, 16-bit activations): float in, ``QuantizeLinear -> DequantizeLinear`` on
  the activation input(s) (a ``Clip`` first below 8 bits), integer weights with a ``DequantizeLinear``,
  float out: ORT dequantizes and runs a float kernel, as in the exported file. What it really ran is read
  from its optimized graph and stored with the time.

The table is additive: where a float group meets an integer one, the exported model also pays a
quantize or dequantize, which no entry holds.
Quantizer values do not change the time, so scales are fixed rather than calibrated.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from mixq.backends.base import Progress
from mixq.backends.onnx.int_types import container_type, integer_tensor
from mixq.backends.onnx.qdq import Quantizers
from mixq.backends.onnx.runtime import integer_kernel
from mixq.backends.onnx.timing import Timer, kernel_of
from mixq.backends.onnx.trace import OnnxSite
from mixq.core.graph import QuantizerGroup
from mixq.core.precision import Precision, QuantScheme, RangeMethod
from mixq.core.ranges import integer_range
from mixq.cost.measured_latency import LatencyEntry, LatencyTable, fill_table
from mixq.errors import UnsupportedModelError

#: Opset of the kernel models: int16/uint16 and INT4 QuantizeLinear/DequantizeLinear.
KERNEL_OPSET = 21
_T = onnx.TensorProto


# -- kernel models -----------------------------------------------------------------------------------

class _Builder:
    """One kernel model: graph inputs for the activations, the group's node(s), their quantizers."""

    def __init__(self, traced: Any, precision: Precision, scheme: QuantScheme) -> None:
        self.model = traced.model
        self.index = traced.model.index
        self.precision = precision
        self.scheme = scheme
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, onnx.TensorProto] = {}
        self.inputs: dict[str, onnx.ValueInfoProto] = {}
        self.feeds: dict[str, np.ndarray] = {}
        self.outputs: list[onnx.ValueInfoProto] = []
        self.made: dict[tuple[Any, ...], str] = {}
        self.rng = np.random.default_rng(0)

    def shape(self, name: str) -> tuple[int, ...]:
        info = self.model.infos.get(name)
        if info is None:
            raise UnsupportedModelError(f"mixq could not determine the shape of tensor {name} to time its kernel")
        return info.shape

    def activation(self, name: str) -> str:
        """A float graph input fed random data at the traced shape."""
        if name not in self.inputs:
            shape = self.shape(name)
            self.inputs[name] = helper.make_tensor_value_info(name, _T.FLOAT, list(shape))
            self.feeds[name] = self.rng.standard_normal(shape).astype(np.float32)
        return name

    def integer_activation(self, name: str, bits: int, symmetric: bool) -> tuple[str, float]:
        """An 8-bit graph input (as the previous integer kernel hands it over) and its DequantizeLinear."""
        key = ("int_input", name, bits, symmetric)
        scale, dtype, zero = self._quant_values(bits, symmetric)
        if key not in self.made:
            shape = self.shape(name)
            quantized = f"{name}::int{bits}"
            self.inputs[quantized] = helper.make_tensor_value_info(quantized, dtype, list(shape))
            low, high = (-128, 127) if dtype == _T.INT8 else (0, 255)
            np_dtype = helper.tensor_dtype_to_np_dtype(dtype)
            self.feeds[quantized] = self.rng.integers(low, high + 1, size=shape).astype(np_dtype)
            base = f"{name}::q{bits}"
            scale_name = self.init(base + "_scale", np.asarray(scale, np.float32))
            zero_name = self.init(base + "_zero", np.asarray(zero, np_dtype))
            self.made[key] = self.add("DequantizeLinear", [quantized, scale_name, zero_name], base + "_dq")
        return self.made[key], scale

    def _quant_values(self, bits: int, symmetric: bool) -> tuple[float, int, int]:
        """Fixed scale, container type and zero-point of an activation quantizer (values do not change time)."""
        qmin, qmax = integer_range(bits, symmetric)
        container = bits if bits in (8, 16) else (8 if bits < 8 else 16)
        dtype = {(8, False): _T.UINT8, (8, True): _T.INT8, (16, False): _T.UINT16, (16, True): _T.INT16}[
            (container, symmetric)]
        return 4.0 / (2 ** bits - 1), dtype, 0 if symmetric else (qmin + qmax + 1) // 2

    def init(self, name: str, values: np.ndarray | onnx.TensorProto) -> str:
        if name not in self.inits:
            tensor = values if isinstance(values, onnx.TensorProto) else numpy_helper.from_array(values, name)
            if tensor.name != name:
                copy = onnx.TensorProto()
                copy.CopyFrom(tensor)
                copy.name = name
                tensor = copy
            self.inits[name] = tensor
        return name

    def add(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output + "_node", **attrs))
        return output

    def cast16(self, name: str) -> str:
        if ("cast16", name) not in self.made:
            half = self.add("Cast", [name], f"{name}::h", to=_T.FLOAT16)
            self.made[("cast16", name)] = self.add("Cast", [half], f"{name}::fp16", to=_T.FLOAT)
        return self.made[("cast16", name)]

    def qdq(self, name: str, bits: int, symmetric: bool, clip: bool = True) -> tuple[str, float]:
        """Quantize -> dequantize ``name`` at ``bits`` (fixed scale); returns the output and the scale."""
        key = ("qdq", name, bits, symmetric)
        scale, dtype, zero = self._quant_values(bits, symmetric)
        if key in self.made:
            return self.made[key], scale
        qmin, qmax = integer_range(bits, symmetric)
        base = f"{name}::q{bits}"
        source = name
        if clip and bits not in (8, 16):
            low, high = np.float32((qmin - zero) * scale), np.float32((qmax - zero) * scale)
            source = self.add("Clip", [name, self.init(base + "_lo", np.asarray(low)),
                                       self.init(base + "_hi", np.asarray(high))], base + "_clipped")
        scale_name = self.init(base + "_scale", np.asarray(scale, np.float32))
        zero_name = self.init(base + "_zero", np.asarray(zero, helper.tensor_dtype_to_np_dtype(dtype)))
        q = self.add("QuantizeLinear", [source, scale_name, zero_name], base + "_q")
        self.made[key] = self.add("DequantizeLinear", [q, scale_name, zero_name], base + "_dq")
        return self.made[key], scale

    def weight_int(self, name: str, bits: int, axis: int) -> tuple[str, np.ndarray]:
        """Integer weights (from the real ones, min-max ranges: values do not change the time) with a
        per-channel or per-tensor DequantizeLinear, stored as the export stores them."""
        weight = numpy_helper.to_array(self.index.initializers[name])
        quant = Quantizers({name: weight}, {name: axis}, {}, replace(self.scheme, weight_range=RangeMethod.MINMAX))
        params = quant.weight_params(name, bits)
        q, _, _ = quant.weight_integers(name, bits)
        dtype = container_type(params.qmin, params.qmax, int4=True)
        scale = np.asarray(params.scale, np.float32)
        base = f"{name}::w{bits}"
        self.init(base + "_q", integer_tensor(base + "_q", q, dtype))
        self.init(base + "_scale", scale)
        self.init(base + "_zero", integer_tensor(base + "_zero", np.asarray(params.zero_point), dtype))
        attrs = {"axis": axis} if self.scheme.weight_per_channel else {}
        out = self.add("DequantizeLinear", [base + "_q", base + "_scale", base + "_zero"], base, **attrs)
        return out, scale

    def constant(self, name: str) -> np.ndarray | None:
        """An initializer's value (``normalize`` already replaced ``Identity`` of an initializer)."""
        tensor = self.index.initializers.get(name)
        return numpy_helper.to_array(tensor) if tensor is not None else None

    def bias_int32(self, name: str, bias: np.ndarray, scale: np.ndarray) -> str | None:
        bias = bias.astype(np.float64)
        if bias.ndim != 1 or scale.size not in (1, bias.size):
            return None
        scale = np.broadcast_to(np.asarray(scale, np.float64), bias.shape).astype(np.float32)
        base = f"{name}::int32"
        q = np.clip(np.round(bias / scale), -(2**31), 2**31 - 1).astype(np.int32)
        self.init(base + "_q", q)
        self.init(base + "_scale", scale)
        self.init(base + "_zero", np.zeros(bias.shape, np.int32))
        return self.add("DequantizeLinear", [base + "_q", base + "_scale", base + "_zero"], base, axis=0)

    def site(self, site: OnnxSite) -> None:
        """The site's node with its inputs rewritten for the precision; its output is a graph output."""
        original = self.index.nodes[self.index.position[site.node]]
        node = onnx.NodeProto()
        node.CopyFrom(original)
        precision = self.precision
        wires = list(node.input)
        act_scale = 1.0
        data = set(site.act_inputs) | ({site.second_act} if site.second_act is not None else set())
        fused = integer_kernel(precision, int4=True)  # as mixq.export writes it (INT4 weights by default)
        bias_input = 2 if node.op_type in ("Conv", "ConvTranspose", "Gemm") and len(node.input) > 2 else None
        bias = None
        for position, name in enumerate(node.input):
            if not name or (position == site.weight_input and not precision.keeps_float32):
                continue  # empty, or a weight replaced below
            value = None if position in data else self.constant(name)
            if value is not None:
                wires[position] = self.init(name, value)
                bias = value if position == bias_input else bias
            elif not fused:
                wires[position] = self.activation(name)
        symmetric = self.scheme.act_symmetric
        if not precision.keeps_float32:
            for position in site.act_inputs:
                if precision.is_float:
                    wires[position] = self.cast16(wires[position])
                elif fused:
                    wires[position], act_scale = self.integer_activation(node.input[position], precision.act_bits,
                                                                         symmetric)
                else:
                    wires[position], act_scale = self.qdq(wires[position], precision.act_bits, symmetric)
            if site.second_act is not None:
                second = node.input[site.second_act]
                wires[site.second_act] = (
                    self.cast16(wires[site.second_act]) if precision.is_float else
                    self.integer_activation(second, precision.weight_bits, symmetric)[0] if fused else
                    self.qdq(wires[site.second_act], precision.weight_bits, symmetric)[0])
            if site.weight_input is not None and site.weight_key is not None:
                key = site.weight_key
                if precision.is_float:
                    if ("w16", key) not in self.made:
                        w = numpy_helper.to_array(self.index.initializers[key])
                        half = self.init(f"{key}::h", w.astype(np.float16))
                        self.made[("w16", key)] = self.add("Cast", [half], f"{key}::fp16", to=_T.FLOAT)
                    wires[site.weight_input] = self.made[("w16", key)]
                else:
                    wires[site.weight_input], w_scale = self.weight_int(key, precision.weight_bits, site.weight_axis)
                    if bias is not None and bias_input is not None and precision.act_bits <= 8 \
                            and precision.weight_bits <= 8:
                        quantized = self.bias_int32(node.input[bias_input], bias, act_scale * w_scale)
                        if quantized is not None:
                            wires[bias_input] = quantized
        del node.input[:]
        node.input.extend(wires)
        self.nodes.append(node)
        shape = list(self.shape(node.output[0]))
        if fused:  # the next group's QuantizeLinear: DQ -> op -> Q fuses, 8 bits out as into the next kernel
            scale, dtype, zero = self._quant_values(precision.act_bits, symmetric)
            base = f"{node.output[0]}::out"
            output = self.add("QuantizeLinear", [
                node.output[0], self.init(base + "_scale", np.asarray(scale, np.float32)),
                self.init(base + "_zero", np.asarray(zero, helper.tensor_dtype_to_np_dtype(dtype)))], base)
            self.outputs.append(helper.make_tensor_value_info(output, dtype, shape))
        else:
            self.outputs.append(helper.make_tensor_value_info(node.output[0], _T.FLOAT, shape))

    def proto(self) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "mixq_kernel", list(self.inputs.values()), self.outputs,
                                  list(self.inits.values()))
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", KERNEL_OPSET)])
        model.ir_version = 10
        return model


def kernel_model(traced: Any, group: QuantizerGroup, precision: Precision,
                 scheme: QuantScheme | None = None) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The small model timing ``group`` at ``precision``, and its feeds (random, batch 1)."""
    builder = _Builder(traced, precision, scheme or QuantScheme())
    sites = {site.node: site for site in traced.sites}
    for op in group.ops:
        builder.site(sites[op.name])
    return builder.proto(), builder.feeds


# -- the table ---------------------------------------------------------------------------------------

def fingerprint(traced: Any) -> str:
    """What latency depends on: each quantizable node's type, attributes, input shapes and group.

    Not the weights' values nor the calibration data, so a new data set or a fine-tuned copy of the
    same architecture reuses the table.
    """
    index, infos = traced.model.index, traced.model.infos
    records = []
    for group in traced.graph:
        for op in group.ops:
            node = index.nodes[index.position[op.name]]
            shapes = [list(infos[name].shape) if name in infos else
                      list(index.initializers[name].dims) if name in index.initializers else None
                      for name in node.input]
            records.append([group.id, op.name, node.op_type, sorted(str(a).replace("\n", " ") for a in node.attribute),
                            shapes])
    return hashlib.sha256(json.dumps(records).encode()).hexdigest()[:16]


def machine() -> dict[str, Any]:
    """The CPU model, core count and ONNX Runtime version the numbers hold for."""
    import onnxruntime as ort

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "arch": platform.machine(), "onnxruntime": ort.__version__}


def measure_latency(traced: Any, threads: int | None = None, progress: Progress | None = None,
                    timer: Timer | None = None, scheme: QuantScheme | None = None,
                    use_cache: bool = True) -> LatencyTable:
    """Milliseconds per (group, candidate) of a traced ONNX model, reused from the cache when it has them.

    The cache key is the model's :func:`fingerprint`, :func:`machine`, the thread count and the timer's
    settings; the whole float model is timed too (``extra["model_fp32_ms"]``) for comparison with the
    sum of its groups.
    """
    timer = timer or Timer(threads=threads)
    scheme = scheme or QuantScheme()
    groups = {group.id: group for group in traced.graph}
    key = {"model": fingerprint(traced), "machine": machine(), "timer": timer.settings(),
           "scheme": {"act_symmetric": scheme.act_symmetric, "weight_symmetric": scheme.weight_symmetric,
                      "weight_per_channel": scheme.weight_per_channel}, "kernel_opset": KERNEL_OPSET}

    def measure(group_id: str, precision: Precision) -> LatencyEntry:
        proto, feeds = kernel_model(traced, groups[group_id], precision, scheme)
        ms, ops = timer.measure(proto, feeds)
        return LatencyEntry(ms, kernel_of(ops), tuple(ops))

    wanted = [(group.id, precision) for group in traced.graph for precision in group.candidates]
    table = fill_table(wanted, key, measure, progress, use_cache)
    table.extra["model_fp32_ms"] = _whole_model_ms(traced, timer)
    return table


def _whole_model_ms(traced: Any, timer: Timer) -> float | None:
    """The float model at batch 1 (untimed if it needs a fixed larger batch)."""
    model = traced.model
    shape = model.infos[model.input_name].shape
    if model.fixed_batch not in (None, 1) or not shape:
        return None
    feeds = {model.input_name: np.random.default_rng(0).standard_normal((1, *shape[1:])).astype(np.float32)}
    ms, _ = timer.measure(model.proto, feeds)
    return ms
