"""Exporting a plan searched on a torch model: the torch quantizer groups mapped onto an ONNX export.

A torch search names groups after modules and fx nodes (``_blocks.0._depthwise_conv``); the QDQ writer
works on ONNX node names. The model is exported with ``torch.onnx.export`` (eval mode, BN folded as the
torch backend folds it), traced by the ONNX backend, and every torch op is matched to the ONNX op that
computes the same thing, on evidence rather than names:

1. the same kind, MACs, weight size, output channels and input size per sample;
2. the same weight values (the ONNX initializer, output axis first, equals the torch weight after BN
   folding, within ``WEIGHT_RTOL`` of the weight's largest magnitude);
3. the same input activation on one sample (within ``ACT_RTOL`` of its largest magnitude): this is the
   evidence for activation x activation matmuls, which have no weight;
4. ties (truly equal candidates, e.g. a reused module) go to the op whose name scope matches
   (``/_blocks.0/_depthwise_conv/Conv``), then to graph order.

A torch op without a match, or an ONNX group that would need two precisions, is an error: an export
that does not compute what the search measured is worse than none.

Output quantizers: the QDQ file gets the quantizers the ONNX export adds at integer groups' outputs
(``mixq.backends.onnx.export.output_quantizers``), decided and calibrated on the ONNX model, and the
export's check compares it with the ONNX simulation that has them too. The torch search's simulation
quantizes op inputs only, so a torch plan's file differs from what the torch search measured by exactly
these quantizers (``--no-output-quantizers`` writes the file without them); ``torch_checks`` measures the
file against the torch float model.

AdaRound (``--rounding adaround``): the file's weights take the integers the torch simulation rounded (on its
BN-folded weights), carried to the matched ONNX weights by :mod:`mixq.backends.torch.export_rounding`, not
the ONNX model's own AdaRound (other inputs by float rounding: possibly other integers).
"""

from __future__ import annotations

import copy
import io
import logging
import warnings
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import torch

from mixq.backends.onnx.backend import OnnxBackend, OnnxTraced
from mixq.backends.onnx.runtime import Runner
from mixq.backends.onnx.simulation import flatten_outputs
from mixq.backends.torch.traced import TorchTraced, trace_module
from mixq.backends.torch.executor import flatten_output
from mixq.core.assignment import Assignment
from mixq.core.graph import GroupId, QuantGraph, QuantOp
from mixq.core.precision import Precision, parse_candidates
from mixq.core.quality import sqnr_db
from mixq.core.ranges import QuantParams
from mixq.core.tuned import TunedQuantizers, TunedWeight
from mixq.errors import ConfigError, ExportError

if TYPE_CHECKING:
    from mixq.backends.base import ExportSettings, Progress
    from mixq.backends.export_report import ExportReport

logger = logging.getLogger(__name__)

#: Opset of the intermediate ONNX model (QDQ export upgrades it to 21 where INT4/int16 need it).
ONNX_OPSET = 17
#: Weight agreement, relative to the tensor's largest magnitude: BN folded by torch and by the exporter
#: differ by float rounding (~1e-7), a different layer by far more.
WEIGHT_RTOL = 1e-4
#: Input-activation agreement on one sample, relative to the tensor's largest magnitude (float rounding
#: accumulates with depth; a different tensor differs by O(1)).
ACT_RTOL = 2e-3
#: Below this SQNR of the ONNX float model against torch float, the export says the step is not faithful.
FAITHFUL_DB = 60.0
_FIX = ("export the model yourself (torch.onnx.export), then run `mixq search model.onnx ...` and "
        "`mixq export model.onnx --plan ...` on that file")


@dataclass(frozen=True)
class OpMatch:
    """One torch op and the ONNX op that computes it, with the evidence."""

    torch_op: str
    onnx_op: str
    evidence: str  # "weights+inputs" or "inputs" (no weight: activation x activation matmul)
    weight_error: float  # max |w_torch - w_onnx| / max |w_torch| (0 without a weight)
    input_error: float  # the same for the input activation on one sample
    scope_agrees: bool  # the ONNX node's name scope is the torch module path


