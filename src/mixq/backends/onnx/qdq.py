"""Graph rewriting for the simulation: fake quantizers in float, and sub-models for phase 1.

Activations are fake-quantized with an explicit ``Mul(1/s) -> Round -> Clip -> Mul(s)`` subgraph rather
than a QuantizeLinear/DequantizeLinear pair. The choice: it is one code path for every bit-width 2..16
(QDQ has no 3-, 5- or 6-bit types and int16 QDQ needs opset 21), needs only opset 11, and computes what
``torch.fake_quantize_per_tensor_affine`` computes (multiply by the float32 reciprocal, round half to
even, clamp ``[qmin - z, qmax - z]``, scale back), so the ONNX and torch backends agree to float
rounding. Weights are fake-quantized in numpy (``mixq.core.quantize``) and swapped in as initializers.
``fp16`` is a Cast to float16 and back on the op's inputs, and float16-rounded weights.

The real integer QDQ model is written by ``mixq.backends.onnx.export.onnx_qdq``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from mixq.backends.onnx.trace import GraphIndex, OnnxSite, TensorInfo, node_inputs
from mixq.core.bias_correction import LayerMoments, corrected_bias
from mixq.core.precision import Precision, QuantScheme
from mixq.errors import internal
from mixq.core.quantize import DYNAMIC_MIN_SCALE, ActivationRanges, WeightQuantizer
from mixq.core.ranges import ActivationStats, QuantParams
from mixq.core.tuned import TunedQuantizers

_PARAMS = ("inv_scale", "lo", "hi", "scale")


class Quantizers:
    """The core's weight quantizer and activation ranges (``mixq.core.quantize``), plus the constants of
    the ONNX fake-quant subgraph.

    ``moments`` and ``biases`` (bias correction, the output range): the layers' input moments, and by weight
    key where the bias of an op bias correction may change is read (a node, its input position) and its value
    there (None: the op has none; one is added)."""

    def __init__(self, weights: Mapping[str, np.ndarray], axes: Mapping[str, int],
                 stats: Mapping[str, ActivationStats], scheme: QuantScheme,
                 rounder: Callable[[str, int, QuantParams], np.ndarray | None] | None = None,
                 moments: LayerMoments | None = None,
                 biases: Mapping[str, tuple[tuple[str, int], np.ndarray | None]] | None = None) -> None:
        self.weights = weights
        self.axes = axes
        self.stats = stats
        self.scheme = scheme
        self._weights = WeightQuantizer(weights, axes, scheme, rounder, moments)
        self._acts = ActivationRanges(stats, scheme)
        self.biases = dict(biases or {})
        #: weight key -> (node, input position) of its bias-corrected bias
        self.corrected = {key: where for key, (where, _) in self.biases.items() if scheme.bias_correction
                          and moments is not None and moments.mean(key) is not None}

    def bias(self, key: str, precision: Precision) -> np.ndarray:
        """The bias of a corrected op (one of :attr:`corrected`) at ``precision``: bias-corrected for an
        integer precision, as it was (zeros if it had none) for a float one. float32, ``(out,)``."""
        shift = self._weights.bias_shift(key, precision)
        if shift is None:
            shift = np.zeros(self.weights[key].shape[self.axes[key]])
        return corrected_bias(self.biases[key][1], shift)

    def tune(self, tuned: TunedQuantizers) -> None:
        """Learned quantizers (``mixq.core.tuned``) from now on, for the simulation and the export alike."""
        self._weights.tune(tuned.weights)
        self._acts.tune(tuned.activations)

    def weight_params(self, key: str, bits: int) -> QuantParams:
        """Per-channel (along ``axes[key]``) or per-tensor parameters of a weight."""
        return self._weights.params(key, bits)

    def weight_integers(self, key: str, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Integer weights (as int32, the original layout) and scale and zero-point broadcastable to them."""
        return self._weights.integers(key, bits)

    def weight(self, key: str, precision: Precision) -> np.ndarray:
        """The weight as the simulation uses it (same dtype as the original)."""
        return self._weights.weight(key, precision)

    def act_params(self, tensor: str, bits: int) -> QuantParams:
        return self._acts.params(tensor, bits)

    def act_values(self, tensor: str, bits: int) -> dict[str, np.ndarray]:
        """``inv_scale, lo, hi, scale`` of the fake-quant subgraph, as float32 scalars."""
        p = self.act_params(tensor, bits)
        scale = np.float32(p.scale)
        zero = float(p.zero_point)
        return {"inv_scale": np.asarray(np.float32(1.0) / scale), "lo": np.asarray(p.qmin - zero, np.float32),
                "hi": np.asarray(p.qmax - zero, np.float32), "scale": np.asarray(scale)}


