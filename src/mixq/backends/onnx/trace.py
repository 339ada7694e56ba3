"""Reading an ONNX graph: its one input bound to the data's shape, tensor shapes, quantizable nodes.

Shapes come from one ONNX Runtime run on a sample with every intermediate tensor as an output: exact
for the data, also where static shape inference gives up (symbolic dims, Reshape of computed shapes).
Quantizable nodes are Conv, ConvTranspose, Gemm and MatMul whose weight is an initializer (or a
``Constant``), and MatMul between two activations (attention), as in the torch backend.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from mixq.backends.onnx.runtime import Runner, with_outputs
from mixq.core.graph import OpKind, QuantOp
from mixq.errors import DataError, UnsupportedModelError

logger = logging.getLogger(__name__)

_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
_CONTROL_FLOW = {"If", "Loop", "Scan"}
_KEPT_FLOAT = {
    "Einsum": "Einsum is kept in float (write it as MatMul to quantize it)",
    "Attention": "the fused Attention op is kept in float (export attention as explicit MatMuls to quantize it)",
    "MultiHeadAttention": "the fused MultiHeadAttention op is kept in float",
    "FusedConv": "the fused FusedConv op is kept in float (load the model without ORT's offline fusions)",
    "FusedMatMul": "the fused FusedMatMul op is kept in float",
    "QLinearConv": "it is already quantized", "QLinearMatMul": "it is already quantized",
    "ConvInteger": "it is already quantized", "MatMulInteger": "it is already quantized",
    "MatMulNBits": "it is already quantized",
}


@dataclass(frozen=True)
class OnnxSite:
    """A quantizable node and how to feed it quantized tensors.

    Attributes:
        node: the node's (unique) name.
        op: the backend-neutral op.
        act_inputs: input positions quantized with the activation bits.
        weight_input: input position of the weight initializer (None for activation x activation).
        second_act: activation x activation MatMul: position of operand B (quantized with the weight bits).
        weight_axis: the output-channel axis of the weight (per-channel scales).
        bias_input: input position of a bias initializer (Conv, ConvTranspose, Gemm), for the export.
    """

    node: str
    op: QuantOp
    act_inputs: tuple[int, ...]
    weight_input: int | None
    second_act: int | None = None
    weight_axis: int = 0
    bias_input: int | None = None

    @property
    def weight_key(self) -> str | None:
        return self.op.weight


@dataclass(frozen=True)
class TensorInfo:
    """Shape (for the traced batch) and dtype of a tensor."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def bytes_per_sample(self, batch: int) -> int:
        numel = int(np.prod(self.shape)) if self.shape else 1
        if self.shape and self.shape[0] == batch and batch > 0:
            numel //= batch
        return numel * self.dtype.itemsize


# -- normalisation -----------------------------------------------------------------------------------

