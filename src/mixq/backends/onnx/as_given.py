"""ONNX files run as given (``evaluate(..., reference=...)``): recognising an exported QDQ file, its stored
weight bytes, and an ONNX Runtime session on the file as deployed.

An exported QDQ file cannot be traced and re-quantized (its weights are already integers), so it is run
as is and compared with a float reference (``mixq.reference``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper

from mixq.backends.base import require_finite
from mixq.backends.onnx.load import describe, load
from mixq.backends.onnx.runtime import Runner
from mixq.backends.onnx.simulation import flatten_outputs
from mixq.backends.onnx.trace import bind_input, model_input, relax_batch

#: Node types that only a quantized (QDQ or QOperator) ONNX graph contains.
QUANTIZED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
                           "QLinearMatMul", "MatMulInteger", "ConvInteger"})


def is_quantized_file(model: object) -> bool:
    """An ONNX model (path or proto) written by ``mixq export`` or holding quantize/dequantize nodes."""
    proto = _proto(model)
    if proto is None:
        return False  # unreadable: the normal loading path gives the error
    return proto.producer_name == "mixq" or any(node.op_type in QUANTIZED_OPS for node in proto.graph.node)


def stored_weight_bytes(model: object) -> int | None:
    """Bytes of an ONNX model's initializers at their stored types (INT4 counts half a byte)."""
    proto = _proto(model)
    if proto is None:
        return None
    half = {TensorProto.INT4, TensorProto.UINT4} if hasattr(TensorProto, "INT4") else set()
    total = 0.0
    for tensor in proto.graph.initializer:
        count = int(np.prod(tensor.dims)) if len(tensor.dims) else 1
        total += count * (0.5 if tensor.data_type in half else _itemsize(tensor.data_type))
    return int(np.ceil(total))


def _itemsize(data_type: int) -> int:
    try:
        return int(np.dtype(helper.tensor_dtype_to_np_dtype(data_type)).itemsize)
    except (KeyError, TypeError, ValueError):
        return 4


def _proto(model: object) -> onnx.ModelProto | None:
    if isinstance(model, onnx.ModelProto):
        return model
    try:
        return onnx.load(str(model), load_external_data=False)
    except Exception:
        return None


def bound_as_given(model: object, sample: np.ndarray) -> tuple[onnx.ModelProto, str, int | None]:
    """The file's graph with its input bound to ``sample``'s shape, the input's name, and the batch size the
    graph only runs at (None: any), for any runtime that runs the file as given."""
    sample = np.ascontiguousarray(sample[:1], dtype=np.float32)
    proto, fixed_batch = bind_input(load(model), tuple(sample.shape))
    input_name = model_input(proto).name
    if fixed_batch is not None:
        fixed_batch = relax_batch(proto, input_name, fixed_batch, sample)
    return proto, input_name, fixed_batch


def runner_as_given(model: object, sample: np.ndarray,
                    threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """An ONNX Runtime session on the file as is (as deployed), batch in, ``(batch, features)`` out."""
    proto, input_name, fixed_batch = bound_as_given(model, sample)
    runner = Runner(proto, input_name, fixed_batch, describe(model), threads=threads)
    return lambda batch: require_finite(flatten_outputs(runner.run(np.ascontiguousarray(batch, dtype=np.float32))))