@dataclass(frozen=True)
class Feed:
    """A graph input of a parametric sub-model: what to feed for a given precision.

    ``kind`` is ``weight``, ``bias`` (a bias-corrected op's bias) or one of ``inv_scale, lo, hi, scale``;
    ``role`` says which bits apply (``act``: the precision's activation bits; ``weight``: its weight bits,
    for a MatMul's operand B).
    """

    name: str
    kind: str
    key: str
    role: str

    def value(self, precision: Precision, quant: Quantizers) -> np.ndarray:
        if self.kind == "weight":
            return quant.weight(self.key, precision)
        if self.kind == "bias":
            return quant.bias(self.key, precision)
        bits = precision.act_bits if self.role == "act" else precision.weight_bits
        if self.kind == "qmax":  # dynamic ranges: only the width is known in advance
            return np.asarray((1 << bits) - 1, np.float32)
        return np.asarray(quant.act_values(self.key, bits)[self.kind])


def fake_quant(proto: onnx.ModelProto, sites: Sequence[OnnxSite], precision_of: Mapping[str, Precision],
               quant: Quantizers | None, parametric: bool = False, dynamic: bool | None = None,
               outputs: Mapping[str, Mapping[str, np.ndarray]] | None = None,
               corrected: Mapping[str, tuple[str, int]] | None = None) -> tuple[onnx.ModelProto, list[Feed]]:
    """A copy of ``proto`` with each site (by node name) fake-quantized at its precision.

    With ``parametric``, quantizer parameters and quantized weights are graph inputs (``Feed``s), so one
    session serves every integer precision (or every float16 one) of the same sites. ``dynamic``
    (default: the scheme's ``act_dynamic``) computes activation ranges from each run's tensor.
    ``outputs`` (tensor -> ``Quantizers.act_values``): the export's output quantizers
    (``mixq.backends.onnx.export.output_quantizers``): every reader of the tensor, the sites' own input
    quantizers included, reads it fake-quantized (a quantizer of the same range on top is a no-op).
    ``corrected`` (default: the quantizers' ``corrected``): by weight key, the node and input position that
    read the bias-corrected bias (``Quantizers.bias``; an op without a bias gets one).
    """
    if dynamic is None:
        dynamic = quant is not None and quant.scheme.act_dynamic
    if corrected is None:
        corrected = quant.corrected if quant is not None else {}
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    graph = out.graph
    position = {node.name: i for i, node in enumerate(graph.node)}
    producer = {name: i for i, node in enumerate(graph.node) for name in node.output}
    extra: dict[int, list[onnx.NodeProto]] = {}  # new nodes to emit after node i (-1: at the start)
    made: dict[tuple[str, str, int | None], str] = {}
    feeds: list[Feed] = []
    new_inits: dict[str, np.ndarray] = {}
    new_inputs: list[onnx.ValueInfoProto] = []
    elem_of = {t.name: t.data_type for t in graph.initializer}
    biased: list[tuple[int, onnx.NodeProto]] = []  # bias Adds added after MatMuls (bias correction)

    def act(tensor: str, role: str, precision: Precision) -> str:
        bits = None if parametric else (precision.act_bits if role == "act" else precision.weight_bits)
        kind = "fp16" if precision.is_float else "int"
        key = (tensor, f"{kind}:{role}", bits)
        if key in made:
            return made[key]
        prefix = f"{tensor}::mixq_{role}_{kind}" + ("" if bits is None else str(bits))
        if precision.is_float:
            nodes = [helper.make_node("Cast", [tensor], [prefix + "_h"], to=onnx.TensorProto.FLOAT16,
                                      name=prefix + "_cast16"),
                     helper.make_node("Cast", [prefix + "_h"], [prefix], to=onnx.TensorProto.FLOAT,
                                      name=prefix + "_cast32")]
        elif dynamic:
            qmax = f"{prefix}_qmax"
            if parametric:
                feeds.append(Feed(qmax, "qmax", tensor, role))
                new_inputs.append(helper.make_tensor_value_info(qmax, onnx.TensorProto.FLOAT, []))
            else:
                new_inits[qmax] = np.asarray((1 << bits) - 1, np.float32)  # type: ignore[operator]
            nodes = dynamic_fake_quant(tensor, prefix, qmax, new_inits)
        else:
            names = {k: f"{prefix}_{k}" for k in _PARAMS}
            if parametric:
                for k in _PARAMS:
                    feeds.append(Feed(names[k], k, tensor, role))
                    new_inputs.append(helper.make_tensor_value_info(names[k], onnx.TensorProto.FLOAT, []))
            else:
                if quant is None or bits is None:
                    raise internal("a non-parametric fake-quant model needs quantizers")
                values = quant.act_values(tensor, bits)
                for k in _PARAMS:
                    new_inits[names[k]] = np.asarray(values[k], np.float32)
            nodes = static_fake_quant(tensor, prefix, names)
        extra.setdefault(producer.get(tensor, -1), []).extend(nodes)
        made[key] = prefix
        return prefix

    def constant(kind: str, key: str, precision: Precision) -> str:
        """The quantized weight (``kind`` ``weight``) or corrected bias (``bias``) of ``key`` at ``precision``:
        a fed graph input when ``parametric``, else an initializer."""
        name = f"{key}::mixq_{kind[0]}" + ("" if parametric else f"_{precision}")
        if name in new_inits or any(f.name == name for f in feeds):
            return name
        if parametric:
            feeds.append(Feed(name, kind, key, "weight"))
            elem = elem_of.get(key, onnx.TensorProto.FLOAT) if kind == "weight" else onnx.TensorProto.FLOAT
            new_inputs.append(helper.make_tensor_value_info(name, elem, None))
        else:
            if quant is None:
                raise internal("a non-parametric fake-quant model needs quantizers")
            new_inits[name] = quant.weight(key, precision) if kind == "weight" else quant.bias(key, precision)
        return name

    for site in sites:
        precision = precision_of.get(site.node)
        if precision is None or precision.keeps_float32 or site.node not in position:
            continue
        node = graph.node[position[site.node]]
        where = corrected.get(site.weight_key or "")
        if where is not None and where[0] in position and (parametric or not precision.is_float):
            target = graph.node[position[where[0]]]
            if where[1] < 0:  # a MatMul without a bias: Add one after it
                added = bias_add(target, constant("bias", site.weight_key or "", precision))
                biased.append((position[where[0]], added))
            else:
                set_input(target, where[1], constant("bias", site.weight_key or "", precision))
        for p in site.act_inputs:
            node.input[p] = act(node.input[p], "act", precision)
        if site.second_act is not None:
            node.input[site.second_act] = act(node.input[site.second_act], "weight", precision)
        if site.weight_input is not None and site.weight_key is not None:
            node.input[site.weight_input] = constant("weight", site.weight_key, precision)

    rewired: dict[str, str] = {}
    for tensor, values in (outputs or {}).items():
        prefix = f"{tensor}::mixq_out"
        names = {k: f"{prefix}_{k}" for k in _PARAMS}
        for k in _PARAMS:
            new_inits[names[k]] = np.asarray(values[k], np.float32)
        # first after the producer: the sites' quantizers of the tensor then read it
        after = producer.get(tensor, -1)
        extra[after] = static_fake_quant(tensor, prefix, names) + extra.get(after, [])
        rewired[tensor] = prefix
    for after, add in biased:  # first after the op: everything else reading its output comes after
        extra[after] = [add] + extra.get(after, [])
    nodes = list(extra.get(-1, []))
    for i, node in enumerate(graph.node):
        nodes.append(node)
        nodes.extend(extra.get(i, []))
    for node in nodes if rewired else ():
        for p, name in enumerate(node.input):
            if name in rewired and node.name != rewired[name] + "_div":
                node.input[p] = rewired[name]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in new_inits.items())
    graph.input.extend(new_inputs)
    drop_unused_initializers(graph)
    return out, feeds