@dataclass(frozen=True)
class GroupMapping:
    """Torch quantizer groups -> the ONNX groups holding the same ops.

    Attributes:
        groups: torch group id -> ONNX group ids (usually one).
        ops: the op-level matches, in torch graph order.
        unmatched_onnx: ONNX quantizable ops no torch op maps to (the torch backend kept them in float).
        onnx_graph: the ONNX model's groups.
    """

    groups: dict[GroupId, tuple[GroupId, ...]]
    ops: tuple[OpMatch, ...]
    onnx_graph: QuantGraph
    unmatched_onnx: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)

    @property
    def onnx_groups(self) -> tuple[GroupId, ...]:
        """The ONNX groups some torch group maps to (in first-mapped order)."""
        return tuple(dict.fromkeys(g for gs in self.groups.values() for g in gs))

    def translate(self, assignment: Assignment) -> Assignment:
        """The torch assignment on the ONNX groups; ONNX-only groups stay fp32 (as the torch model ran them).

        Raises ExportError if one ONNX group would receive two different precisions.
        """
        wanted: dict[GroupId, dict[Precision, list[GroupId]]] = {}
        for torch_group, onnx_groups in self.groups.items():
            for onnx_group in onnx_groups:
                wanted.setdefault(onnx_group, {}).setdefault(assignment[torch_group], []).append(torch_group)
        conflicts = {g: by for g, by in wanted.items() if len(by) > 1}
        if conflicts:
            described = "; ".join(
                f"ONNX group {g} holds torch groups " + ", ".join(f"{t} ({p})" for p, ts in by.items() for t in ts)
                for g, by in list(conflicts.items())[:3])
            torch_groups = sorted({t for by in conflicts.values() for ts in by.values() for t in ts})
            raise ExportError(
                f"the ONNX export merges torch quantizer groups the plan gives different precisions ({described}); "
                f"search again with them tied, e.g. --restrict \"{','.join(torch_groups[:4])}=w8a8\", or {_FIX}")
        fp32 = Precision.parse("fp32")
        precisions = {g.id: fp32 for g in self.onnx_graph}
        precisions.update({g: next(iter(by)) for g, by in wanted.items()})
        return Assignment(precisions)


# -- torch -> ONNX --------------------------------------------------------------------------------------

def to_onnx(model: Any, sample: np.ndarray, opset: int = ONNX_OPSET) -> onnx.ModelProto:
    """``model`` (a private eval-mode copy) exported with ``torch.onnx.export``; the batch axis is dynamic."""

    module = copy.deepcopy(model).eval()
    x = torch.from_numpy(np.ascontiguousarray(sample[:1], dtype=np.float32))
    with torch.inference_mode():
        leaves = [leaf for leaf in torch.utils._pytree.tree_leaves(module(x)) if isinstance(leaf, torch.Tensor)]
    outputs = [f"output_{i}" for i in range(len(leaves))]
    axes = {name: {0: "batch"} for name in ["input", *outputs]}
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (x,), buffer,  # type: ignore[arg-type]  # the exporter writes to a file object
                              dynamo=False, opset_version=opset, do_constant_folding=True,
                              input_names=["input"], output_names=outputs, dynamic_axes=axes)
    except Exception as exc:  # the exporter raises many types on unsupported code
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ExportError(f"torch.onnx.export cannot export the model ({type(exc).__name__}: {first}); "
                                    f"make it exportable, or {_FIX}") from None
    return onnx.load_from_string(buffer.getvalue())


def onnx_scope(onnx_op: str) -> str:
    """The module path in an exported node's name: ``/blocks/blocks.0/attn/q/MatMul`` -> ``blocks.0.attn.q``."""
    parts = [p for p in onnx_op.split("/")[:-1] if p]
    kept = [p for i, p in enumerate(parts) if not (i + 1 < len(parts) and parts[i + 1].startswith(p + "."))]
    return ".".join(kept)


def _scope_agrees(torch_op: str, onnx_op: str) -> bool:
    """A module op is named by its path, a functional one by its scope and node name (a hint only)."""
    name, scope = torch_op.split(":")[0], onnx_scope(onnx_op)
    return name == scope or name.rpartition(".")[0] == scope


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| relative to max |a|; inf when the shapes (or sizes) differ."""
    if a.size != b.size:
        return float("inf")
    a64, b64 = a.astype(np.float64).reshape(-1), b.astype(np.float64).reshape(-1)
    scale = float(np.max(np.abs(a64))) if a64.size else 0.0
    diff = float(np.max(np.abs(a64 - b64))) if a64.size else 0.0
    return diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


@dataclass(frozen=True)
class _Side:
    """One backend's ops, each with its weight (output axis first) and input activations on the sample."""

    ops: list[QuantOp]
    weights: dict[str, np.ndarray]
    inputs: dict[str, list[np.ndarray]]
    group_of: dict[str, GroupId]


