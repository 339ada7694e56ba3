"""OpenVINO's profiler: on a small QDQ conv chain, what the CPU plugin ran, timed, named after the file's nodes,
with an int8 conv told apart from a float one by its kind."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mixq.backends.onnx.deployed.openvino_profile import OpenVinoProfiler, _kind, _originals, integer_kind

needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                    reason="openvino is not installed (pip install openvino): nothing to profile")
CHANNELS, SIZE = 16, 40


def _qdq(graph: list[onnx.NodeProto], inits: list[onnx.TensorProto], tensor: str, name: str) -> str:
    """``tensor`` through QuantizeLinear/DequantizeLinear (u8, per tensor), as mixq's export writes activations."""
    inits += [numpy_helper.from_array(np.array(0.05, np.float32), f"{name}_scale"),
              numpy_helper.from_array(np.array(128, np.uint8), f"{name}_zp")]
    graph.append(helper.make_node("QuantizeLinear", [tensor, f"{name}_scale", f"{name}_zp"], [f"{name}_q"],
                                  name=f"{name}_quantize"))
    graph.append(helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_scale", f"{name}_zp"], [f"{name}_dq"],
                                  name=f"{name}_dequantize"))
    return f"{name}_dq"


def _conv(graph: list[onnx.NodeProto], inits: list[onnx.TensorProto], tensor: str, name: str, int8: bool,
          rng: np.random.Generator) -> str:
    weight = rng.normal(0, 0.1, (CHANNELS, CHANNELS, 3, 3)).astype(np.float32)
    inits.append(numpy_helper.from_array(rng.normal(0, 0.1, CHANNELS).astype(np.float32), f"{name}_b"))
    if int8:  # int8 weights, per output channel, through DequantizeLinear
        scale = np.abs(weight).reshape(CHANNELS, -1).max(1) / 127
        inits += [numpy_helper.from_array(np.round(weight / scale[:, None, None, None]).astype(np.int8), f"{name}_wq"),
                  numpy_helper.from_array(scale.astype(np.float32), f"{name}_ws"),
                  numpy_helper.from_array(np.zeros(CHANNELS, np.int8), f"{name}_wz")]
        graph.append(helper.make_node("DequantizeLinear", [f"{name}_wq", f"{name}_ws", f"{name}_wz"], [f"{name}_w"],
                                      name=f"{name}_weight_dequantize", axis=0))
    else:
        inits.append(numpy_helper.from_array(weight, f"{name}_w"))
    graph.append(helper.make_node("Conv", [tensor, f"{name}_w", f"{name}_b"], [f"{name}_out"], name=name,
                                  pads=[1, 1, 1, 1]))
    graph.append(helper.make_node("Relu", [f"{name}_out"], [f"{name}_relu"], name=f"{name}_relu"))
    return f"{name}_relu"


def conv_chain() -> onnx.ModelProto:
    """input -> QDQ -> int8 conv -> QDQ -> int8 conv -> QDQ -> float conv -> output (Conv+Relu each)."""
    rng = np.random.default_rng(0)
    graph: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    x = _qdq(graph, inits, "input", "in")
    x = _qdq(graph, inits, _conv(graph, inits, x, "conv_int_a", True, rng), "a")
    x = _qdq(graph, inits, _conv(graph, inits, x, "conv_int_b", True, rng), "b")
    x = _conv(graph, inits, x, "conv_float", False, rng)
    graph.append(helper.make_node("Identity", [x], ["output"], name="out"))
    shape = ["batch", CHANNELS, SIZE, SIZE]
    model = helper.make_model(
        helper.make_graph(graph, "chain", [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)], inits),
        opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def _feeds() -> dict[str, np.ndarray]:
    return {"input": np.random.default_rng(1).random((1, CHANNELS, SIZE, SIZE), dtype=np.float32)}


def _by_original(graph, name: str):
    found = [node for node in graph.nodes if name in node.originals]
    assert len(found) == 1, (name, graph.nodes)
    return found[0]


@needs_openvino
@pytest.mark.parametrize("precision", [None, "f32"])
def test_profile_names_times_and_kinds_of_a_qdq_chain(precision: str | None) -> None:
    graph = OpenVinoProfiler(precision).profile(conv_chain(), _feeds(), threads=1, runs=5, warmup=2)
    assert graph.wall_ms > 0 and graph.node_ms > 0
    convs = {name: _by_original(graph, name) for name in ("conv_int_a", "conv_int_b", "conv_float")}
    assert all(node.ms > 0 for node in convs.values())
    assert all(node.ms >= 0 for node in graph.nodes)
    assert integer_kind(convs["conv_int_a"].kind) and integer_kind(convs["conv_int_b"].kind), convs
    assert convs["conv_int_a"].kind.startswith("Convolution[i8")
    float_kind = convs["conv_float"].kind
    assert float_kind.startswith("Convolution[") and not integer_kind(float_kind)
    if precision == "f32":
        assert float_kind == "Convolution[f32]"
    # wired: the first node reads the graph input, every other input is some node's output
    produced = {tensor for node in graph.nodes for tensor in node.outputs}
    assert graph.nodes[0].inputs == ("input",)
    assert all(tensor in produced or tensor == "input" for node in graph.nodes for tensor in node.inputs)
    assert convs["conv_int_b"].inputs[0] in convs["conv_int_a"].outputs or any(
        convs["conv_int_a"].outputs[0] in node.inputs for node in graph.nodes)


@needs_openvino
def test_version_names_openvino_and_the_precision() -> None:
    import openvino

    assert openvino.get_version() in OpenVinoProfiler().version()
    assert OpenVinoProfiler("f32").version().endswith("+f32")
    assert OpenVinoProfiler.runtime == "openvino"


def test_originals_are_the_files_node_names() -> None:
    names = {"/conv/Conv": "/conv/Conv", "/fc/Gemm": "/fc/Gemm", "conv_out": "/conv/Conv", "logits": "/fc/Gemm"}
    assert _originals("/conv/Conv/WithoutBiases,Multiply_16199,/conv/Conv", names) == ("/conv/Conv",)
    assert _originals("/fc/Gemm/WithoutBiases/DequantizationMultiply,logits", names) == ("/fc/Gemm",)
    assert _originals("Subtract_1,Multiply_2", names) == ()


def test_kind_tells_integer_from_float_and_conversions() -> None:
    assert _kind("Convolution", "u8", "u8") == "Convolution[i8]"
    assert _kind("Convolution", "u8", "bf16") == "Convolution[i8->bf16]"
    assert _kind("Convolution", "f32", "f32") == "Convolution[f32]"
    assert _kind("Reorder", "bf16", "u8") == "Reorder[bf16->u8]"
    assert _kind("Reorder", "u8", "u8") == "Reorder[i8]"
    assert integer_kind("Convolution[i8->bf16]") and not integer_kind("Convolution[bf16]")