def bias_add(node: onnx.NodeProto, bias: str) -> onnx.NodeProto:
    """An ``Add`` of ``bias`` to ``node``'s output, which it now produces (the node's is renamed)."""
    output = node.output[0]
    node.output[0] = f"{output}::mixq_unbiased"
    return helper.make_node("Add", [node.output[0], bias], [output], name=f"{node.name}::mixq_bias")


def set_input(node: onnx.NodeProto, position: int, name: str) -> None:
    """Input ``position`` of ``node`` reads ``name`` (an optional input the node lacks is added)."""
    while len(node.input) <= position:
        node.input.append("")
    node.input[position] = name


def static_fake_quant(tensor: str, prefix: str, names: Mapping[str, str]) -> list[onnx.NodeProto]:
    """``Mul(1/s) -> Round -> Clip -> Mul(s)`` of ``tensor`` into ``prefix`` (``names``: its parameters)."""
    return [
        helper.make_node("Mul", [tensor, names["inv_scale"]], [prefix + "_s"], name=prefix + "_div"),
        helper.make_node("Round", [prefix + "_s"], [prefix + "_r"], name=prefix + "_round"),
        helper.make_node("Clip", [prefix + "_r", names["lo"], names["hi"]], [prefix + "_c"], name=prefix + "_clip"),
        helper.make_node("Mul", [prefix + "_c", names["scale"]], [prefix], name=prefix + "_mul"),
    ]


