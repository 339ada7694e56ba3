"""Batch-norm folding on the captured graph.

Deployment runtimes fold an inference-mode BatchNorm into the conv before it, so the kernel that
gets quantized is the folded one; simulating the folded graph is both more faithful and faster
(one pass over each activation fewer, which phase 1 repeats for every group). Per-channel weight
quantization is invariant to the per-channel scale that folding applies.
"""

from __future__ import annotations

import logging
from typing import Any, TypeGuard

import torch
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_weights

from mixq.errors import internal

logger = logging.getLogger(__name__)

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_CONV_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_FUNCTIONS = (torch.conv1d, torch.conv2d, torch.conv3d)


def fold_batchnorm(gm: fx.GraphModule) -> int:
    """Fold every BN whose input is a conv (module or functional) feeding nothing else.

    Returns how many were folded. Modules called more than once, weights read by other nodes and
    BNs without running statistics are left alone. ``gm`` must be a private copy: it is changed.
    """
    modules = dict(gm.named_modules())
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[_name(node)] = calls.get(_name(node), 0) + 1
    folded = 0
    for node in list(gm.graph.nodes):
        bn = modules.get(_name(node)) if node.op == "call_module" else None
        if not isinstance(bn, _BATCHNORMS) or calls[_name(node)] != 1 or bn.running_mean is None:
            continue
        producer = node.args[0] if node.args else None
        if not isinstance(producer, fx.Node) or len(producer.users) != 1:
            continue
        if _fold_into(gm, producer, bn, modules, calls):
            node.replace_all_uses_with(producer)
            gm.graph.erase_node(node)
            folded += 1
    if folded:
        gm.graph.lint()
        gm.recompile()
        logger.info("folded %d batch-norm layers into the convs before them", folded)
    return folded


def _fold_into(gm: fx.GraphModule, producer: fx.Node, bn: _BatchNorm, modules: dict[str, nn.Module],
               calls: dict[str, int]) -> bool:
    """Rewrite the conv's weight and bias to include ``bn``; False if the conv cannot take it."""
    if producer.op == "call_module":
        conv = modules.get(_name(producer))
        if not isinstance(conv, _CONV_MODULES) or calls[_name(producer)] != 1:
            return False
        weight, bias = _fused(conv.weight, conv.bias, bn)
        conv.weight, conv.bias = weight, bias
        return True
    if producer.op != "call_function" or producer.target not in _CONV_FUNCTIONS:
        return False
    weight_node = producer.args[1] if len(producer.args) > 1 else producer.kwargs.get("weight")
    bias_node = producer.args[2] if len(producer.args) > 2 else producer.kwargs.get("bias")
    if not _private_attr(weight_node):
        return False
    if bias_node is not None and not _private_attr(bias_node):
        return False
    weight_name = _name(weight_node)
    old_bias = gm.get_parameter(_name(bias_node)) if bias_node is not None else None
    weight, bias = _fused(gm.get_parameter(weight_name), old_bias, bn)
    _set_attr(gm, weight_name, weight)
    if bias_node is not None:
        _set_attr(gm, _name(bias_node), bias)
    else:
        target = weight_name.rpartition(".")[0] + ("." if "." in weight_name else "") + "folded_bias"
        _set_attr(gm, target, bias)
        with gm.graph.inserting_before(producer):
            new_bias = gm.graph.get_attr(target)
        args = list(producer.args) + [None] * max(0, 3 - len(producer.args))
        args[2] = new_bias
        producer.args = tuple(args)
        producer.kwargs = {k: v for k, v in producer.kwargs.items() if k != "bias"}
    return True


def _private_attr(node: Any) -> TypeGuard[fx.Node]:
    """A ``get_attr`` node read only by the conv (so its tensor can be rewritten in place)."""
    return isinstance(node, fx.Node) and node.op == "get_attr" and len(node.users) == 1


def _name(node: fx.Node) -> str:
    """The qualified name a ``call_module`` or ``get_attr`` node refers to (fx makes it a string)."""
    if not isinstance(node.target, str):
        raise internal(f"fx node {node.name} ({node.op}) has a non-string target {node.target!r}")
    return node.target


def _fused(weight: torch.Tensor, bias: torch.Tensor | None, bn: _BatchNorm) -> tuple[nn.Parameter, nn.Parameter]:
    if bn.running_mean is None or bn.running_var is None:
        raise internal("a batch norm without running statistics was chosen for folding")
    return fuse_conv_bn_weights(weight, bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)


def _set_attr(root: nn.Module, target: str, value: nn.Parameter) -> None:
    parent_name, _, name = target.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, name, value)