def _torch_side(traced: TorchTraced, sample: np.ndarray) -> _Side:
    gm = traced.executor.gm
    with torch.inference_mode():
        _, env = traced.executor.run(torch.from_numpy(np.ascontiguousarray(sample[:1], dtype=np.float32)), keep=True)
    values = {node.name: value for node, value in env.items()}
    weights: dict[str, np.ndarray] = {}
    inputs: dict[str, list[np.ndarray]] = {}
    for site in traced.sites:
        if site.weight_key is not None:
            weight: Any = reduce(getattr, site.weight_key.split("."), gm)
            weights[site.op.name] = np.moveaxis(weight.detach().float().cpu().numpy(), site.weight_axis, 0)
        inputs[site.op.name] = [values[name].detach().float().cpu().numpy() for name in site.op.inputs]
    group_of = {op.name: g.id for g in traced.graph for op in g.ops}
    return _Side([site.op for site in traced.sites], weights, inputs, group_of)


def _onnx_side(traced: OnnxTraced, sample: np.ndarray) -> _Side:
    from onnx import numpy_helper

    from mixq.backends.onnx.runtime import Runner, with_outputs

    model = traced.model
    names = list(dict.fromkeys(n for site in traced.sites for n in site.op.inputs if n != model.input_name))
    x = np.ascontiguousarray(sample[:1], dtype=np.float32)
    runner = Runner(with_outputs(model.proto, names), model.input_name, model.fixed_batch, "the exported ONNX model")
    values = dict(zip(names, runner.run(x, names)))
    values[model.input_name] = x
    weights, inputs = {}, {}
    for site in traced.sites:
        if site.weight_key is not None:
            weight = numpy_helper.to_array(model.index.initializers[site.weight_key])
            weights[site.op.name] = np.moveaxis(weight.astype(np.float32), site.weight_axis, 0)
        inputs[site.op.name] = [np.asarray(values[name], np.float32) for name in site.op.inputs]
    group_of = {op.name: g.id for g in traced.graph for op in g.ops}
    return _Side([site.op for site in traced.sites], weights, inputs, group_of)


def _signature(op: QuantOp) -> tuple[Any, ...]:
    return (op.kind, op.macs, op.weight_numel, op.out_channels, op.act_numel, len(op.inputs))


def map_groups(torch_traced: TorchTraced, onnx_traced: OnnxTraced, sample: np.ndarray) -> GroupMapping:
    """Match every torch op to the ONNX op computing the same thing (see the module docstring).

    Raises ExportError naming the torch groups whose ops have no ONNX counterpart.
    """
    t, o = _torch_side(torch_traced, sample), _onnx_side(onnx_traced, sample)
    by_signature: dict[tuple[Any, ...], list[QuantOp]] = {}
    for op in o.ops:
        by_signature.setdefault(_signature(op), []).append(op)
    used: set[str] = set()
    matches: list[OpMatch] = []
    failures: list[str] = []
    for op in t.ops:
        same_shape = [c for c in by_signature.get(_signature(op), []) if c.name not in used]
        scored = []
        for candidate in same_shape:
            weight_error = 0.0
            if op.name in t.weights:
                if candidate.name not in o.weights or t.weights[op.name].shape != o.weights[candidate.name].shape:
                    continue
                weight_error = _relative_error(t.weights[op.name], o.weights[candidate.name])
                if weight_error > WEIGHT_RTOL:
                    continue
            input_error = max(_relative_error(a, b) for a, b in zip(t.inputs[op.name], o.inputs[candidate.name]))
            scored.append((candidate, weight_error, input_error))
        close = [s for s in scored if s[2] <= ACT_RTOL]
        if not close:
            failures.append(_why_unmatched(op, t.group_of[op.name], same_shape, scored))
            continue
        # the closest inputs win; near-ties (equal weights and inputs) go to the matching name scope, then
        # to graph order (min keeps the first of equals)
        closest = min(s[2] for s in close)
        best = min(close, key=lambda s: (s[2] > 10 * closest + 1e-6, not _scope_agrees(op.name, s[0].name)))
        candidate, weight_error, input_error = best
        used.add(candidate.name)
        matches.append(OpMatch(op.name, candidate.name, "weights+inputs" if op.name in t.weights else "inputs",
                               weight_error, input_error, _scope_agrees(op.name, candidate.name)))
    if failures:
        raise ExportError(
            f"{len(failures)} of {len(t.ops)} torch ops have no counterpart in torch.onnx.export's model, so the "
            f"plan cannot be carried over ({'; '.join(failures[:4])}{'; ...' if len(failures) > 4 else ''}); {_FIX}")
    groups: dict[GroupId, list[GroupId]] = {}
    for match in matches:
        onnx_group = o.group_of[match.onnx_op]
        members = groups.setdefault(t.group_of[match.torch_op], [])
        if onnx_group not in members:
            members.append(onnx_group)
    unmatched = tuple(op.name for op in o.ops if op.name not in used)
    notes = []
    mixed = sorted({o.group_of[name] for name in unmatched} & {g for gs in groups.values() for g in gs})
    if unmatched:
        notes.append(f"{len(unmatched)} ONNX op(s) the torch backend did not quantize stay float: "
                     + ", ".join(unmatched[:5]) + (", ..." if len(unmatched) > 5 else ""))
    if mixed:
        notes.append(f"ONNX group(s) {', '.join(mixed[:5])} also hold ops the torch search kept float; they take "
                     "the group's precision")
    return GroupMapping({g: tuple(gs) for g, gs in groups.items()}, tuple(matches), onnx_traced.graph, unmatched,
                        notes)


