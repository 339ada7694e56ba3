"""Graph capture of an ``nn.Module`` and discovery of its quantizable ops.

torch.fx first (keeps module names and handles functional ``F.conv2d`` with parameter weights),
torch.export as the fallback for models fx cannot trace. Either way we get a GraphModule whose
nodes the simulation executes one by one.
"""

from __future__ import annotations

import logging
import operator
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from mixq.core.graph import OpKind, QuantOp
from mixq.errors import UnsupportedModelError

logger = logging.getLogger(__name__)

aten = torch.ops.aten

_CONV_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T_MODULES = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_CONV_FUNCTIONS: set[Any] = {F.conv1d, F.conv2d, F.conv3d, torch.conv1d, torch.conv2d, torch.conv3d,
                             aten.conv1d.default, aten.conv2d.default, aten.conv3d.default}
_CONV_T_FUNCTIONS: set[Any] = {F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d,
                               aten.conv_transpose1d.default, aten.conv_transpose2d.input,
                               aten.conv_transpose3d.input}
_LINEAR_FUNCTIONS: set[Any] = {F.linear, aten.linear.default}
_MATMUL_FUNCTIONS: set[Any] = {torch.matmul, operator.matmul, torch.bmm, aten.matmul.default, aten.bmm.default}
_MATMUL_METHODS = {"matmul", "bmm", "__matmul__"}
_UNHANDLED_FUNCTIONS: dict[Any, str] = {
    F.scaled_dot_product_attention: "scaled_dot_product_attention (write attention as explicit matmuls to quantize it)",
}
_UNHANDLED_MODULES: tuple[type, ...] = (nn.MultiheadAttention,)


@dataclass(frozen=True)
class OpSite:
    """Where a quantizable op sits in the GraphModule and how to feed it quantized tensors.

    Attributes:
        node: the fx node name.
        act_args: positions of args quantized with the activation bits.
        weight_arg: position of a second operand quantized with the weight bits (matmul) or of a
            functional op's weight; None for modules, whose ``weight`` parameter is swapped.
        weight_key: the weight tensor's qualified name (shared by reused modules), or None.
        weight_axis: the output-channel axis of the weight (1 for transposed convolutions).
    """

    node: str
    op: QuantOp
    act_args: tuple[int, ...]
    weight_arg: int | None
    weight_key: str | None
    weight_axis: int = 0


class _ScopedTracer(fx.Tracer):
    """Default fx tracing; nodes keep the module path they were created in, for readable names."""

    def create_node(self, *args: Any, **kwargs: Any) -> fx.Node:
        node = super().create_node(*args, **kwargs)
        node.meta["mixq_scope"] = next(reversed(self.module_stack)) if self.module_stack else ""
        return node


def capture(model: nn.Module, sample: torch.Tensor) -> fx.GraphModule:
    """A GraphModule equivalent to ``model``; raises UnsupportedModelError if no tracer works."""
    errors = []
    try:
        tracer = _ScopedTracer()
        graph = tracer.trace(model)
        return fx.GraphModule(tracer.root, graph, model.__class__.__name__)
    except Exception as exc:  # fx raises many types (TraceError, TypeError, ...) on dynamic code
        errors.append(f"torch.fx: {type(exc).__name__}: {exc}")
        logger.info("torch.fx could not trace the model (%s); trying torch.export", exc)
    try:
        # Two samples and an automatic batch dim: export specializes size-1 dims, we need any batch.
        batch = sample.expand(2, *sample.shape[1:]).contiguous()
        exported = torch.export.export(model, (batch,), dynamic_shapes=({0: torch.export.Dim.AUTO},), strict=False)
        return exported.module()
    except Exception as exc:
        errors.append(f"torch.export: {type(exc).__name__}: {exc}")
    raise UnsupportedModelError(
        "mixq could not capture the model's graph. " + " | ".join(e.splitlines()[0][:300] for e in errors)
        + ". Make data-dependent Python control flow static, or export the model to ONNX."
    )


def _scoped_name(node: fx.Node) -> str:
    scope = node.meta.get("mixq_scope", "")
    return f"{scope}.{node.name}" if scope else node.name


def _tensor_name(arg: Any) -> str | None:
    return arg.name if isinstance(arg, fx.Node) else None


def _numel1(value: Any) -> int:
    """Elements of one sample of a tensor whose first dim is the batch."""
    return int(value[0].numel()) if isinstance(value, torch.Tensor) and value.dim() > 0 else 1


