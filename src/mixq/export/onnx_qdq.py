"""A mixed-precision plan as a deployable QDQ ONNX model (ONNX Runtime's quantized format).

Per quantizer group, at the ops' inputs (the same places the simulation quantizes, nothing more):

- integer ``wNaM``: activations get a real ``QuantizeLinear -> DequantizeLinear`` pair (uint8/int8 for
  M <= 8, uint16/int16 for M <= 16; a width below its container gets a ``Clip`` to its range first), with
  the scale and zero-point calibrated for the simulation. Weights are stored as integers (int8; INT4 for
  N <= 4 at opset 21; int16 for N > 8) with a per-channel ``DequantizeLinear``; a Conv/Gemm bias becomes
  int32 with scale ``s_x * s_w`` (what ORT's QLinearConv/QGemm fusions expect). A MatMul of two
  activations quantizes its second operand with the weight bits, as the simulation does.
- ``fp16``: activations are cast to float16 and back; weights are stored as float16 and cast to float32.
  The op itself computes in float32 (the CPU EP has no general float16 kernels), so the file halves the
  weights' size and reproduces the simulation exactly, but does not run faster.
- ``fp32``: untouched.

No quantizer is added at op outputs: the exported model computes exactly what the simulation computes
(up to the int32 bias rounding and QuantizeLinear dividing by the scale where the simulation multiplies
by its reciprocal). ONNX Runtime fuses ``DQ -> op -> Q`` into an integer kernel where an integer group's
output flows straight into another integer group's QuantizeLinear (``Relu`` in between is absorbed);
``report.fused`` lists what it fused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from mixq.backends.base import Progress
from mixq.backends.onnx.load import INT4_OPSET, opset, upgrade
from mixq.backends.onnx.qdq import drop_unused_initializers
from mixq.backends.onnx.simulation import OnnxSimulation, restore_declarations
from mixq.backends.onnx.trace import OnnxSite
from mixq.core.assignment import Assignment
from mixq.core.precision import Precision
from mixq.core.ranges import QuantParams
from mixq.errors import ConfigError, UnsupportedModelError
from mixq.export.checks import compare, fused_ops, latency_ms
from mixq.export.fold_pads import fold_pads
from mixq.export.output_quantizers import calibrate, output_tensors

logger = logging.getLogger(__name__)

#: Opset with int16/uint16/int4 QuantizeLinear and DequantizeLinear.
WIDE_QDQ_OPSET = 21
_INT32 = (-(2**31), 2**31 - 1)


@dataclass
class ExportReport:
    """What was written and how it compares with the simulation and the float model."""

    path: Path
    file_bytes: int
    float_file_bytes: int
    opset: int
    precision_counts: dict[str, int]
    weight_storage: dict[str, int] = field(default_factory=dict)  # weight tensors per storage type
    notes: list[str] = field(default_factory=list)
    check: dict[str, float] = field(default_factory=dict)
    latency: dict[str, float] = field(default_factory=dict)
    fused: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "file_bytes": self.file_bytes, "float_file_bytes": self.float_file_bytes,
                "opset": self.opset, "precision_counts": self.precision_counts,
                "weight_storage": self.weight_storage, "notes": self.notes, "check": self.check,
                "latency": self.latency, "fused": self.fused}


def _container(qmin: int, qmax: int, int4: bool) -> int:
    """The smallest ONNX integer type holding ``[qmin, qmax]``."""
    if qmin >= 0:
        for dtype, high in ((onnx.TensorProto.UINT4, 15), (onnx.TensorProto.UINT8, 255),
                            (onnx.TensorProto.UINT16, 65535)):
            if qmax <= high and (int4 or dtype != onnx.TensorProto.UINT4):
                return dtype
    else:
        for dtype, low, high in ((onnx.TensorProto.INT4, -8, 7), (onnx.TensorProto.INT8, -128, 127),
                                 (onnx.TensorProto.INT16, -32768, 32767)):
            if low <= qmin and qmax <= high and (int4 or dtype != onnx.TensorProto.INT4):
                return dtype
    raise ConfigError(f"no ONNX integer type holds the range [{qmin}, {qmax}]")


_RANGE: dict[int, tuple[int, int]] = {onnx.TensorProto.UINT4: (0, 15), onnx.TensorProto.INT4: (-8, 7), onnx.TensorProto.UINT8: (0, 255),
          onnx.TensorProto.INT8: (-128, 127), onnx.TensorProto.UINT16: (0, 65535),
          onnx.TensorProto.INT16: (-32768, 32767)}
_WIDE: set[int] = {onnx.TensorProto.UINT4, onnx.TensorProto.INT4, onnx.TensorProto.UINT16, onnx.TensorProto.INT16}


def _tensor(name: str, values: np.ndarray, dtype: int) -> onnx.TensorProto:
    if dtype in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
        try:
            import ml_dtypes

            kind = ml_dtypes.int4 if dtype == onnx.TensorProto.INT4 else ml_dtypes.uint4
            return numpy_helper.from_array(np.asarray(values).astype(kind), name)
        except (ImportError, TypeError, ValueError):
            return helper.make_tensor(name, dtype, list(np.shape(values)), np.asarray(values).reshape(-1).tolist())
    np_dtype = helper.tensor_dtype_to_np_dtype(dtype)
    return numpy_helper.from_array(np.asarray(values).astype(np_dtype), name)


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

    def emit(self, after: str | None, nodes: list[onnx.NodeProto]) -> None:
        key = self.producer.get(after, -1) if after is not None else -1
        self.extra.setdefault(key, []).extend(nodes)

    def _domain(self, dtype: int) -> str:
        return self.wide_domain if dtype in _WIDE else ""

    def qdq(self, tensor: str, params: QuantParams) -> str:
        """A real QuantizeLinear/DequantizeLinear pair (clipped first to a range below its container)."""
        qmin, qmax = params.qmin, params.qmax
        scale, zero = float(np.float32(params.scale)), int(params.zero_point)
        key = ("qdq", tensor, qmin, qmax, scale, zero)
        if key in self.made:
            return self.made[key]
        dtype = _container(qmin, qmax, int4=False)
        base = f"{tensor}::q{qmax - qmin + 1}"
        self.inits += [numpy_helper.from_array(np.asarray(scale, np.float32), base + "_scale"),
                       _tensor(base + "_zero", np.asarray(zero), dtype)]
        nodes = []
        source = tensor
        if (qmin, qmax) != _RANGE[dtype]:
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
        dtype = _container(params.qmin, params.qmax, self.int4)
        q, _, _ = quant.weight_integers(key, bits)
        scale = np.asarray(params.scale, np.float32)
        zero = np.asarray(params.zero_point).astype(np.int32)
        base = f"{key}::w{params.qmax - params.qmin + 1}"
        self.inits += [_tensor(base + "_q", q, dtype), numpy_helper.from_array(scale, base + "_scale"),
                       _tensor(base + "_zero", zero, dtype)]
        attrs: dict[str, Any] = {"axis": axis} if per_channel else {}
        self.emit(None, [helper.make_node("DequantizeLinear", [base + "_q", base + "_scale", base + "_zero"], [base],
                                          name=base + "_dequantize", domain=self._domain(dtype), **attrs)])
        kind = onnx.TensorProto.DataType.Name(dtype).lower()
        self.storage[kind] = self.storage.get(kind, 0) + 1
        self.made[made_key] = base
        return base

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


def build_qdq(sim: OnnxSimulation, assignment: Assignment, int4: bool = True, int32_bias: bool = True,
              calibration: np.ndarray | None = None,
              progress: Progress | None = None) -> tuple[onnx.ModelProto, list[str], dict[str, int]]:
    """The QDQ model of ``assignment`` on the simulation's (calibrated) ONNX model, notes, and how many
    weight tensors are stored in each type.

    With ``calibration``, integer groups' outputs get quantizers too (``mixq.export.output_quantizers``),
    calibrated on it, so ONNX Runtime runs them as integer kernels.
    """
    notes: list[str] = []
    model = sim.model
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    restore_declarations(proto, model.declared)
    quant = sim.quantizers
    precisions = {g: p for g, p in assignment.items()}
    integer = [p for p in precisions.values() if not p.is_float]
    wants_wide = any(p.act_bits > 8 or p.weight_bits > 8 for p in integer)
    wants_int4 = int4 and any(p.weight_bits <= 4 for p in integer)
    wide_domain = ""
    if (wants_wide or wants_int4) and opset(proto) < WIDE_QDQ_OPSET:
        try:
            proto = upgrade(proto, WIDE_QDQ_OPSET)
            notes.append(f"converted the model to opset {WIDE_QDQ_OPSET} for int16/INT4 QuantizeLinear")
        except UnsupportedModelError as exc:
            notes.append(f"kept opset {opset(proto)} ({exc}); 16-bit QDQ uses ORT's com.microsoft ops, 4-bit "
                         "weights are stored as int8")
            wide_domain = "com.microsoft"
            int4 = False
            if not any(entry.domain == "com.microsoft" for entry in proto.opset_import):
                proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    if opset(proto) < INT4_OPSET:
        int4 = False
    scheme = quant.scheme
    if scheme.act_dynamic:
        notes.append("activations quantized dynamically (DynamicQuantizeLinear: uint8, each run's range)")
    writer = QdqWriter(proto, int4, wide_domain)
    integer_nodes: dict[str, Precision] = {}
    for group_id, precision in precisions.items():
        group = sim.graph[group_id]
        if precision.keeps_float32:
            continue
        for op in group.ops:
            site = next(s for s in sim.sites if s.op.name == op.name)
            integer_nodes[site.node] = precision
            if site.node not in writer.position:
                raise UnsupportedModelError(f"node {site.node} disappeared while converting the model's opset")
            node = writer.graph.node[writer.position[site.node]]
            _rewrite_site(writer, node, site, precision, quant, scheme.weight_per_channel, int32_bias)
    proto = writer.finish()
    folded = fold_pads(proto)
    if folded:
        notes.append(f"moved {folded} zero Pad node(s) into their convs' padding (exact; lets ONNX Runtime fuse the "
                     "convs that produce them)")
    if calibration is not None and not scheme.act_dynamic:  # static output ranges would not fit dynamic inputs
        proto, added = _add_output_quantizers(proto, sim, integer_nodes, calibration, int4, wide_domain, progress)
        if added:
            notes.append(f"added {added} output quantizer(s) outside the search's simulation so ONNX Runtime can "
                         "run their groups as integer kernels (the check measures their effect; "
                         "--no-output-quantizers writes the simulated model exactly)")
    for kind, count in sorted(writer.storage.items()):
        logger.info("%d weight tensors stored as %s", count, kind)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise UnsupportedModelError(f"the exported QDQ model is invalid (a mixq bug): {str(exc).splitlines()[0]}")
    proto.producer_name = "mixq"
    return proto, notes, dict(sorted(writer.storage.items()))


def _add_output_quantizers(proto: onnx.ModelProto, sim: OnnxSimulation, integer_nodes: dict[str, Precision],
                           calibration: np.ndarray, int4: bool, wide_domain: str,
                           progress: Progress | None) -> tuple[onnx.ModelProto, int]:
    float_nodes = {site.node for site in sim.sites} - set(integer_nodes)
    needed = output_tensors(proto, integer_nodes, int4, float_nodes)
    if not needed:
        return proto, 0
    params = calibrate(sim, needed, calibration, progress)
    writer = QdqWriter(proto, int4, wide_domain)
    users = {name: [node for node in proto.graph.node if name in node.input] for name in params}
    for tensor, tensor_params in params.items():
        dequantized = writer.qdq(tensor, tensor_params)  # type: ignore[arg-type]
        for node in users[tensor]:
            for i, name in enumerate(node.input):
                if name == tensor:
                    node.input[i] = dequantized
    return writer.finish(), len(params)


def _rewrite_site(writer: QdqWriter, node: onnx.NodeProto, site: OnnxSite, precision: Precision, quant: Any,
                  per_channel: bool, int32_bias: bool) -> None:
    if precision.is_float:  # fp16
        for p in site.act_inputs:
            node.input[p] = writer.cast16(node.input[p])
        if site.second_act is not None:
            node.input[site.second_act] = writer.cast16(node.input[site.second_act])
        if site.weight_input is not None and site.weight_key is not None:
            node.input[site.weight_input] = writer.weight_fp16(site.weight_key, quant.weights[site.weight_key])
        return
    act_params = None
    if quant.scheme.act_dynamic:
        operands = [precision.act_bits] + ([precision.weight_bits] if site.second_act is not None else [])
        if any(bits != 8 for bits in operands):
            raise ConfigError(f"dynamic activation quantization exports as ONNX's DynamicQuantizeLinear, which is "
                              f"8-bit only; the plan puts {site.node} at {precision}: search with 8-bit activations "
                              "(e.g. --candidates w8a8,w4a8,fp32) or without --dynamic")
        for p in site.act_inputs:
            node.input[p] = writer.dynamic_qdq(node.input[p])
        if site.second_act is not None:
            node.input[site.second_act] = writer.dynamic_qdq(node.input[site.second_act])
    else:
        for p in site.act_inputs:
            act_params = quant.act_params(site.op.inputs[p], precision.act_bits)
            node.input[p] = writer.qdq(node.input[p], act_params)
        if site.second_act is not None:
            params = quant.act_params(site.op.inputs[site.second_act], precision.weight_bits)
            node.input[site.second_act] = writer.qdq(node.input[site.second_act], params)
    if site.weight_input is None or site.weight_key is None:
        return
    wparams = quant.weight_params(site.weight_key, precision.weight_bits)
    node.input[site.weight_input] = writer.weight_int(site.weight_key, quant, precision.weight_bits, site.weight_axis,
                                                      per_channel)
    if int32_bias and site.bias_input is not None and act_params is not None and precision.act_bits <= 8 \
            and precision.weight_bits <= 8:
        biased = writer.bias_int32(node.input[site.bias_input], float(act_params.scale), wparams.scale)
        if biased is not None:
            node.input[site.bias_input] = biased


def save(proto: onnx.ModelProto, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    large = proto.ByteSize() > 1_800_000_000
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(proto, str(tmp), save_as_external_data=large, location=path.name + ".data" if large else None)
    tmp.replace(path)
    return path


def export_qdq(sim: OnnxSimulation, assignment: Assignment, path: str | Path, check_data: np.ndarray | None = None,
               benchmark: bool = False, int4: bool = True, int32_bias: bool = True, threads: int | None = None,
               runs: int = 50, calibration: np.ndarray | None = None,
               progress: Progress | None = None) -> ExportReport:
    """Write the QDQ model of ``assignment``; optionally check it against the simulation and time it.

    ``calibration``: calibrate and add output quantizers (see ``build_qdq``); ``None`` writes exactly the
    simulated model.
    """
    steps = 1 + (check_data is not None and len(check_data) > 0)
    if progress:
        progress("export: writing and checking", 0, steps)
    proto, notes, storage = build_qdq(sim, assignment, int4=int4, int32_bias=int32_bias, calibration=calibration,
                                      progress=progress)
    path = save(proto, path)
    if progress:
        progress("export: writing and checking", 1, steps)
    float_proto = onnx.ModelProto()
    float_proto.CopyFrom(sim.model.proto)
    restore_declarations(float_proto, sim.model.declared)
    report = ExportReport(path=path, file_bytes=path.stat().st_size, float_file_bytes=float_proto.ByteSize(),
                          opset=opset(proto), precision_counts=assignment.counts(), notes=notes,
                          weight_storage=storage)
    if check_data is not None and len(check_data):
        report.check = compare(sim, assignment, proto, check_data)
        if progress:
            progress("export: writing and checking", steps, steps)
        lost = report.check["simulation_sqnr_db"] - report.check["exported_sqnr_db"]
        if lost > 1.0:
            message = (f"the exported model's output SQNR is {lost:.1f} dB below the simulation's "
                       f"({report.check['exported_sqnr_db']:.1f} vs {report.check['simulation_sqnr_db']:.1f} dB)")
            if any("output quantizer" in note for note in report.notes):
                message += ": the added output quantizers cost this; --no-output-quantizers writes the simulated model"
            report.notes.append(message)
            logger.warning("%s", message)
    try:
        report.fused = fused_ops(proto)
    except Exception as exc:  # diagnostics only
        report.notes.append(f"could not inspect ORT's optimized graph: {exc}")
    compute = sum(report.fused.get(op, 0) for op in ("QLinearConv", "QGemm", "QLinearMatMul", "MatMulIntegerToFloat",
                                                      "ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul"))
    planned = sum(len(sim.graph[g].ops) for g, p in assignment.items() if not p.is_float)
    if compute > planned:
        report.notes.append(f"ONNX Runtime runs {compute} ops as integer kernels where the plan quantizes {planned}: it "
                            "quantizes float ops that sit between quantizers itself (WeightBiasQuantization); create "
                            "the session with disabled_optimizers=['WeightBiasQuantization'] to keep them float")
    if report.fused.get("MatMulNBits"):
        report.notes.append(
            f"ONNX Runtime turns {report.fused['MatMulNBits']} integer-weight MatMul(s) whose activations are not "
            "8-bit into MatMulNBits, which by default computes with int8-quantized activations; create the session "
            "with the config entry session.qdq_matmulnbits_accuracy_level=1 to keep them in float")
    if benchmark and check_data is not None and len(check_data):
        one = np.ascontiguousarray(check_data[:1], dtype=np.float32)
        name = sim.model.input_name
        report.latency = {"batch": 1.0, "runs": float(runs),
                          "float_ms": latency_ms(float_proto, name, one, runs, threads=threads, progress=progress,
                                                 stage="export: latency of the float model"),
                          "quantized_ms": latency_ms(proto, name, one, runs, threads=threads, progress=progress,
                                                     stage="export: latency of the exported model")}
    return report
