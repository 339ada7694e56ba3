"""AdaRound on an ONNX model's weights (``QuantScheme.weight_rounding == "adaround"``).

At prepare time the float model runs once more on (at most :data:`MAX_SAMPLES`) calibration samples and
keeps each roundable site's activation input; then, per (weight, weight bit-width), the optimiser of the
``adaround`` entry of :data:`mixq.backends.ROUNDINGS` (torch's, reached through that registry: this
backend never imports the torch backend) learns the rounding that best reconstructs the float layer's
own output (label-free). :class:`~mixq.backends.rounder.AdaRounder` (shared with the torch backend) is
the ``rounder`` of the core's
:class:`~mixq.core.quantize.WeightQuantizer`, so its integers are what every simulation, sub-model and
export uses. Results are cached on disk by content, so a second search, eval or export of the same model
and calibration does not optimise again.

Sites AdaRound does not handle keep nearest rounding (logged once): ConvTranspose, Conv with asymmetric
or ``auto_pad`` SAME padding, Gemm with ``transA``/``alpha != 1``, a weight shared by several nodes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np
import onnx

from mixq.backends.onnx.runtime import with_outputs
from mixq.backends.onnx.simulation import OnnxModel
from mixq.backends.onnx.trace import OnnxSite
from mixq.backends.rounder import BATCH, MAX_SAMPLES, AdaRounder, gather_passes
from mixq.core.graph import OpKind
from mixq.core.rounding import AdaRoundConfig, LayerSpec
from mixq.errors import internal

logger = logging.getLogger(__name__)



def _ints(node: onnx.NodeProto, name: str) -> list[int] | None:
    for attribute in node.attribute:
        if attribute.name == name:
            return list(attribute.ints)
    return None


def _int(node: onnx.NodeProto, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(attribute.i)
    return default


def _float(node: onnx.NodeProto, name: str, default: float) -> float:
    for attribute in node.attribute:
        if attribute.name == name:
            return float(attribute.f)
    return default


def layer_spec(node: onnx.NodeProto, weight: np.ndarray) -> tuple[LayerSpec | None, str]:
    """The node as AdaRound's layer, or None and why nearest rounding is kept. Layouts: Gemm ``transB=1``
    stores ``(out, in)`` (``linear``), Gemm ``transB=0`` and MatMul store ``(in, out)`` (``matmul``), as
    the trace's weight axes (0 and 1) say.

    The bias is left out: it adds the same to the float and the rounded layer's output, so it does not
    change what AdaRound minimises."""
    if node.op_type == "Conv":
        dims = weight.ndim - 2
        auto_pad = next((a.s.decode() for a in node.attribute if a.name == "auto_pad"), "NOTSET")
        if auto_pad not in ("NOTSET", "VALID"):
            return None, f"auto_pad {auto_pad}"
        pads = _ints(node, "pads") or [0] * (2 * dims)
        if auto_pad == "VALID":
            pads = [0] * (2 * dims)
        if pads[:dims] != pads[dims:]:
            return None, f"asymmetric pads {pads}"
        group = _int(node, "group", 1)
        kind = OpKind.DEPTHWISE_CONV if group > 1 and weight.shape[1] == 1 else OpKind.CONV
        spec = LayerSpec(kind, stride=tuple(_ints(node, "strides") or [1] * dims), padding=tuple(pads[:dims]),
                         dilation=tuple(_ints(node, "dilations") or [1] * dims), groups=group)
        return spec, ""
    if node.op_type == "Gemm":
        if _int(node, "transA", 0) or _float(node, "alpha", 1.0) != 1.0:
            return None, "Gemm with transA or alpha != 1"
        if _int(node, "transB", 0):
            return LayerSpec(OpKind.LINEAR), ""
        return LayerSpec(OpKind.MATMUL), ""
    if node.op_type == "MatMul" and weight.ndim == 2:
        return LayerSpec(OpKind.MATMUL), ""
    return None, f"{node.op_type} is not rounded by AdaRound"


def collect_inputs(model: OnnxModel, tensors: Sequence[str], calibration: np.ndarray) -> dict[str, np.ndarray]:
    """The float model's values of ``tensors`` on ``calibration`` (samples first), in passes of at most
    :data:`~mixq.backends.rounder.PASS_BYTES` of gathered values."""
    count = len(calibration)
    sizes: dict[str, int] = {}
    for name in tensors:
        info = model.infos.get(name)
        sizes[name] = int(np.prod(info.shape[1:])) * 4 if info is not None and info.shape else 0
    passes = gather_passes(sizes, count)
    out: dict[str, np.ndarray] = {}
    for names in passes:
        computed = [n for n in names if n != model.input_name]
        runner = model.runner(with_outputs(model.proto, computed)) if computed else None
        parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
        step = BATCH
        for start in range(0, count, step):
            batch = np.ascontiguousarray(calibration[start:start + step], dtype=np.float32)
            values = dict(zip(computed, runner.run(batch, computed))) if runner is not None else {}
            values[model.input_name] = batch
            for name in names:
                parts[name].append(np.asarray(values[name], np.float32))
        for name in names:
            out[name] = np.concatenate(parts[name])
    return out


def layer_inputs(model: OnnxModel, sites: Iterable[OnnxSite], weights: dict[str, np.ndarray],
                 calibration: np.ndarray, what: str = "AdaRound") -> tuple[dict[str, LayerSpec], dict[str, np.ndarray]]:
    """The layers (:func:`layer_spec`) of ``sites``' unshared weights and the float model's inputs of each on
    the first :data:`MAX_SAMPLES` calibration samples, by weight key (the sites they do not fit are logged,
    prefixed by ``what``: AdaRound and the layer moments gather the same)."""
    nodes = {node.name: node for node in model.index.nodes}
    users: dict[str, int] = {}
    for node in model.index.nodes:
        for name in node.input:
            if name in weights:
                users[name] = users.get(name, 0) + 1
    specs: dict[str, LayerSpec] = {}
    tensors: dict[str, str] = {}
    for site in sites:
        key = site.weight_key
        if key is None or site.weight_input is None:
            continue
        node = nodes[site.node]
        if users.get(key, 0) != 1:
            logger.info("%s: %s is left out (its weight %s is shared)", what, site.node, key)
            continue
        spec, reason = layer_spec(node, weights[key])
        if spec is None:
            logger.info("%s: %s is left out (%s)", what, site.node, reason)
            continue
        specs[key] = spec
        tensors[key] = node.input[site.act_inputs[0]]
    samples = calibration[:MAX_SAMPLES]
    values = collect_inputs(model, list(dict.fromkeys(tensors.values())), samples)
    inputs = {key: values[name] for key, name in tensors.items()}
    for key, values_of_key in inputs.items():
        if values_of_key.ndim < 2:
            raise internal(f"{what}: the input of {key} has no sample axis")
    return specs, inputs


def adarounder(model: OnnxModel, sites: Iterable[OnnxSite], weights: dict[str, np.ndarray], axes: dict[str, int],
               calibration: np.ndarray, config: AdaRoundConfig | None = None, seed: int = 0,
               gathered: tuple[dict[str, LayerSpec], dict[str, np.ndarray]] | None = None) -> AdaRounder:
    """The AdaRound rounder of ``sites``' weights (the others keep nearest rounding), their layer inputs
    gathered on the first :data:`MAX_SAMPLES` calibration samples (or ``gathered``: :func:`layer_inputs`)."""
    specs, inputs = gathered if gathered is not None else layer_inputs(model, sites, weights, calibration)
    return AdaRounder(specs, inputs, weights, axes, config, seed=seed)


__all__ = ["MAX_SAMPLES", "AdaRounder", "adarounder", "collect_inputs", "layer_inputs", "layer_spec"]
