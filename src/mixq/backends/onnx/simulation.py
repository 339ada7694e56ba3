"""Fake-quant simulation of any assignment on an ONNX model, run by ONNX Runtime.

``run``: the whole model with the assignment's fake quantizers (built once per assignment, a few kept).
``isolate`` (phase 1): one float run keeps the tensors the groups' downstream parts read; a group is then
measured by running only the nodes that depend on it (a sub-model whose inputs are the cached tensors).
Quantizer parameters and weights are inputs of that sub-model, so one session per group serves all of
its integer candidates (and one its fp16 candidate).
``probe`` / ``IsolatedOnnxRuns.local`` (TuneQn's layer errors): a group's outputs are the output tensors of
its ops (plus a following bias ``Add`` of a MatMul, as torch's ``Linear`` includes its bias), returned as
extra graph outputs; ``local`` runs only the group's own nodes on the float inputs.

Output quantizers: ``mixq export`` adds quantizers at integer groups' outputs so ONNX Runtime fuses them into
integer kernels (``mixq.backends.onnx.export.output_quantizers``). Whole-assignment runs (``run``, ``proto``,
``module``, ``probe``: quality targets, ``mixq eval --plan``, the export's check) simulate exactly those, with
the same calibrated ranges, so the file computes what the search measured; ``output_quantizers=False``
simulates the file ``--no-output-quantizers`` writes. Phase 1 (``isolate``) does not: it measures one group's
own input quantizers (Pandey et al.), and an integer group's output quantizer is, in an integer chain, the
next group's input quantizer, measured with that group.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import onnx

from mixq.backends.base import Progress, calibration_batches, require_finite
from mixq.backends.onnx.output_quantizers import OutputQuantizer, output_tensors
from mixq.backends.onnx.parts import Part, flat_group, group_layer
from mixq.backends.onnx.qdq import Quantizers, fake_quant, part_members, submodel
from mixq.backends.onnx.runtime import Runner, with_outputs
from mixq.backends.onnx.trace import GraphIndex, OnnxSite, TensorInfo, node_inputs
from mixq.core.assignment import Assignment
from mixq.core.graph import GroupId, QuantGraph
from mixq.core.precision import Precision
from mixq.core.quantize import MAX_SAMPLE, CalibrationStats
from mixq.core.ranges import ActivationStats, QuantParams, activation_params
from mixq.core.tuned import TunedQuantizers
from mixq.errors import UnsupportedModelError, internal

logger = logging.getLogger(__name__)

#: Full models with fake quantizers kept per assignment (phase 2's quality search revisits a few).
MODEL_CACHE = 4
#: Phase-1 sub-model sessions kept; phase 1 measures a group's candidates one after another (an integer
#: and a float16 session per group), and each session holds the weights after its group and a memory
#: arena sized by its largest run, so only the last two are kept.
PART_CACHE = 2
#: Full models returning every group's outputs (``probe``): TuneQn probes one assignment per batch.
PROBE_CACHE = 2


@dataclass
class OnnxModel:
    """A loaded, normalised ONNX model bound to the data's shape, and what the trace learnt of it."""

    proto: onnx.ModelProto
    index: GraphIndex
    input_name: str
    fixed_batch: int | None
    infos: dict[str, TensorInfo]
    batch: int  # batch size the infos were measured at
    declared: tuple[onnx.ValueInfoProto, ...] = ()  # the file's own input/output declarations (for export)

    def runner(self, proto: onnx.ModelProto | None = None, what: str = "the ONNX model") -> Runner:
        return Runner(proto if proto is not None else self.proto, self.input_name, self.fixed_batch, what)


def restore_declarations(proto: onnx.ModelProto, declared: tuple[onnx.ValueInfoProto, ...]) -> None:
    """Put back the file's own input and output declarations (tracing fixed the input's size to the data's)."""
    by_name = {v.name: v for v in declared}
    for values in (proto.graph.input, proto.graph.output):
        for value in values:
            if value.name in by_name:
                value.CopyFrom(by_name[value.name])