def normalize(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Unique node names (they become group ids), ``Constant`` tensors turned into initializers, and
    ``Identity`` of an initializer replaced by the initializer."""
    graph = proto.graph
    seen: set[str] = set()
    for index, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}_{index}"
        while name in seen:
            name = f"{name}_{index}"
        node.name = name
        seen.add(name)
    kept = []
    for node in graph.node:
        value = next((a for a in node.attribute if a.name == "value"), None)
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and value is not None and len(node.output) == 1:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(value.t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        else:
            kept.append(node)
    # torch.onnx.export shares equal constants (weights, zero biases) through Identity nodes: read the
    # initializer itself, so a shared weight is still a weight and a shared bias still a bias
    initializers = {t.name for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    aliases = {node.output[0]: node.input[0] for node in kept
               if node.op_type == "Identity" and node.input[0] in initializers and node.output[0] not in outputs}
    if aliases:
        kept = [node for node in kept if node.output[0] not in aliases or node.op_type != "Identity"]
        for node in kept:
            for i, name in enumerate(node.input):
                node.input[i] = aliases.get(name, name)
    if len(kept) != len(graph.node):
        del graph.node[:]
        graph.node.extend(kept)
    return proto


def model_input(proto: onnx.ModelProto) -> onnx.ValueInfoProto:
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    if not inputs:
        raise UnsupportedModelError("the ONNX model takes no input tensor")
    if len(inputs) > 1:
        raise UnsupportedModelError(
            f"the ONNX model takes {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); mixq feeds one "
            "image tensor: export a model whose only input is the image"
        )
    value = inputs[0]
    if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        kind = onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type)
        raise UnsupportedModelError(f"the ONNX model's input {value.name} is {kind}; mixq needs a float32 input")
    return value


def bind_input(proto: onnx.ModelProto, sample_shape: tuple[int, ...]) -> tuple[onnx.ModelProto, int | None]:
    """Fix the input's non-batch dims to the data's; returns the model and its fixed batch size, if any.

    The batch dim stays (or is made) symbolic; a model exported with a fixed batch whose graph cannot
    take another batch size is run in chunks of that size (the second value).
    """
    value = model_input(proto)
    tensor_type = value.type.tensor_type
    fixed_batch: int | None = None
    if tensor_type.HasField("shape"):
        dims = tensor_type.shape.dim
        if len(dims) != len(sample_shape):
            declared = "x".join(d.dim_param or (str(d.dim_value) if d.HasField("dim_value") else "?") for d in dims)
            raise DataError(
                f"the ONNX model's input {value.name} has rank {len(dims)} ({declared}) but the data has shape "
                f"{tuple(sample_shape)}; check --preprocess (or the .npz layout: NCHW float)"
            )
        named: dict[str, int] = {}
        loose: set[str] = set()  # names that are not one size: "?", "-1", "", or contradicted by the data
        for axis, (dim, size) in enumerate(zip(dims, sample_shape)):
            if dim.HasField("dim_value") and dim.dim_value < 0:  # -1 written as a value: an unknown, too
                dim.Clear()
            if axis == 0:
                if dim.HasField("dim_value"):
                    fixed_batch = int(dim.dim_value)
                continue
            if dim.HasField("dim_value"):
                if dim.dim_value != size:
                    raise DataError(
                        f"the ONNX model's input {value.name} needs size {dim.dim_value} on axis {axis}, the data "
                        f"has {size} (data shape {tuple(sample_shape)}); check --preprocess (resize/crop)"
                    )
                continue
            name = dim.dim_param.strip()
            if is_unknown(name):
                loose.add(dim.dim_param)
            elif named.setdefault(name, size) != size and name not in loose:
                logger.warning("the ONNX model's input %s names the dimension %r on several axes, but the data gives "
                               "it sizes %d and %d (shape %s): each axis takes the data's size (per-axis fallback); "
                               "the model may still need them equal", value.name, name, named[name], size,
                               tuple(sample_shape))
                loose.add(dim.dim_param)
            dim.Clear()
            dim.dim_value = size
    else:
        tensor_type.shape.dim.extend(onnx.TensorShapeProto.Dimension() for _ in sample_shape)
        for dim, size in zip(list(tensor_type.shape.dim)[1:], sample_shape[1:]):
            dim.dim_value = size
    batch_dim = tensor_type.shape.dim[0]
    batch_dim.Clear()
    batch_dim.dim_param = "batch"
    if tensor_type.HasField("shape") and loose:
        _forget_names(proto, loose)
    if fixed_batch is None:
        return proto, None
    # Exported with a fixed batch: try it with a symbolic one; keep it fixed if the graph hard-codes it.
    for output in proto.graph.output:
        if output.type.tensor_type.HasField("shape") and output.type.tensor_type.shape.dim:
            output.type.tensor_type.shape.dim[0].Clear()
            output.type.tensor_type.shape.dim[0].dim_param = "batch"
    del proto.graph.value_info[:]
    return proto, fixed_batch


#: Dimension names exporters write for "unknown" (PaddlePaddle writes ``?`` on every dynamic axis): each
#: axis so named is its own unknown, never one size shared between axes.
UNKNOWN_DIM_NAMES = frozenset({"", "?", "-1"})


def is_unknown(name: str) -> bool:
    """Whether a ``dim_param`` means "some size" rather than naming one size shared by its axes."""
    return name.strip() in UNKNOWN_DIM_NAMES or name.strip().startswith("unk__")


def _forget_names(proto: onnx.ModelProto, names: set[str]) -> None:
    """Drop ``names`` from the graph's declared shapes (outputs, value_info): they are not one size, and
    ONNX Runtime would otherwise take every axis so named as equal."""
    del proto.graph.value_info[:]
    for output in proto.graph.output:
        for dim in output.type.tensor_type.shape.dim:
            if dim.dim_param in names:
                dim.Clear()


def relax_batch(proto: onnx.ModelProto, input_name: str, fixed_batch: int, sample: np.ndarray) -> int | None:
    """``None`` if the graph gives per-sample results at another batch size, else ``fixed_batch``."""
    rng = np.random.default_rng(0)
    probe = np.concatenate([sample[:1], sample[:1] + rng.standard_normal(sample[:1].shape).astype(np.float32) * 0.1])
    try:
        free = Runner(proto, input_name, None).run(probe)
        fixed = Runner(proto, input_name, fixed_batch).run(probe)
    except Exception:
        return fixed_batch
    for a, b in zip(free, fixed):
        if a.shape != b.shape or not np.allclose(a, b, rtol=1e-4, atol=1e-5):
            return fixed_batch
    return None


# -- graph structure ---------------------------------------------------------------------------------

def node_inputs(node: onnx.NodeProto) -> list[str]:
    """Explicit inputs plus the outer-scope tensors its subgraphs (If/Loop/Scan bodies) read."""
    names = [name for name in node.input if name]
    for attribute in node.attribute:
        graphs = [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)
        for graph in graphs:
            names.extend(_outer_names(graph))
    return names


def _outer_names(graph: onnx.GraphProto) -> list[str]:
    local = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    outer: list[str] = []
    for node in graph.node:
        for name in node_inputs(node):
            if name not in local:
                outer.append(name)
        local.update(node.output)
    outer.extend(o.name for o in graph.output if o.name not in local)
    return outer


class GraphIndex:
    """Producers and consumers of the top-level graph's tensors."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.nodes = list(graph.node)
        self.position = {node.name: i for i, node in enumerate(self.nodes)}
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[int]] = {}
        for i, node in enumerate(self.nodes):
            for name in node.output:
                if name:
                    self.producer[name] = i
            for name in dict.fromkeys(node_inputs(node)):
                self.consumers.setdefault(name, []).append(i)
        self.initializers = {t.name: t for t in graph.initializer}
        self.outputs = [o.name for o in graph.output]

    def descendants(self, sources: Iterable[int]) -> list[int]:
        """Nodes depending on any source node, sources included, in graph order."""
        seen: set[int] = set()
        stack = list(sources)
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            for name in self.nodes[i].output:
                stack.extend(self.consumers.get(name, ()))
        return sorted(seen)


