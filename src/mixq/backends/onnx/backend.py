"""OnnxBackend: glue between an ONNX model (a ``.onnx`` path or ``onnx.ModelProto``) and the neutral core."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import numpy_helper

from mixq.backends.base import BatchRunner, DeployedCosts, ExportSettings, Simulation, Traced
from mixq.backends.onnx import as_given
from mixq.backends.base import Progress, calibration_batches, quantized_tensors, require_calibration, site_weights
from mixq.backends.onnx.load import describe, is_onnx_model, load
from mixq.backends.onnx.qdq import Quantizers
from mixq.backends.onnx.runtime import Runner
from mixq.backends.onnx.simulation import OnnxModel, OnnxSimulation, collect_stats
from mixq.backends.onnx.trace import (
    GraphIndex,
    OnnxSite,
    bind_input,
    find_sites,
    float_params,
    model_input,
    normalize,
    relax_batch,
    tensor_infos,
)
from mixq.backends.rounder import Rounder, precompute
from mixq.core.assignment import Assignment
from mixq.core.graph import QuantGraph, form_groups
from mixq.core.precision import Precision, QuantScheme, RangeMethod, parse_candidates
from mixq.core.synthetic import SyntheticSettings
from mixq.errors import CapabilityError, UnsupportedModelError, internal

if TYPE_CHECKING:
    from mixq.backends.onnx.moments import OnnxMoments
    from mixq.core.rounding import LayerSpec
    from mixq.cost.deployed import DeployedLatency
    from mixq.cost.measured_latency import LatencyTable
    from mixq.backends.export_report import ExportReport

logger = logging.getLogger(__name__)


class OnnxBackend:
    name = "onnx"
    #: ``QuantScheme.weight_rounding`` values this backend applies (``mixq.backends.require_rounding``).
    weight_roundings = ("nearest", "adaround")

    def accepts(self, model: object) -> bool:
        return is_onnx_model(model)

    def set_threads(self, threads: int) -> None:
        """Nothing global: ONNX Runtime sessions take their thread count where they are made."""

    def export(self, model: object, assignment: Assignment, calibration: np.ndarray, path: Path,
               settings: ExportSettings, progress: Progress | None = None) -> ExportReport:
        """The plan's QDQ file, calibrated as the search was (``mixq.backends.onnx.export.onnx_qdq``)."""
        from mixq.backends.onnx.export.onnx_qdq import export_qdq

        traced = self.trace(model, calibration[:1], parse_candidates(["w8a8"]))
        resolved = Assignment.from_dict(assignment.to_dict(), traced.graph)
        sim = traced.prepare(calibration, settings.scheme, progress,
                             weight_bits=[precision.weight_bits for _, precision in resolved.items()])
        if settings.tuned is not None:  # the plan's learned quantizers: the file carries them, the check compares
            sim.tune(settings.tuned)
        check = calibration[:settings.check_samples] if settings.check_samples else None
        return export_qdq(sim, resolved, path, check_data=check, benchmark=settings.benchmark, int4=settings.int4,
                          int32_bias=settings.int32_bias, threads=settings.threads, progress=progress,
                          calibration=calibration if settings.output_quantizers else None,
                          unfused_weights=settings.unfused_weights)

    def is_quantized_file(self, model: object) -> bool:
        return as_given.is_quantized_file(model)

    def stored_weight_bytes(self, model: object) -> int | None:
        return as_given.stored_weight_bytes(model)

    def run_as_given(self, model: object, sample: np.ndarray) -> BatchRunner:
        """An ONNX Runtime session on the file as is (as deployed)."""
        return as_given.runner_as_given(model, sample)

    def require_latency(self) -> None:
        """ONNX models' kernels are timed in ONNX Runtime."""

    def measure_latency(self, traced: Traced, *, threads: int | None = None, progress: Progress | None = None,
                        scheme: QuantScheme | None = None) -> LatencyTable:
        from mixq.backends.onnx.latency import measure_latency

        return measure_latency(traced, threads=threads, progress=progress, scheme=scheme)

    def deployed_costs(self, sim: Simulation, calibration: np.ndarray, threads: int | None = None,
                       runtime: str = "onnxruntime") -> DeployedCosts:
        """The paper's runtime objectives: the exported file's size and its latency in ``runtime``."""
        from mixq.backends.onnx.export.measure import deployed_costs

        if not isinstance(sim, OnnxSimulation):
            raise internal(f"the ONNX backend was given a {type(sim).__name__} to deploy")
        return deployed_costs(sim, calibration, threads, runtime=runtime)

    def measure_deployed_latency(self, sim: Simulation, calibration: np.ndarray, *, runtime: str = "onnxruntime",
                                 threads: int | None = None, progress: Progress | None = None,
                                 seed: int = 0) -> DeployedLatency:
        """Probe plans exported as ``export`` writes them, profiled in ``runtime`` and attributed to groups and
        edges (``mixq.backends.onnx.deployed.model``); cached per model, machine, runtime version and threads."""
        from mixq.backends.onnx.deployed.model import measure_deployed_latency

        if not isinstance(sim, OnnxSimulation):
            raise internal(f"the ONNX backend was given a {type(sim).__name__} to profile")
        return measure_deployed_latency(sim, calibration, runtime=runtime, threads=threads, progress=progress,
                                        seed=seed)

    def synthesize_calibration(self, model: object, shape: tuple[int, ...], samples: int,
                               settings: SyntheticSettings, seed: int,
                               progress: Progress | None = None) -> np.ndarray:
        """Refused: distilling data needs the training data's batch-norm statistics, which exporters fold into
        the convs (and optimising inputs needs gradients ONNX Runtime does not give)."""
        raise CapabilityError(
            "data-free calibration (--data synthetic) needs the model's batch-norm statistics, which a folded ONNX "
            "file no longer has: give the torch model (path/to/file.py:factory) or real images (--data FOLDER)")

    def trace(self, model: object, sample: np.ndarray, candidates: Sequence[Precision]) -> OnnxTraced:
        if not is_onnx_model(model):
            raise UnsupportedModelError(f"the ONNX backend takes a .onnx path or an onnx.ModelProto, "
                                        f"not {type(model).__name__}")
        what = describe(model)
        sample = np.ascontiguousarray(sample[:1], dtype=np.float32)
        proto = normalize(load(model))
        declared = tuple(_copy(v) for v in [model_input(proto), *proto.graph.output])
        proto, fixed_batch = bind_input(proto, tuple(sample.shape))
        input_name = model_input(proto).name
        if fixed_batch is not None:
            fixed_batch = relax_batch(proto, input_name, fixed_batch, sample)
            if fixed_batch is not None:
                logger.warning("%s only runs at batch size %d: batches are run in chunks of %d", what, fixed_batch,
                               fixed_batch)
        runner = Runner(proto, input_name, fixed_batch, what)
        index = GraphIndex(proto.graph)
        infos, _ = tensor_infos(runner, index, sample)
        sites, skipped = find_sites(index, infos, batch=len(sample))
        if not sites:
            raise UnsupportedModelError(
                "found no quantizable op (Conv, ConvTranspose, Gemm, MatMul with an initializer weight, or "
                "MatMul of two activations) in the ONNX model"
                + (f"; kept in float: {'; '.join(skipped[:3])}" if skipped else "")
            )
        for reason in skipped:
            logger.warning("not quantized: %s", reason)
        groups = form_groups([site.op for site in sites], candidates)
        graph = QuantGraph({g.id: g for g in groups}, float_params=float_params(proto), unquantized=tuple(skipped))
        onnx_model = OnnxModel(proto, index, input_name, fixed_batch, infos, batch=len(sample), declared=declared)
        return OnnxTraced(graph, onnx_model, sites)