def _why_unmatched(op: QuantOp, group: GroupId, same_shape: list[QuantOp], scored: list[Any]) -> str:
    where = f"{op.name} (group {group})"
    if not same_shape:
        return f"{where}: no ONNX {op.kind.value} op of the same shape"
    if not scored:
        return f"{where}: no ONNX {op.kind.value} op of the same shape has its weights"
    return f"{where}: the ONNX op with its weights reads another input (relative difference " \
           f"{min(s[2] for s in scored):.2g})"


@dataclass
class TorchToOnnx:
    """A torch model's ONNX export, both traces, and the mapping between their groups."""

    proto: onnx.ModelProto
    torch_traced: TorchTraced
    onnx_traced: OnnxTraced
    mapping: GroupMapping


def map_model(model: Any, sample: np.ndarray, torch_traced: TorchTraced | None = None) -> TorchToOnnx:
    """Export ``model`` to ONNX, trace both (or reuse ``torch_traced``), map the groups (the user's model
    is not changed)."""
    candidates = parse_candidates("w8a8")
    if torch_traced is None:
        torch_traced = trace_module(model, sample[:1], candidates)
    proto = to_onnx(model, sample)
    onnx_traced = OnnxBackend().trace(proto, sample[:1], candidates)
    return TorchToOnnx(proto, torch_traced, onnx_traced, map_groups(torch_traced, onnx_traced, sample))


# -- the export -----------------------------------------------------------------------------------------

def export_torch(model: Any, assignment: Assignment, calibration: np.ndarray, path: Path,
                 settings: ExportSettings, progress: Progress | None = None) -> ExportReport:
    """``TorchBackend.export``: ``assignment`` (from the torch search) carried over to the model's ONNX
    export and written as a QDQ file (see ``mixq.export.export``)."""
    from mixq.backends.onnx.export.onnx_qdq import export_qdq

    sample = calibration[:1]
    torch_traced = trace_module(model, sample, parse_candidates("w8a8"))
    try:  # first: does the plan fit this torch model at all?
        torch_assignment = Assignment.from_dict(assignment.to_dict(), torch_traced.graph)
    except ConfigError as exc:
        if any(str(g).startswith("/") for g in assignment):  # torch.onnx.export's node names
            raise ExportError(f"{exc}; its groups are ONNX node names: pass the .onnx file it was searched on "
                              "as MODEL") from None
        raise
    mapped = map_model(model, sample, torch_traced)
    onnx_traced, mapping = mapped.onnx_traced, mapped.mapping
    onnx_assignment = mapping.translate(torch_assignment)
    weight_bits = [precision.weight_bits for _, precision in torch_assignment.items()]
    rounder = None
    if settings.scheme.weight_rounding == "adaround":  # the torch search's integers, not the ONNX model's own
        from mixq.backends.torch.export_rounding import mapped_rounder

        rounder = mapped_rounder(torch_traced, onnx_traced, [(m.torch_op, m.onnx_op) for m in mapping.ops],
                                 calibration, settings.scheme, weight_bits)
    sim = onnx_traced.prepare(calibration, settings.scheme, progress, weight_bits=weight_bits, rounder=rounder)
    if settings.tuned is not None:  # the torch plan's learned quantizers, renamed after the ONNX weights and tensors
        sim.tune(tuned_for_onnx(settings.tuned, torch_traced, onnx_traced, mapping))
    check = calibration[:settings.check_samples] if settings.check_samples else None
    report = export_qdq(sim, onnx_assignment, path, check_data=check, benchmark=settings.benchmark,
                        int4=settings.int4, int32_bias=settings.int32_bias, threads=settings.threads,
                        progress=progress, calibration=calibration if settings.output_quantizers else None,
                        unfused_weights=settings.unfused_weights)
    onnx_counts = onnx_assignment.counts()
    report.precision_counts = torch_assignment.counts()
    by_weights = sum(m.evidence == "weights+inputs" for m in mapping.ops)
    report.notes[:0] = [
        f"torch -> ONNX: {len(mapping.groups)} torch groups mapped to {len(mapping.onnx_groups)} ONNX groups "
        f"({by_weights} ops matched by weights and inputs, {len(mapping.ops) - by_weights} by inputs alone)",
        *mapping.notes]
    if onnx_counts != report.precision_counts:
        report.notes.append("precisions of the ONNX model's groups: "
                            + ", ".join(f"{k}: {v}" for k, v in sorted(onnx_counts.items())))
    if check is not None and len(check):
        try:
            report.check.update(torch_checks(model, sim, report.path, check))
        except BaseException:  # an unchecked file is not left behind
            report.path.unlink(missing_ok=True)
            raise
        faithful = report.check["torch_float_sqnr_db"]
        if faithful < FAITHFUL_DB:
            message = (f"the ONNX export of the float model differs from torch's outputs ({faithful:.1f} dB SQNR, "
                       f"expected >= {FAITHFUL_DB:.0f}): the file may not compute what the torch search measured")
            report.notes.append(message)
            logger.warning("%s", message)
    report.check["torch_groups_mapped"] = float(len(mapping.groups))
    return report


