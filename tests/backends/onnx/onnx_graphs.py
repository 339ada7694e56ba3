"""Tiny ONNX graphs built with ``onnx.helper`` for the ONNX backend tests (imports are lazy: without onnx
the test modules skip before using them; not a conftest, whose name would clash under --doctest-modules)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np


def _model(nodes, inputs, outputs, initializers, opset=17):
    from onnx import helper

    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset <= 17 else 10
    return model


def _init(name, shape, seed, scale=0.3):
    from onnx import numpy_helper

    rng = np.random.default_rng(seed)
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def branches(opset=17, batch="N", height="H", width="W"):
    """conv1 -> relu -> {conv_a 1x1, conv_b 3x3} (one tensor: one group) -> concat -> relu -> pool -> fc (Gemm)
    -> proj (MatMul, constant weight) -> Einsum (kept in float); also a conv whose weight is computed (kept)."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [_init("w1", (8, 3, 3, 3), 1), _init("b1", (8,), 2, 0.1), _init("wa", (4, 8, 1, 1), 3),
             _init("wb", (4, 8, 3, 3), 4, 0.2), _init("wc", (4, 8, 1, 1), 5),
             _init("wfc", (10, 12), 6), _init("bfc", (10,), 7, 0.1), _init("wproj", (10, 6), 8),
             _init("weinsum", (6, 5), 9), numpy_helper.from_array(np.array(2.0, np.float32), "two")]
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
    return _model(nodes, [x], [y], inits, opset)


def attention():
    """Tokens (N, 4, 6): q, k, v projections of one tensor, q @ k^T and softmax @ v (activation x activation)."""
    from onnx import TensorProto, helper

    inits = [_init("wq", (6, 6), 11), _init("wk", (6, 6), 12), _init("wv", (6, 6), 13), _init("wo", (6, 3), 14)]
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
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 3])
    return _model(nodes, [x], [y], inits)


def deconv(batch=1, hardcoded_reshape=False, opset=17):
    """Conv -> ConvTranspose (stride 2) -> Reshape to (batch, -1) -> Gemm; exported with a fixed batch."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [_init("w1", (4, 3, 3, 3), 21), _init("wt", (4, 2, 2, 2), 22), _init("bt", (2,), 23, 0.1),
             _init("wfc", (7, 2 * 8 * 8), 24, 0.05),
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
    return _model(nodes, [x], [y], inits, opset)


def images(n=8, shape=(3, 8, 8), seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)).astype(np.float32)


GRAPHS = SimpleNamespace(branches=branches, attention=attention, deconv=deconv, images=images, model=_model,
                         init=_init)