def find_sites(gm: fx.GraphModule, shapes: dict[str, Any]) -> tuple[list[OpSite], list[str]]:
    """Quantizable ops in graph order, and descriptions of ops left in float."""
    modules = dict(gm.named_modules())
    sites: list[OpSite] = []
    skipped: list[str] = []
    uses: dict[str, int] = {}
    for node in gm.graph.nodes:
        site = _site_for(node, modules, shapes, skipped)
        if site is None:
            continue
        count = uses.get(site.op.name, 0)
        uses[site.op.name] = count + 1
        if count:  # a reused module or weight: the second call is its own op, sharing the weight
            site = replace(site, op=replace(site.op, name=f"{site.op.name}:{count}"))
        sites.append(site)
    return sites, skipped


def _site_for(node: fx.Node, modules: dict[str, nn.Module], shapes: dict[str, Any],
              skipped: list[str]) -> OpSite | None:
    if node.op == "call_module":
        module = modules[str(node.target)]
        if isinstance(module, _UNHANDLED_MODULES):
            skipped.append(f"{node.target}: {type(module).__name__} is kept in float")
            return None
        if not isinstance(module, (*_CONV_MODULES, *_CONV_T_MODULES, nn.Linear)):
            return None
        return _weighted_site(node, str(node.target), module, module.weight, f"{node.target}.weight", None, shapes)
    if node.op == "call_function" and node.target in _UNHANDLED_FUNCTIONS:
        skipped.append(f"{_scoped_name(node)}: {_UNHANDLED_FUNCTIONS[node.target]} is kept in float")
        return None
    is_matmul = (node.op == "call_function" and node.target in _MATMUL_FUNCTIONS) or (
        node.op == "call_method" and node.target in _MATMUL_METHODS)
    if is_matmul:
        a, b = node.args[0], node.args[1]
        if not (isinstance(a, fx.Node) and isinstance(b, fx.Node)):
            return None
        k = shapes[a.name].shape[-1]
        op = QuantOp(_scoped_name(node), OpKind.MATMUL, macs=_numel1(shapes[node.name]) * int(k), weight_numel=0,
                     out_channels=0, inputs=(a.name, b.name),
                     act_numel=max(_numel1(shapes[a.name]), _numel1(shapes[b.name])))
        return OpSite(node.name, op, act_args=(0,), weight_arg=1, weight_key=None)
    if node.op == "call_function" and node.target in (_CONV_FUNCTIONS | _CONV_T_FUNCTIONS | _LINEAR_FUNCTIONS):
        weight_node = node.args[1] if len(node.args) > 1 else node.kwargs.get("weight")
        if not (isinstance(weight_node, fx.Node) and weight_node.op == "get_attr"):
            skipped.append(f"{_scoped_name(node)}: its weight is computed at run time, so it is kept in float")
            return None
        weight = shapes[weight_node.name]
        key = str(weight_node.target)
        name = key[: -len(".weight")] if key.endswith(".weight") else key
        return _weighted_site(node, name, node.target, weight, key, 1, shapes)
    return None


def _weighted_site(node: fx.Node, name: str, kind_of: Any, weight: torch.Tensor, weight_key: str,
                   weight_arg: int | None, shapes: dict[str, Any]) -> OpSite:
    x = node.args[0]
    out = shapes[node.name]
    transposed = isinstance(kind_of, _CONV_T_MODULES) or kind_of in _CONV_T_FUNCTIONS
    linear = isinstance(kind_of, nn.Linear) or kind_of in _LINEAR_FUNCTIONS
    if linear:
        kind, macs, channels = OpKind.LINEAR, _numel1(out) * weight.shape[1], weight.shape[0]
    elif transposed:
        kind = OpKind.CONV_TRANSPOSE
        channels = weight.shape[1]
        macs = _numel1(shapes[x.name]) * (weight.numel() // weight.shape[0]) if isinstance(x, fx.Node) else 0
    else:
        channels = weight.shape[0]
        in_channels = shapes[x.name].shape[1] if isinstance(x, fx.Node) else weight.shape[1]
        depthwise = weight.shape[1] == 1 and in_channels > 1
        kind = OpKind.DEPTHWISE_CONV if depthwise else OpKind.CONV
        macs = _numel1(out) * (weight.numel() // weight.shape[0])
    inputs, act_numel = ((x.name,), _numel1(shapes[x.name])) if isinstance(x, fx.Node) else ((), 0)
    op = QuantOp(name, kind, macs=int(macs), weight_numel=int(weight.numel()), out_channels=int(channels),
                 inputs=inputs, weight=weight_key, act_numel=act_numel)
    return OpSite(node.name, op, act_args=(0,), weight_arg=weight_arg, weight_key=weight_key,
                  weight_axis=1 if transposed else 0)

