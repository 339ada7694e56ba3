"""Tiny ONNX graphs built with ``onnx.helper``, shared by the tests of the ONNX backend, export and eval.

One builder per graph pattern, sizes as arguments, weights from fixed seeds: the same call always gives
the same model. ``onnx`` is imported inside each builder (it comes with ``mixq[onnx]``), so importing this
module never needs it and test modules can skip first.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np


def model(nodes: Sequence[Any], inputs: Sequence[Any], outputs: Sequence[Any], initializers: Sequence[Any],
          opset: int = 17) -> Any:
    """An ``onnx.ModelProto`` at ``opset`` with the IR version ONNX Runtime accepts for it."""
    from onnx import helper

    graph = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), list(initializers))
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = 8 if opset <= 17 else 10
    return proto


def init(name: str, shape: tuple[int, ...], seed: int, scale: float = 0.3) -> Any:
    """A float32 initializer of standard normal values times ``scale``."""
    from onnx import numpy_helper

    rng = np.random.default_rng(seed)
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def branches(opset: int = 17, batch: int | str = "N", height: int | str = "H", width: int | str = "W") -> Any:
    """conv1 -> relu -> {conv_a 1x1, conv_b 3x3} (one tensor: one group) -> concat -> relu -> pool -> fc (Gemm)
    -> proj (MatMul, constant weight) -> Einsum (kept in float); also a conv whose weight is computed (kept)."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [init("w1", (8, 3, 3, 3), 1), init("b1", (8,), 2, 0.1), init("wa", (4, 8, 1, 1), 3),
             init("wb", (4, 8, 3, 3), 4, 0.2), init("wc", (4, 8, 1, 1), 5),
             init("wfc", (10, 12), 6), init("bfc", (10,), 7, 0.1), init("wproj", (10, 6), 8),
             init("weinsum", (6, 5), 9), numpy_helper.from_array(np.array(2.0, np.float32), "two")]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["h"], name="relu1"),
        helper.make_node("Conv", ["h", "wa"], ["a"], name="conv_a"),
        helper.make_node("Conv", ["h", "wb"], ["b"], name="conv_b", pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["wc", "two"], ["wc2"], name="scale_wc"),
        helper.make_node("Conv", ["h", "wc2"], ["c"], name="conv_computed"),
        helper.make_node("Concat", ["a", "b", "c"], ["cat"], name="concat", axis=1),
        helper.make_node("Relu", ["cat"], ["r"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wfc", "bfc"], ["fc"], name="fc", transB=1),
        helper.make_node("MatMul", ["fc", "wproj"], ["proj"], name="proj"),
        helper.make_node("Einsum", ["proj", "weinsum"], ["y"], name="einsum", equation="bi,ij->bj"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, height, width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 5])
    return model(nodes, [x], [y], inits, opset)


def attention(tokens: int = 4, dim: int = 6, out: int = 3, scale: float = 0.3,
              seeds: tuple[int, int, int, int] = (11, 12, 13, 14)) -> Any:
    """Tokens (N, tokens, dim): q, k, v projections of one tensor, q @ k^T and softmax @ v (activation x
    activation), output projection to ``out``. ``seeds`` are those of wq, wk, wv, wo."""
    from onnx import TensorProto, helper

    inits = [init(n, (dim, dim), s, scale) for n, s in zip(("wq", "wk", "wv"), seeds)]
    inits.append(init("wo", (dim, out), seeds[3], scale))
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"], name="q"),
        helper.make_node("MatMul", ["x", "wk"], ["k"], name="k"),
        helper.make_node("MatMul", ["x", "wv"], ["v"], name="v"),
        helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"], name="scores"),
        helper.make_node("Softmax", ["s"], ["attn"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["attn", "v"], ["ctx"], name="context"),
        helper.make_node("MatMul", ["ctx", "wo"], ["y"], name="out"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", tokens, dim])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", tokens, out])
    return model(nodes, [x], [y], inits)


def deconv(batch: int = 1, hardcoded_reshape: bool = False, opset: int = 17) -> Any:
    """Conv -> ConvTranspose (stride 2) -> Reshape to (batch, -1) -> Gemm; exported with a fixed batch."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [init("w1", (4, 3, 3, 3), 21), init("wt", (4, 2, 2, 2), 22), init("bt", (2,), 23, 0.1),
             init("wfc", (7, 2 * 8 * 8), 24, 0.05),
             numpy_helper.from_array(np.array([batch if hardcoded_reshape else 0, -1], np.int64), "shape")]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("ConvTranspose", ["r", "wt", "bt"], ["u"], name="up", strides=[2, 2]),
        helper.make_node("Reshape", ["u", "shape"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "wfc"], ["y"], name="fc", transB=1),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 7])
    return model(nodes, [x], [y], inits, opset)


def residual(channels: int = 16, classes: int = 10) -> Any:
    """conv1 -> relu -> conv2 -> relu -> conv3 (+ relu1) -> relu -> pool -> fc (Gemm with bias): a classifier
    on (N, 3, H, W) with four quantizer groups."""
    from onnx import TensorProto, helper

    c = channels
    inits = [init("w1", (c, 3, 3, 3), 1, 0.4), init("b1", (c,), 2, 0.1),
             init("w2", (c, c, 3, 3), 3, 0.12), init("b2", (c,), 4, 0.1),
             init("w3", (c, c, 3, 3), 5, 0.12), init("b3", (c,), 6, 0.1),
             init("wfc", (classes, c), 7, 0.3), init("bfc", (classes,), 8, 0.1)]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["h"], name="relu1"),
        helper.make_node("Conv", ["h", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["h2"], name="relu2"),
        helper.make_node("Conv", ["h2", "w3", "b3"], ["c3"], name="conv3", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c3", "h"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["r"], name="relu3"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wfc", "bfc"], ["y"], name="fc", transB=1),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])
    return model(nodes, [x], [y], inits)


def padded(pad_value: float = 0.0, mode: str = "constant", channel_pad: bool = False):
    """conv1 -> Relu -> Pad (amounts computed by a small constant subgraph, as torch exports "same" padding)
    -> conv2 (3x3, no padding) -> Relu -> GlobalAveragePool."""
    from onnx import TensorProto, helper, numpy_helper

    pads = [0, 1 if channel_pad else 0, 0, 0, 0, 0, 1, 1]  # "same" padding of a stride-2 TF conv: bottom, right
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Constant", [], ["half"], name="half",
                         value=numpy_helper.from_array(np.array(pads[:4], np.int64))),
        helper.make_node("Constant", [], ["rest"], name="rest",
                         value=numpy_helper.from_array(np.array(pads[4:], np.int64))),
        helper.make_node("Concat", ["half", "rest"], ["pads"], name="concat", axis=0),
        helper.make_node("Constant", [], ["fill"], name="fill",
                         value=numpy_helper.from_array(np.array(pad_value, np.float32))),
        helper.make_node("Pad", ["r1", "pads", "fill"], ["p1"], name="pad", mode=mode),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["y"], name="pool"),
    ]
    inits = [init("w1", (8, 3, 3, 3), 1), init("b1", (8,), 2, 0.1),
             init("w2", (8, 8 + channel_pad, 3, 3), 3), init("b2", (8,), 4, 0.1)]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 1, 1])
    return model(nodes, [x], [y], inits)


def images(n: int = 8, shape: tuple[int, ...] = (3, 8, 8), seed: int = 0) -> np.ndarray:
    """Standard normal float32 inputs of shape ``(n, *shape)``."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)).astype(np.float32)


def blocky_images(n: int = 16, shape: tuple[int, ...] = (3, 16, 16), seed: int = 0) -> np.ndarray:
    """Normal values constant over 4-wide blocks of every axis after the first of ``shape``: smoother inputs
    whose activations look more like real ones than white noise does."""
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((n, shape[0], *(max(1, s // 4) for s in shape[1:]))).astype(np.float32)
    for axis in range(2, coarse.ndim):
        coarse = coarse.repeat(4, axis=axis)
    return np.ascontiguousarray(coarse)


GRAPHS = SimpleNamespace(branches=branches, attention=attention, deconv=deconv, residual=residual, images=images,
                         blocky_images=blocky_images, model=model, init=init)
"""Every builder in one namespace, for tests that take them as a fixture."""