def flatten_outputs(outputs: list[np.ndarray]) -> np.ndarray:
    """All output tensors of a batch as one ``(batch, features)`` float32 matrix (as the torch backend)."""
    leaves = [o for o in outputs if isinstance(o, np.ndarray)]
    if not leaves:
        raise UnsupportedModelError("the ONNX model returned no tensors: mixq compares output tensors")
    batch = leaves[0].shape[0] if leaves[0].ndim else 1
    parts = [leaf.reshape(batch, -1).astype(np.float32) for leaf in leaves if leaf.ndim and leaf.shape[0] == batch]
    return np.concatenate(parts, axis=1)


def collect_stats(model: OnnxModel, tensors: set[str], batches: Callable[[], Iterator[np.ndarray]],
                  max_sample: int = MAX_SAMPLE, seed: int = 0) -> dict[str, ActivationStats]:
    """One float pass (the tensors as extra outputs), sampled by the core's :class:`CalibrationStats`
    exactly as the torch backend samples, so both set the same ranges from the same values."""
    names = sorted(tensors)
    computed = [n for n in names if n != model.input_name]
    runner = model.runner(with_outputs(model.proto, computed))
    stats = CalibrationStats(names, max_sample, seed)
    for batch in batches():
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        by_name = dict(zip(computed, runner.run(batch, computed)))
        if model.input_name in tensors:
            by_name[model.input_name] = batch
        for name in names:
            stats.observe(name, by_name[name])
    return stats.result()