class OnnxTraced:
    """A loaded ONNX model and its quantizer groups."""

    def __init__(self, graph: QuantGraph, model: OnnxModel, sites: list[OnnxSite]) -> None:
        self.graph = graph
        self.model = model
        self.sites = sites

    def prepare(self, calibration: np.ndarray, scheme: QuantScheme, progress: Progress | None = None,
                weight_bits: Iterable[int] = (), rounder: Rounder | None = None) -> OnnxSimulation:
        """Calibrate in one float pass: the quantized ops' inputs and, unless ranges are dynamic, every tensor
        the export may put an output quantizer on, so the simulation applies those too without another pass
        (and the export, from this simulation, uses the same ranges).

        With ``scheme.weight_rounding == "adaround"``, AdaRound then runs for every roundable weight at every
        integer weight bit-width below 16 of ``weight_bits`` (default: of the graph's candidates; progress
        ``adaround``, one step per (weight, bits)); other bit-widths are AdaRounded on first use. ``rounder``
        replaces the one built here (the torch export passes the torch search's integers on)."""
        from mixq.backends.onnx.export.output_quantizers import candidate_tensors, folded_pads

        require_calibration(calibration)
        tensors = quantized_tensors(self.sites)
        folded = folded_pads(self.model.proto)
        if not scheme.act_dynamic:
            tensors |= candidate_tensors(self.model.index, self.sites, folded)
        stats = collect_stats(self.model, tensors, calibration_batches(calibration, progress))
        initializers = self.model.index.initializers
        weights, axes = site_weights(self.sites, lambda key: numpy_helper.to_array(initializers[key]))
        wants_moments = scheme.bias_correction or scheme.weight_range is RangeMethod.OUTPUT
        gathered = None
        if (rounder is None and scheme.weight_rounding == "adaround") or wants_moments:
            from mixq.backends.onnx.rounding import layer_inputs

            what = "AdaRound" if scheme.weight_rounding == "adaround" else "layer moments"
            gathered = layer_inputs(self.model, self.sites, weights, calibration, what)
        if rounder is None and scheme.weight_rounding == "adaround":
            from mixq.backends.onnx.rounding import adarounder
            from mixq.core.rounding import AdaRoundConfig

            config = AdaRoundConfig.from_scheme(scheme)
            rounder = adarounder(self.model, self.sites, weights, axes, calibration, config, gathered=gathered)
        moments, biases = self._moments(scheme, weights, axes, gathered) if gathered and wants_moments else (None, {})
        quantizers = Quantizers(weights, axes, stats, scheme, rounder, moments, biases)
        if rounder is not None:
            wanted = set(weight_bits)  # the export's plan: only its bit-widths (its graph's candidates are stand-ins)
            bits = wanted or {p.weight_bits for g in self.graph for p in g.candidates if not p.is_float}
            precompute(quantizers.weight_integers, rounder.roundable(), bits, progress)
        return OnnxSimulation(self.model, self.graph, self.sites, quantizers, folded=folded)

    def _moments(self, scheme: QuantScheme, weights: dict[str, np.ndarray], axes: dict[str, int],
                 gathered: tuple[dict[str, LayerSpec], dict[str, np.ndarray]]
                 ) -> tuple[OnnxMoments, dict[str, tuple[tuple[str, int], np.ndarray | None]]]:
        """The layers' input moments, and (bias correction) the biases of the ops it corrects."""
        from mixq.backends.onnx.moments import OnnxMoments, op_bias

        specs, inputs = gathered
        moments = OnnxMoments(specs, inputs, weights, keep_inputs=scheme.weight_range is RangeMethod.OUTPUT)
        biases: dict[str, tuple[tuple[str, int], np.ndarray | None]] = {}
        if scheme.bias_correction:
            nodes = {node.name: node for node in self.model.index.nodes}
            for site in self.sites:
                key = site.weight_key
                if key is None or key not in specs:
                    continue
                where, bias, reason = op_bias(self.model.index, nodes[site.node], weights[key].shape[axes[key]])
                if where is not None:
                    biases[key] = (where, bias)
                else:
                    logger.info("bias correction: %s keeps its bias (%s)", site.node, reason)
        return moments, biases


def _copy(value: onnx.ValueInfoProto) -> onnx.ValueInfoProto:
    out = onnx.ValueInfoProto()
    out.CopyFrom(value)
    return out


__all__ = ["OnnxBackend", "OnnxTraced"]