def tensor_infos(runner: Runner, index: GraphIndex, sample: np.ndarray) -> tuple[dict[str, TensorInfo], list[np.ndarray]]:
    """Shapes and dtypes of every top-level tensor, from one run on ``sample``; also the model outputs."""
    names = [name for node in index.nodes for name in node.output if name]
    names = list(dict.fromkeys([*index.outputs, *names]))
    probe = Runner(with_outputs(runner.proto, names), runner.input_name, runner.fixed_batch, runner.what)
    values = probe.run(sample, names)
    infos = {name: TensorInfo(tuple(int(d) for d in v.shape), v.dtype) for name, v in zip(names, values)
             if isinstance(v, np.ndarray)}
    infos[runner.input_name] = TensorInfo(tuple(sample.shape), sample.dtype)
    return infos, values[:len(index.outputs)]


# -- quantizable nodes -------------------------------------------------------------------------------

def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(attribute.i)
    return default


def find_sites(index: GraphIndex, infos: dict[str, TensorInfo], batch: int) -> tuple[list[OnnxSite], list[str]]:
    """Quantizable nodes in graph order, and descriptions of ops left in float."""
    sites: list[OnnxSite] = []
    skipped: list[str] = []
    arrays: dict[str, np.ndarray] = {}

    def weight(name: str) -> np.ndarray | None:
        if name not in index.initializers:
            return None
        if name not in arrays:
            arrays[name] = numpy_helper.to_array(index.initializers[name])
        return arrays[name]

    def per_sample(name: str) -> int:
        info = infos.get(name)
        if info is None:
            raise UnsupportedModelError(f"mixq could not determine the shape of tensor {name}")
        return info.bytes_per_sample(batch) // info.dtype.itemsize

    for node in index.nodes:
        if node.domain not in ("", "ai.onnx"):
            if node.op_type in _KEPT_FLOAT:
                skipped.append(f"{node.name}: {_KEPT_FLOAT[node.op_type]}")
            continue
        if node.op_type in _KEPT_FLOAT:
            skipped.append(f"{node.name}: {_KEPT_FLOAT[node.op_type]}")
            continue
        if node.op_type in _CONTROL_FLOW and _has_quantizable(node):
            skipped.append(f"{node.name}: ops inside {node.op_type} bodies are kept in float")
            continue
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            continue
        x, w = node.input[0], node.input[1]
        wa, xa = weight(w), weight(x)
        if node.op_type == "MatMul" and wa is None and xa is None:
            out = per_sample(node.output[0])
            k = infos[x].shape[-1] if x in infos and infos[x].shape else 0
            op = QuantOp(node.name, OpKind.MATMUL, macs=out * int(k), weight_numel=0, out_channels=0, inputs=(x, w),
                         act_numel=max(per_sample(x), per_sample(w)))
            sites.append(OnnxSite(node.name, op, act_inputs=(0,), weight_input=None, second_act=1))
            continue
        if xa is not None or wa is None:
            where = "its weight is computed at run time" if wa is None else "its first operand is a constant"
            skipped.append(f"{node.name}: {node.op_type} whose {where.removeprefix('its ')}, kept in float")
            continue
        if not _is_float(index.initializers[w]):
            skipped.append(f"{node.name}: its weight is not float, so it is kept in float")
            continue
        out = per_sample(node.output[0])
        bias = 2 if len(node.input) > 2 and node.input[2] in index.initializers else None
        if node.op_type == "Conv":
            channels = wa.shape[0]
            in_channels = infos[x].shape[1] if x in infos and len(infos[x].shape) > 1 else wa.shape[1]
            kind = OpKind.DEPTHWISE_CONV if wa.shape[1] == 1 and in_channels > 1 else OpKind.CONV
            macs, axis = out * (wa.size // wa.shape[0]), 0
        elif node.op_type == "ConvTranspose":
            kind, channels, axis = OpKind.CONV_TRANSPOSE, wa.shape[1], 1
            macs = per_sample(x) * (wa.size // wa.shape[0])
        elif node.op_type == "Gemm":
            trans_b = _attr(node, "transB", 0)
            axis = 0 if trans_b else 1
            kind, channels = OpKind.LINEAR, wa.shape[axis]
            macs = out * wa.shape[1 - axis]
        else:  # MatMul with a constant right operand: a linear layer (x @ W, W is (in, out))
            if wa.ndim != 2:
                skipped.append(f"{node.name}: MatMul with a {wa.ndim}-D constant is kept in float")
                continue
            kind, channels, axis, bias = OpKind.LINEAR, wa.shape[1], 1, None
            macs = out * wa.shape[0]
        op = QuantOp(node.name, kind, macs=int(macs), weight_numel=int(wa.size), out_channels=int(channels),
                     inputs=(x,), weight=w, act_numel=per_sample(x))
        sites.append(OnnxSite(node.name, op, act_inputs=(0,), weight_input=1, weight_axis=axis, bias_input=bias))
    return sites, skipped


def _is_float(tensor: onnx.TensorProto) -> bool:
    return tensor.data_type in _FLOAT_TYPES


def _has_quantizable(node: onnx.NodeProto) -> bool:
    for attribute in node.attribute:
        graphs = [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)
        for graph in graphs:
            if any(n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul") or _has_quantizable(n) for n in graph.node):
                return True
    return False


def float_params(proto: onnx.ModelProto) -> int:
    """Elements of float initializers (weights and biases; folded BatchNorm is already in them)."""
    total = 0
    for tensor in proto.graph.initializer:
        if _is_float(tensor):
            total += int(np.prod(tensor.dims)) if tensor.dims else 1
    return total
