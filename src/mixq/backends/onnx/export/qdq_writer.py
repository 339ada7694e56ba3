"""Writing QuantizeLinear/DequantizeLinear into an ONNX graph: ``QdqWriter`` (used by ``build_qdq`` and
the output quantizers). New nodes go right after the producer of their input, so the graph stays sorted."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from mixq.backends.onnx.int_types import INTEGER_RANGE, WIDE_TYPES, container_type, integer_tensor
from mixq.backends.onnx.qdq import drop_unused_initializers
from mixq.core.ranges import QuantParams

logger = logging.getLogger(__name__)

_INT32 = (-(2**31), 2**31 - 1)


class QdqWriter:
    """Rewrites one model: new nodes are emitted right after the producer of their input."""

    def __init__(self, proto: onnx.ModelProto, int4: bool, wide_domain: str) -> None:
        self.proto = proto
        self.graph = proto.graph
        self.int4 = int4
        self.wide_domain = wide_domain  # "" (opset >= 21) or "com.microsoft" (ORT's contrib QDQ)
        self.position = {node.name: i for i, node in enumerate(self.graph.node)}
        self.producer = {name: i for i, node in enumerate(self.graph.node) for name in node.output}
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.extra: dict[int, list[onnx.NodeProto]] = {}
        self.inits: list[onnx.TensorProto] = []
        self.made: dict[tuple[Any, ...], str] = {}
        self.storage: dict[str, int] = {}

    def _unique(self, base: str) -> str:
        """``base``, or ``base_2``, ``base_3``... when a quantizer of the same tensor and width but another
        range already took it (e.g. an output quantizer and a consumer's input quantizer at 4 bits)."""
        taken = {t.name for t in self.inits} | set(self.initializers)
        name, n = base, 1
        while f"{name}_scale" in taken:
            n += 1
            name = f"{base}_{n}"
        return name

    def emit(self, after: str | None, nodes: list[onnx.NodeProto]) -> None:
        key = self.producer.get(after, -1) if after is not None else -1
        self.extra.setdefault(key, []).extend(nodes)

    def _domain(self, dtype: int) -> str:
        return self.wide_domain if dtype in WIDE_TYPES else ""

    def qdq(self, tensor: str, params: QuantParams) -> str:
        """A real QuantizeLinear/DequantizeLinear pair (clipped first to a range below its container)."""
        qmin, qmax = params.qmin, params.qmax
        scale, zero = float(np.float32(params.scale)), int(params.zero_point)
        key = ("qdq", tensor, qmin, qmax, scale, zero)
        if key in self.made:
            return self.made[key]
        dtype = container_type(qmin, qmax, int4=False)
        base = self._unique(f"{tensor}::q{qmax - qmin + 1}")
        self.inits += [numpy_helper.from_array(np.asarray(scale, np.float32), base + "_scale"),
                       integer_tensor(base + "_zero", np.asarray(zero), dtype)]
        nodes = []
        source = tensor
        if (qmin, qmax) != INTEGER_RANGE[dtype]:
            low, high = np.float32((qmin - zero) * scale), np.float32((qmax - zero) * scale)
            self.inits += [numpy_helper.from_array(np.asarray(low), base + "_lo"),
                           numpy_helper.from_array(np.asarray(high), base + "_hi")]
            nodes.append(helper.make_node("Clip", [tensor, base + "_lo", base + "_hi"], [base + "_clipped"],
                                          name=base + "_clip"))
            source = base + "_clipped"
        domain = self._domain(dtype)
        nodes += [helper.make_node("QuantizeLinear", [source, base + "_scale", base + "_zero"], [base + "_q"],
                                   name=base + "_quantize", domain=domain),
                  helper.make_node("DequantizeLinear", [base + "_q", base + "_scale", base + "_zero"], [base + "_dq"],
                                   name=base + "_dequantize", domain=domain)]
        self.emit(tensor, nodes)
        self.made[key] = base + "_dq"
        return base + "_dq"

    def dynamic_qdq(self, tensor: str) -> str:
        """``DynamicQuantizeLinear -> DequantizeLinear``: uint8 with this run's range, ORT's dynamic mode."""
        key = ("dynamic", tensor)
        if key not in self.made:
            base = f"{tensor}::dyn"
            self.emit(tensor, [
                helper.make_node("DynamicQuantizeLinear", [tensor], [base + "_q", base + "_scale", base + "_zero"],
                                 name=base + "_quantize"),
                helper.make_node("DequantizeLinear", [base + "_q", base + "_scale", base + "_zero"], [base + "_dq"],
                                 name=base + "_dequantize")])
            self.made[key] = base + "_dq"
        return self.made[key]

    def cast16(self, tensor: str) -> str:
        key = ("cast16", tensor)
        if key not in self.made:
            base = f"{tensor}::fp16"
            self.emit(tensor, [
                helper.make_node("Cast", [tensor], [base + "_h"], to=onnx.TensorProto.FLOAT16, name=base + "_to16"),
                helper.make_node("Cast", [base + "_h"], [base], to=onnx.TensorProto.FLOAT, name=base + "_to32")])
            self.made[key] = base
        return self.made[key]

    def weight_fp16(self, key: str, weight: np.ndarray) -> str:
        made_key = ("w16", key)
        if made_key not in self.made:
            base = f"{key}::fp16"
            self.inits.append(numpy_helper.from_array(weight.astype(np.float16), base + "_h"))
            self.emit(None, [helper.make_node("Cast", [base + "_h"], [base], to=onnx.TensorProto.FLOAT,
                                              name=base + "_cast")])
            self.storage["fp16"] = self.storage.get("fp16", 0) + 1
            self.made[made_key] = base
        return self.made[made_key]

    def weight_int(self, key: str, quant: Any, bits: int, axis: int, per_channel: bool) -> str:
        """Integer weights with a (per-channel) DequantizeLinear: the simulation's weights, bit for bit."""
        params = quant.weight_params(key, bits)
        made_key = ("wq", key, params.qmin, params.qmax)
        if made_key in self.made:
            return self.made[made_key]
        dtype = container_type(params.qmin, params.qmax, self.int4)
        q, _, _ = quant.weight_integers(key, bits)
        scale = np.asarray(params.scale, np.float32)
        zero = np.asarray(params.zero_point).astype(np.int32)
        base = f"{key}::w{params.qmax - params.qmin + 1}"
        self.inits += [integer_tensor(base + "_q", q, dtype), numpy_helper.from_array(scale, base + "_scale"),
                       integer_tensor(base + "_zero", zero, dtype)]
        attrs: dict[str, Any] = {"axis": axis} if per_channel else {}
        self.emit(None, [helper.make_node("DequantizeLinear", [base + "_q", base + "_scale", base + "_zero"], [base],
                                          name=base + "_dequantize", domain=self._domain(dtype), **attrs)])
        kind = onnx.TensorProto.DataType.Name(dtype).lower()
        self.storage[kind] = self.storage.get(kind, 0) + 1
        self.made[made_key] = base
        return base

    def float_init(self, name: str, values: np.ndarray) -> str:
        """A new float initializer (a bias-corrected bias), readable by :meth:`bias_int32`."""
        if name not in self.initializers:
            tensor = numpy_helper.from_array(np.asarray(values, np.float32), name)
            self.inits.append(tensor)
            self.initializers[name] = tensor
        return name

    def bias_int32(self, bias_name: str, act_scale: float, weight_scale: np.ndarray) -> str | None:
        """The bias as int32 with scale ``s_x * s_w`` (None if it would overflow or has another shape)."""
        made_key = ("bias", bias_name, float(act_scale), np.asarray(weight_scale, np.float64).tobytes())
        if made_key in self.made:
            return self.made[made_key]
        tensor = self.initializers.get(bias_name)
        if tensor is None:
            return None
        bias = numpy_helper.to_array(tensor).astype(np.float64)
        scale = np.float64(np.float32(act_scale)) * np.asarray(weight_scale, np.float64).astype(np.float32)
        if bias.ndim != 1 or scale.size not in (1, bias.size):
            return None
        q = np.round(bias / scale)
        if np.any(q < _INT32[0]) or np.any(q > _INT32[1]):
            return None
        base = f"{bias_name}::int32_{sum(1 for k in self.made if k[0] == 'bias')}"
        self.inits += [numpy_helper.from_array(q.astype(np.int32), base + "_q"),
                       numpy_helper.from_array(np.asarray(scale, np.float32).reshape(-1 if scale.size > 1 else ()),
                                               base + "_scale"),
                       numpy_helper.from_array(np.zeros(scale.shape if scale.size > 1 else (), np.int32),
                                               base + "_zero")]
        attrs: dict[str, Any] = {"axis": 0} if scale.size > 1 else {}
        self.emit(None, [helper.make_node("DequantizeLinear", [base + "_q", base + "_scale", base + "_zero"], [base],
                                          name=base + "_dequantize", **attrs)])
        self.made[made_key] = base
        return base

    def finish(self) -> onnx.ModelProto:
        nodes = list(self.extra.get(-1, []))
        for i, node in enumerate(self.graph.node):
            nodes.append(node)
            nodes.extend(self.extra.get(i, []))
        del self.graph.node[:]
        self.graph.node.extend(nodes)
        self.graph.initializer.extend(self.inits)
        drop_unused_initializers(self.graph)
        return self.proto
