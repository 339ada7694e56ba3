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

Zero ``Pad`` nodes in front of convs are folded into the convs' padding (``mixq.backends.onnx.export.fold_pads``,
exact), so a conv's output reaches the next QuantizeLinear directly. Integer groups' outputs also get
quantizers (``mixq.backends.onnx.export.output_quantizers``), so nearly every integer group fuses into an integer
kernel; ``report.fused`` lists what ORT fused. The search's simulation applies the same output quantizers with
the same ranges (``OnnxSimulation.output_plan``), so the file computes what the simulation computes (up to
the int32 bias rounding and QuantizeLinear dividing by the scale where the simulation multiplies by its
reciprocal). Without them (``--no-output-quantizers``) ONNX Runtime fuses ``DQ -> op -> Q`` only where an
integer group's output flows straight into another one's QuantizeLinear, and the check compares against the
simulation without them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import onnx
from onnx import helper

from mixq.atomic import write_atomic
from mixq.backends.base import Progress
from mixq.backends.onnx.load import INT4_OPSET, opset, upgrade
from mixq.backends.onnx.qdq import bias_add, set_input
from mixq.backends.onnx.runtime import integer_kernel
from mixq.backends.onnx.simulation import OnnxSimulation, restore_declarations
from mixq.backends.onnx.trace import OnnxSite
from mixq.core.assignment import Assignment
from mixq.core.precision import Precision
from mixq.errors import ConfigError, ExportError, UnsupportedModelError, internal
from mixq.backends.export_report import ExportReport
from mixq.backends.onnx.export.checks import compare, fused_ops, kernel_notes, latency_ms
from mixq.backends.onnx.export.fold_pads import fold_pads
from mixq.backends.onnx.export.output_quantizers import OutputQuantizer, add_output_quantizers
from mixq.backends.onnx.export.qdq_writer import QdqWriter
from mixq.backends.onnx.export.unfused import UnfusedChoice, store_unfused

logger = logging.getLogger(__name__)

#: Opset with int16/uint16/int4 QuantizeLinear and DequantizeLinear.
WIDE_QDQ_OPSET = 21


class QdqModel(NamedTuple):
    """A written QDQ model, what to tell the user about it, how many weight tensors are stored in each type,
    how many new output quantizers it has, and all its output quantizers (new and shared: what the check
    simulates)."""

    proto: onnx.ModelProto
    notes: list[str]
    weight_storage: dict[str, int]
    output_quantizers: int
    outputs: dict[str, OutputQuantizer]