def dynamic_fake_quant(tensor: str, prefix: str, qmax: str, inits: dict[str, np.ndarray]) -> list[onnx.NodeProto]:
    """Asymmetric per-tensor fake quantization with this run's min/max (zero included): the graph form of
    ``mixq.core.quantize.dynamic_params`` (what ORT's dynamic quantization and the torch backend compute);
    ``qmax`` names ``2**bits - 1``."""
    inits[prefix + "_zero0"] = np.asarray(0.0, np.float32)
    inits[prefix + "_tiny"] = np.asarray(DYNAMIC_MIN_SCALE, np.float32)

    def node(op: str, inputs: list[str], out: str, **attrs: Any) -> onnx.NodeProto:
        return helper.make_node(op, inputs, [prefix + out], name=prefix + out + "_node", **attrs)

    p = prefix
    return [
        node("ReduceMin", [tensor], "_min", keepdims=0), node("Min", [p + "_min", p + "_zero0"], "_lo"),
        node("ReduceMax", [tensor], "_max", keepdims=0), node("Max", [p + "_max", p + "_zero0"], "_hi"),
        node("Sub", [p + "_hi", p + "_lo"], "_width"), node("Div", [p + "_width", qmax], "_step"),
        node("Max", [p + "_step", p + "_tiny"], "_scale"), node("Reciprocal", [p + "_scale"], "_inv"),
        node("Neg", [p + "_lo"], "_neg"), node("Div", [p + "_neg", p + "_scale"], "_z"),
        node("Round", [p + "_z"], "_zr"), node("Clip", [p + "_zr", p + "_zero0", qmax], "_zero"),
        node("Mul", [tensor, p + "_inv"], "_s"), node("Round", [p + "_s"], "_r"),
        node("Add", [p + "_r", p + "_zero"], "_q"), node("Clip", [p + "_q", p + "_zero0", qmax], "_c"),
        node("Sub", [p + "_c", p + "_zero"], "_d"), helper.make_node("Mul", [p + "_d", p + "_scale"], [prefix],
                                                                     name=prefix + "_mul"),
    ]