def tuned_for_onnx(tuned: TunedQuantizers, torch_traced: TorchTraced, onnx_traced: OnnxTraced,
                   mapping: GroupMapping) -> TunedQuantizers:
    """Tuned quantizers of a torch plan (torch weight keys, fx tensor names) named after the ONNX model's
    initializers and tensors, through the op matches: integers moved from the torch weight's output axis to the
    ONNX one (``Linear`` as ``MatMul`` stores its weight transposed); activations by input position."""
    torch_sites = {site.op.name: site for site in torch_traced.sites}
    onnx_sites = {site.op.name: site for site in onnx_traced.sites}
    weights: dict[tuple[str, int], TunedWeight] = {}
    activations: dict[tuple[str, int], QuantParams] = {}
    for match in mapping.ops:
        t, o = torch_sites[match.torch_op], onnx_sites[match.onnx_op]
        if t.weight_key is not None and o.weight_key is not None:
            shape = tuple(onnx_traced.model.index.initializers[o.weight_key].dims)
            for (key, bits), weight in tuned.weights.items():
                if key != t.weight_key:
                    continue
                integers = np.moveaxis(np.moveaxis(weight.integers, t.weight_axis, 0), 0, o.weight_axis)
                if integers.shape != shape:
                    raise ExportError(f"the tuned weight {key} has shape {weight.integers.shape}, its ONNX "
                                      f"counterpart {o.weight_key} {shape}; {_FIX}")
                weights[(o.weight_key, bits)] = TunedWeight(np.ascontiguousarray(integers), weight.params)
        for torch_tensor, onnx_tensor in zip(t.op.inputs, o.op.inputs):
            for (tensor, bits), params in tuned.activations.items():
                if tensor == torch_tensor:
                    activations[(onnx_tensor, bits)] = params
    return TunedQuantizers(tuned.method, weights, activations, tuned.details)


def torch_checks(model: Any, sim: Any, exported: Path, data: np.ndarray) -> dict[str, float]:
    """The ONNX float model and the exported file against the torch float model's outputs."""

    module = copy.deepcopy(model).eval()
    with torch.inference_mode():
        reference = flatten_output(module(torch.from_numpy(np.ascontiguousarray(data, np.float32)))).numpy()
    onnx_float = sim.run(data)
    runner = Runner(onnx.load(str(exported)), sim.model.input_name, sim.model.fixed_batch, "the exported model")
    quantized = flatten_outputs(runner.run(np.ascontiguousarray(data, np.float32)))
    return {
        "torch_float_sqnr_db": min(sqnr_db(reference, onnx_float), 300.0),
        "torch_float_max_abs_diff": float(np.max(np.abs(reference - onnx_float))),
        "exported_vs_torch_float_sqnr_db": sqnr_db(reference, quantized),
        "top1_agreement_vs_torch_float": float(np.mean(reference.argmax(1) == quantized.argmax(1))),
    }


__all__ = ["GroupMapping", "OpMatch", "TorchToOnnx", "export_torch", "map_groups", "map_model", "to_onnx"]