class OnnxSimulation:
    """Implements the ``Simulation`` protocol on an ONNX model."""

    def __init__(self, model: OnnxModel, graph: QuantGraph, sites: list[OnnxSite], quantizers: Quantizers,
                 folded: frozenset[str] | None = None, output_quantizers: bool = True, int4: bool = True) -> None:
        self.model = model
        self.graph = graph
        self.sites = sites
        self.quantizers = quantizers
        #: simulate the export's output quantizers in whole-assignment runs (what ``mixq export`` writes)
        self.output_quantizers = output_quantizers
        #: as the export stores <= 4-bit weights (INT4 by default: no integer kernel, so no output quantizer)
        self.int4 = int4
        self._folded = folded or frozenset()
        self._int4_storable: bool | None = None
        by_name = {site.op.name: site for site in sites}
        self._group_sites = {g.id: [by_name[op.name] for op in g.ops] for g in graph}
        index = model.index
        self._members = {
            gid: part_members(index, model.infos, [index.position[site.node] for site in group_sites],
                              model.input_name)
            for gid, group_sites in self._group_sites.items()
        }
        cached: dict[str, None] = {}
        for members in self._members.values():
            produced = {name for i in members for name in index.nodes[i].output}
            for i in members:
                for name in node_inputs(index.nodes[i]):
                    if name not in produced and name not in index.initializers:
                        cached[name] = None
        self._cached = [name for name in cached if name != model.input_name]
        self._base = model.runner()
        self._cache_runner: Runner | None = None
        self._models: OrderedDict[tuple[tuple[GroupId, str], ...], Runner] = OrderedDict()
        self._parts: OrderedDict[tuple[GroupId, bool], Part] = OrderedDict()
        # TuneQn: each group's own nodes and the tensors that are its outputs
        self._layers = {gid: group_layer(index, [site.node for site in group_sites])
                        for gid, group_sites in self._group_sites.items()}
        self._probes: OrderedDict[tuple[tuple[GroupId, str], ...], Runner] = OrderedDict()
        self._locals: dict[tuple[GroupId, bool], Part] = {}
        self._tensor_stats: dict[str, ActivationStats] = {}
        extra = [name for name in self._cached if name not in index.outputs]
        self._bytes_per_sample = sum(model.infos[name].bytes_per_sample(model.batch)
                                     for name in [*extra, *index.outputs] if name in model.infos)

    def tensor_stats(self, tensors: set[str], calibration: np.ndarray,
                     progress: Progress | None = None) -> dict[str, ActivationStats]:
        """Calibration statistics of any float tensors (the export's output quantizers), each computed once:
        ``calibration`` must be the samples the simulation was prepared on."""
        missing = tensors - self._tensor_stats.keys()
        if missing:
            self._tensor_stats.update(collect_stats(self.model, missing, calibration_batches(calibration, progress)))
        return {name: self._tensor_stats[name] for name in tensors}

    # -- the export's output quantizers ------------------------------------------------------------
    @property
    def folded_pads(self) -> frozenset[str]:
        """The zero Pads the export folds into convs (``OnnxTraced.prepare`` finds them once)."""
        return self._folded

    def output_plan(self, assignment: Assignment | None, int4: bool | None = None) -> dict[str, OutputQuantizer]:
        """The output quantizers the export adds for ``assignment`` (``output_tensors``, the shared decision).

        ``int4``: whether the export stores <= 4-bit weights as INT4 (default: this simulation's ``int4``, as
        the export resolves it: only if the model is or converts to opset 21). None with dynamic ranges (the
        export adds none: static output ranges would not fit dynamic inputs).
        """
        if self.quantizers.scheme.act_dynamic:
            return {}
        precision_of = self._precision_of(assignment)
        if not any(not p.is_float for p in precision_of.values()):
            return {}
        if int4 is None:
            int4 = self.int4 and (not any(p.weight_bits <= 4 for p in precision_of.values() if not p.is_float)
                                  or self._stores_int4())
        return output_tensors(self.model.index, self.sites, precision_of, int4, self.quantizers.act_params,
                              self.folded_pads)

    def _stores_int4(self) -> bool:
        """Whether the export can store INT4 weights (opset 21, converting the model if needed); found once."""
        if self._int4_storable is None:
            from mixq.backends.onnx.load import INT4_OPSET, opset, upgrade

            try:
                self._int4_storable = opset(upgrade(self.model.proto, INT4_OPSET)) >= INT4_OPSET
            except UnsupportedModelError:
                self._int4_storable = False
        return self._int4_storable

    def output_params(self, quantizer: OutputQuantizer, calibration: np.ndarray | None = None,
                      progress: Progress | None = None) -> QuantParams:
        """An output quantizer's parameters: calibrated at prepare time (``OnnxTraced.prepare``), else from
        ``calibration`` (which must be the samples the simulation was prepared on)."""
        if quantizer.source in self.quantizers.stats:
            return self.quantizers.act_params(quantizer.source, quantizer.bits)
        if calibration is None:
            raise internal(f"no calibration statistics for the output quantizer of {quantizer.tensor}")
        stats = self.tensor_stats({quantizer.source}, calibration, progress)[quantizer.source]
        scheme = self.quantizers.scheme
        return activation_params(stats, quantizer.bits, scheme.act_range, scheme.act_symmetric, scheme.percentile)

    def _output_values(self, plan: Mapping[str, OutputQuantizer]) -> dict[str, dict[str, np.ndarray]]:
        """The fake-quant constants of the output quantizers (as ``Quantizers.act_values``)."""
        values = {}
        for tensor, quantizer in plan.items():
            p = self.output_params(quantizer)
            scale = np.float32(p.scale)
            zero = float(p.zero_point)
            values[tensor] = {"inv_scale": np.asarray(np.float32(1.0) / scale),
                              "lo": np.asarray(p.qmin - zero, np.float32),
                              "hi": np.asarray(p.qmax - zero, np.float32), "scale": np.asarray(scale)}
        return values

    def cache_bytes_per_sample(self) -> int:
        return self._bytes_per_sample

    # -- full models ----------------------------------------------------------------------------
    def proto(self, assignment: Assignment | None,
              outputs: Mapping[str, OutputQuantizer] | None = None) -> onnx.ModelProto:
        """The model with the assignment's fake quantizers (float ops untouched).

        ``outputs``: the output quantizers to simulate (default: ``output_plan`` if ``output_quantizers``,
        else none); the export's check passes the ones it wrote.
        """
        precision_of = self._precision_of(assignment)
        if not precision_of:
            return self.model.proto
        if outputs is None:
            outputs = self.output_plan(assignment) if self.output_quantizers else {}
        proto, _ = fake_quant(self.model.proto, self.sites, precision_of, self.quantizers,
                              outputs=self._output_values(outputs))
        return proto

    def _precision_of(self, assignment: Assignment | None) -> dict[str, Precision]:
        out: dict[str, Precision] = {}
        for group, precision in (assignment.items() if assignment is not None else ()):
            if precision.keeps_float32:
                continue
            for site in self._group_sites[self.graph[group].id]:  # unknown ids: a clear ConfigError
                out[site.node] = precision
        return out

    @staticmethod
    def _key(assignment: Assignment | None) -> tuple[tuple[GroupId, str], ...]:
        return tuple(sorted((g, str(p)) for g, p in (assignment.items() if assignment is not None else ())
                            if not p.keeps_float32))

    def _full_key(self, assignment: Assignment | None) -> tuple[tuple[GroupId, str], ...]:
        """Cache key of a whole-model runner: the assignment and the output-quantizer settings."""
        key = self._key(assignment)
        return (*key, ("", f"outputs={self.output_quantizers},int4={self.int4}")) if key else key

    def _runner(self, assignment: Assignment | None) -> Runner:
        key = self._full_key(assignment)
        if not key:
            return self._base
        return _cached(self._models, key, MODEL_CACHE,
                       lambda: self.model.runner(self.proto(assignment), "the fake-quantized ONNX model"))

    def tune(self, tuned: TunedQuantizers) -> None:
        """Learned quantizers from now on: whole-model and probe runners (their weights and quantizer constants
        are baked in) are dropped; phase-1 parts take theirs as inputs on every run and stay."""
        self.quantizers.tune(tuned)
        self._models.clear()
        self._probes.clear()

    # -- Simulation protocol ----------------------------------------------------------------------
    def run(self, inputs: np.ndarray, assignment: Assignment | None = None) -> np.ndarray:
        outputs = self._runner(assignment).run(np.ascontiguousarray(inputs, dtype=np.float32))
        return require_finite(flatten_outputs(outputs))

    def isolate(self, inputs: np.ndarray) -> IsolatedOnnxRuns:
        inputs = np.ascontiguousarray(inputs, dtype=np.float32)
        index = self.model.index
        if self._cache_runner is None:
            self._cache_runner = Runner(with_outputs(self.model.proto, self._cached), self.model.input_name,
                                        self.model.fixed_batch, "the ONNX model", arena=False)
        names = list(dict.fromkeys([*index.outputs, *self._cached]))
        values = dict(zip(names, self._cache_runner.run(inputs, names)))
        values[self.model.input_name] = inputs
        reference = require_finite(flatten_outputs([values[name] for name in index.outputs]))
        return IsolatedOnnxRuns(self, values, reference, len(inputs))

    def module(self, assignment: Assignment) -> onnx.ModelProto:
        """The fake-quantized model as a new ``onnx.ModelProto`` (run it with ONNX Runtime), with the
        original file's input and output declarations (dynamic sizes stay dynamic)."""
        proto = onnx.ModelProto()
        proto.CopyFrom(self.proto(assignment))
        restore_declarations(proto, self.model.declared)
        return proto

    def _part(self, group: GroupId, is_float: bool) -> Part:
        def make() -> Part:
            model = self.model
            proto, boundary, outputs = submodel(model.proto, model.index, self._members[group], model.infos,
                                                model.batch)
            return self._parametric(proto, boundary, outputs, group, is_float, f"the phase-1 part of group {group}",
                                    arena=True)

        return _cached(self._parts, (group, is_float), PART_CACHE, make)

    def _parametric(self, proto: onnx.ModelProto, boundary: list[str], outputs: list[str], group: GroupId,
                    is_float: bool, what: str, arena: bool) -> Part:
        """A sub-model with the group's quantizers (and weights) as inputs: one session serves every integer
        candidate of the group, another its fp16 one."""
        kind = Precision(16, 16, is_float=True) if is_float else Precision(8, 8)
        sites = self._group_sites[group]
        proto, feeds = fake_quant(proto, sites, {s.node: kind for s in sites}, None, parametric=True,
                                  dynamic=self.quantizers.scheme.act_dynamic, corrected=self.quantizers.corrected)
        return Part(Runner(proto, None, self.model.fixed_batch, what, arena=arena), boundary, outputs, feeds)

    # -- layer outputs (TuneQn) ---------------------------------------------------------------
    def probe(self, inputs: np.ndarray, assignment: Assignment | None = None) -> dict[GroupId, np.ndarray]:
        """Every group's op outputs under ``assignment``, as ``(batch, features)`` per group."""
        inputs = np.ascontiguousarray(inputs, dtype=np.float32)
        names = list(dict.fromkeys(name for layer in self._layers.values() for name in layer.outputs))
        values = dict(zip(names, self._probe_runner(assignment).run(inputs, names)))
        return {gid: flat_group([values[name] for name in layer.outputs], len(inputs))
                for gid, layer in self._layers.items()}

    def _probe_runner(self, assignment: Assignment | None) -> Runner:
        """The model under ``assignment`` returning the groups' outputs too; the float one also returns the
        tensors the groups read (``IsolatedOnnxRuns.local`` feeds them)."""
        key = self._full_key(assignment)

        def make() -> Runner:
            names = [name for layer in self._layers.values() for name in layer.outputs]
            if not key:
                names += [name for layer in self._layers.values() for name in layer.reads]
            names = [name for name in dict.fromkeys(names) if name != self.model.input_name]
            return Runner(with_outputs(self.proto(assignment), names), self.model.input_name,
                          self.model.fixed_batch, "the ONNX model" if not key else "the fake-quantized ONNX model",
                          arena=False)  # it returns many intermediate tensors: give the memory back after a run

        return _cached(self._probes, key, PROBE_CACHE, make)

    def _local(self, group: GroupId, is_float: bool) -> Part:
        """The group's own nodes as a model on their float inputs (quantizers and weights fed per precision).

        One small session per group and kind, all kept: they hold only biases (weights are fed), and TuneQn
        visits every group in every batch.
        """
        key = (group, is_float)
        part = self._locals.get(key)
        if part is None:
            model, layer = self.model, self._layers[group]
            proto, boundary, _ = submodel(model.proto, model.index, layer.nodes, model.infos, model.batch)
            part = self._parametric(with_outputs(proto, layer.outputs), boundary, list(layer.outputs), group,
                                    is_float, f"the layer of group {group}", arena=False)
            self._locals[key] = part
        return part