def drop_unused_initializers(graph: onnx.GraphProto) -> None:
    """Remove initializers no node reads any more (and their graph-input entries, in old IR models)."""
    used = {name for node in graph.node for name in node_inputs(node)} | {o.name for o in graph.output}
    dropped = {t.name for t in graph.initializer if t.name not in used}
    if not dropped:
        return
    kept = [t for t in graph.initializer if t.name not in dropped]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    inputs = [i for i in graph.input if i.name not in dropped]
    if len(inputs) != len(graph.input):
        del graph.input[:]
        graph.input.extend(inputs)


def submodel(proto: onnx.ModelProto, index: GraphIndex, members: Sequence[int], infos: Mapping[str, TensorInfo],
             batch: int) -> tuple[onnx.ModelProto, list[str], list[str]]:
    """The nodes ``members`` (graph order) as a model: inputs are the tensors they read from outside.

    Inputs are declared with the traced shapes (batch symbolic), so ONNX Runtime can fold shape arithmetic
    and pick the same kernels as for the whole model. Returns the model, its boundary inputs (to feed from
    the float cache) and its outputs (the original graph outputs the members produce).
    """
    member_set = set(members)
    nodes = [index.nodes[i] for i in sorted(member_set)]
    produced = {name for node in nodes for name in node.output if name}
    boundary: list[str] = []
    used_inits: list[str] = []
    for node in nodes:
        for name in node_inputs(node):
            if name in produced:
                continue
            if name in index.initializers:
                used_inits.append(name)
            else:
                boundary.append(name)
    boundary = list(dict.fromkeys(boundary))
    outputs = [name for name in index.outputs if name in produced]
    graph = helper.make_graph(
        nodes, f"{proto.graph.name}_mixq_part",
        inputs=[helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(infos[name].dtype),
                                              _declared_shape(infos[name], batch)) for name in boundary],
        outputs=[onnx.ValueInfoProto(name=name) for name in outputs],
        initializer=[index.initializers[name] for name in dict.fromkeys(used_inits)],
    )
    model = helper.make_model(graph, opset_imports=list(proto.opset_import), ir_version=proto.ir_version)
    for function in proto.functions:
        model.functions.append(function)
    return model, boundary, outputs


def _declared_shape(info: TensorInfo, batch: int) -> list[int | str] | None:
    if info.shape and info.shape[0] == batch:
        return ["batch", *info.shape[1:]]
    return None


def part_members(index: GraphIndex, infos: Mapping[str, TensorInfo], sources: Sequence[int],
                 input_name: str) -> list[int]:
    """The nodes phase 1 recomputes for a group: those depending on it, plus the producers of the small
    tensors they read (shapes, pads, scalars), so the sub-model's boundary is only data tensors and ONNX
    Runtime can still fold the shape arithmetic as it does in the whole model."""
    members = set(index.descendants(sources))
    stack = [name for i in members for name in node_inputs(index.nodes[i])]
    while stack:
        name = stack.pop()
        producer = index.producer.get(name)
        if producer is None or producer in members or name == input_name or _is_data(infos.get(name)):
            continue
        members.add(producer)
        stack.extend(node_inputs(index.nodes[producer]))
    return sorted(members)


def _is_data(info: TensorInfo | None) -> bool:
    """A float tensor of real size: fed from the float cache rather than recomputed."""
    if info is None:
        return True
    return info.dtype.kind == "f" and int(np.prod(info.shape)) > 64