def build_qdq(sim: OnnxSimulation, assignment: Assignment, int4: bool = True, int32_bias: bool = True,
              calibration: np.ndarray | None = None, progress: Progress | None = None) -> QdqModel:
    """The QDQ model of ``assignment`` on the simulation's (calibrated) ONNX model.

    With ``calibration``, integer groups' outputs get quantizers too (``mixq.backends.onnx.export.output_quantizers``),
    so ONNX Runtime runs them as integer kernels: the tensors ``sim.output_plan`` decides, with the ranges the
    simulation uses (calibrated when it was prepared; ``calibration`` is only a fallback and must be those samples).
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
    sites = {s.op.name: s for s in sim.sites}
    for group_id, precision in precisions.items():
        group = sim.graph[group_id]
        if precision.keeps_float32:
            continue
        for op in group.ops:
            site = sites.get(op.name)
            if site is None:
                raise internal(f"op {op.name} of group {group_id} has no ONNX site")
            integer_nodes[site.node] = precision
            if site.node not in writer.position:
                raise internal(f"node {site.node} disappeared while converting the model's opset")
            node = writer.graph.node[writer.position[site.node]]
            _rewrite_site(writer, node, site, precision, quant, scheme.weight_per_channel, int32_bias)
    proto = writer.finish()
    folded = fold_pads(proto)
    if folded:
        notes.append(f"moved {folded} zero Pad node(s) into their convs' padding (exact; lets ONNX Runtime fuse the "
                     "convs that produce them)")
    added, outputs = 0, dict[str, OutputQuantizer]()
    if calibration is not None and not scheme.act_dynamic:  # static output ranges would not fit dynamic inputs
        proto, outputs = add_output_quantizers(proto, sim, sim.output_plan(assignment, int4=int4), calibration, int4,
                                               wide_domain, progress)
        added = sum(not oq.shared for oq in outputs.values())
        if added:
            notes.append(f"added {added} output quantizer(s) so ONNX Runtime can run their groups as integer kernels "
                         "(simulated by the search too; --no-output-quantizers writes the model without them)")
    for kind, count in sorted(writer.storage.items()):
        logger.info("%d weight tensors stored as %s", count, kind)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise internal(f"the exported QDQ model is invalid: {str(exc).splitlines()[0]}") from exc
    proto.producer_name = "mixq"
    return QdqModel(proto, notes, dict(sorted(writer.storage.items())), added, outputs)


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
    bias_input = site.bias_input
    where = getattr(quant, "corrected", {}).get(site.weight_key)
    if where is not None and where[0] in writer.position:  # bias correction: the simulation's corrected bias
        name = writer.float_init(f"{site.weight_key}::corrected_bias_{precision}",
                                 quant.bias(site.weight_key, precision))
        target = writer.graph.node[writer.position[where[0]]]
        if where[1] < 0:  # a MatMul without a bias: an Add after it, first among what follows it
            writer.extra[writer.position[where[0]]] = [bias_add(target, name)] + writer.extra.get(
                writer.position[where[0]], [])
        else:
            set_input(target, where[1], name)
        bias_input = where[1] if where[0] == node.name and where[1] >= 0 else None
    if int32_bias and bias_input is not None and act_params is not None and precision.act_bits <= 8 \
            and precision.weight_bits <= 8:
        biased = writer.bias_int32(node.input[bias_input], float(act_params.scale), wparams.scale)
        if biased is not None:
            node.input[bias_input] = biased


def save(proto: onnx.ModelProto, path: str | Path) -> Path:
    path = Path(path)
    large = proto.ByteSize() > 1_800_000_000
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda tmp: onnx.save(proto, str(tmp), save_as_external_data=large,
                                                 location=path.name + ".data" if large else None))
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}; choose another output path") from exc
    return path


def _store_unfused(sim: OnnxSimulation, assignment: Assignment, proto: onnx.ModelProto, choice: str,
                   threads: int | None, int4: bool) -> tuple[onnx.ModelProto, UnfusedChoice | None]:
    """Integer groups ORT leaves unfused, stored the way that runs fastest (``mixq.backends.onnx.export.unfused``)."""
    group_of = {op.name: group.id for group in sim.graph for op in group.ops}
    # only groups ORT has an integer kernel for: 4-bit or 16-bit storage is chosen for size, not speed
    integer = [site.node for site in sim.sites if integer_kernel(assignment[group_of[site.op.name]], int4)]
    if not integer:
        return proto, None
    shape = (sim.model.fixed_batch or 1, *sim.model.infos[sim.model.input_name].shape[1:])
    sample = np.random.default_rng(0).standard_normal(shape).astype(np.float32)

    def time_file(candidate: onnx.ModelProto) -> float:
        return latency_ms(candidate, sim.model.input_name, sample, runs=20, warmup=3, threads=threads)

    return store_unfused(proto, integer, choice, time_file)


def export_qdq(sim: OnnxSimulation, assignment: Assignment, path: str | Path, check_data: np.ndarray | None = None,
               benchmark: bool = False, int4: bool = True, int32_bias: bool = True, threads: int | None = None,
               runs: int = 50, calibration: np.ndarray | None = None,
               progress: Progress | None = None, unfused_weights: str = "auto") -> ExportReport:
    """Write the QDQ model of ``assignment``; optionally check it against the simulation and time it.

    ``calibration``: add output quantizers (see ``build_qdq``); ``None`` writes the model without them. The
    check compares the file with the simulation of exactly what was written (with or without them).
    """
    steps = 1 + (check_data is not None and len(check_data) > 0)
    if progress:
        progress("export: writing and checking", 0, steps)
    proto, notes, storage, added, outputs = build_qdq(sim, assignment, int4=int4, int32_bias=int32_bias,
                                                      calibration=calibration, progress=progress)
    proto, unfused = _store_unfused(sim, assignment, proto, unfused_weights, threads, int4)
    if unfused is not None:
        notes.append(unfused.note())
    float_proto = onnx.ModelProto()
    float_proto.CopyFrom(sim.model.proto)
    restore_declarations(float_proto, sim.model.declared)
    # the file is written last, after the check: a failed export leaves no file (and no unchecked one)
    report = ExportReport(path=Path(path), file_bytes=0, float_file_bytes=float_proto.ByteSize(),
                          opset=opset(proto), precision_counts=assignment.counts(), notes=notes,
                          weight_storage=storage, output_quantizers=added)
    if check_data is not None and len(check_data):
        report.check = compare(sim, assignment, proto, check_data, outputs=outputs)
        if progress:
            progress("export: writing and checking", 1, steps)
        lost = report.check["simulation_sqnr_db"] - report.check["exported_sqnr_db"]
        if lost > 1.0:
            message = (f"the exported model's output SQNR is {lost:.1f} dB below the simulation's "
                       f"({report.check['exported_sqnr_db']:.1f} vs {report.check['simulation_sqnr_db']:.1f} dB)")
            report.notes.append(message)
            logger.warning("%s", message)
    try:
        report.fused = fused_ops(proto)
    except Exception as exc:  # diagnostics only
        report.notes.append(f"could not inspect ORT's optimized graph: {exc}")
    planned = sum(len(sim.graph[g].ops) for g, p in assignment.items() if not p.is_float)
    report.notes += kernel_notes(report.fused, planned)
    if benchmark and check_data is not None and len(check_data):
        one = np.ascontiguousarray(check_data[:1], dtype=np.float32)
        name = sim.model.input_name
        report.latency = {"batch": 1.0, "runs": float(runs),
                          "float_ms": latency_ms(float_proto, name, one, runs, threads=threads, progress=progress,
                                                 stage="export: latency of the float model"),
                          "quantized_ms": latency_ms(proto, name, one, runs, threads=threads, progress=progress,
                                                     stage="export: latency of the exported model")}
    report.path = save(proto, path)
    report.file_bytes = report.path.stat().st_size
    if progress:
        progress("export: writing and checking", steps, steps)
    return report