_Key = TypeVar("_Key")
_Value = TypeVar("_Value")


def _cached(cache: OrderedDict[_Key, _Value], key: _Key, limit: int, make: Callable[[], _Value]) -> _Value:
    """``cache[key]``, made on a miss; the least recently used entries beyond ``limit`` are dropped."""
    value = cache.get(key)
    if value is None:
        value = cache[key] = make()
        while len(cache) > limit:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return value


class IsolatedOnnxRuns:
    """Phase 1 for one batch: the float run is cached; a group's run executes only its descendants."""

    def __init__(self, sim: OnnxSimulation, cache: Mapping[str, np.ndarray], reference: np.ndarray, batch: int) -> None:
        self._sim = sim
        self._cache = cache
        self._batch = batch
        self.reference = reference
        self._layer_cache: dict[str, np.ndarray] | None = None  # TuneQn: the groups' float inputs and outputs

    def run(self, group: GroupId, precision: Precision) -> np.ndarray:
        sim = self._sim
        if precision.keeps_float32:
            return self.reference
        part = sim._part(group, precision.is_float)
        if not part.outputs:
            return self.reference  # the group does not reach the output (dead branch)
        values = dict(zip(part.outputs, part.run(self._cache, self._batch, precision, sim.quantizers)))
        outputs = [values[name] if name in values else self._cache[name] for name in sim.model.index.outputs]
        return flatten_outputs(outputs)

    def _layer_values(self) -> Mapping[str, np.ndarray]:
        """The groups' float inputs and outputs for this batch: one extra float run, on first use."""
        if self._layer_cache is None:
            sim = self._sim
            inputs = self._cache[sim.model.input_name]
            runner = sim._probe_runner(None)
            self._layer_cache = dict(zip(runner.output_names, runner.run(inputs)))
            self._layer_cache[sim.model.input_name] = inputs
        return self._layer_cache

    def float_outputs(self, group: GroupId) -> np.ndarray:
        """The group's float outputs ``(batch, features)``."""
        values = self._layer_values()
        return flat_group([values[name] for name in self._sim._layers[group].outputs], self._batch)

    def local(self, group: GroupId, precision: Precision) -> np.ndarray:
        """The group's own outputs with only it quantized, on the float inputs."""
        if precision.keeps_float32:
            return self.float_outputs(group)
        part = self._sim._local(group, precision.is_float)
        return flat_group(part.run(self._layer_values(), self._batch, precision, self._sim.quantizers), self._batch)
