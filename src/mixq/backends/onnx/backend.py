"""OnnxBackend: glue between an ONNX model (a ``.onnx`` path or ``onnx.ModelProto``) and the neutral core."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from mixq.backends.base import Progress, calibration_batches
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
from mixq.core.graph import QuantGraph, form_groups
from mixq.core.precision import Precision, QuantScheme
from mixq.errors import DataError, UnsupportedModelError

logger = logging.getLogger(__name__)


class OnnxBackend:
    name = "onnx"

    def accepts(self, model: object) -> bool:
        return is_onnx_model(model)

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

    def prepare(self, calibration: np.ndarray, scheme: QuantScheme, progress: Progress | None = None) -> OnnxSimulation:
        if len(calibration) == 0:
            raise DataError("no calibration samples: give at least one image (--num-samples)")
        tensors = {name for site in self.sites for name in site.op.inputs}
        batches = calibration_batches(calibration, progress)
        stats = collect_stats(self.model, tensors, batches)
        initializers = self.model.index.initializers
        weights: dict[str, np.ndarray] = {}
        axes: dict[str, int] = {}
        for site in self.sites:
            if site.weight_key is not None and site.weight_key not in weights:
                weights[site.weight_key] = numpy_helper.to_array(initializers[site.weight_key])
                axes[site.weight_key] = site.weight_axis
        quantizers = Quantizers(weights, axes, stats, scheme)
        return OnnxSimulation(self.model, self.graph, self.sites, quantizers)


def _copy(value: onnx.ValueInfoProto) -> onnx.ValueInfoProto:
    out = onnx.ValueInfoProto()
    out.CopyFrom(value)
    return out


__all__ = ["OnnxBackend", "OnnxTraced"]
