"""ONNX integer types for quantized tensors: which type holds a range, and initializers of that type."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from mixq.errors import ConfigError


def container_type(qmin: int, qmax: int, int4: bool) -> int:
    """The smallest ONNX integer type holding ``[qmin, qmax]``."""
    if qmin >= 0:
        for dtype, high in ((onnx.TensorProto.UINT4, 15), (onnx.TensorProto.UINT8, 255),
                            (onnx.TensorProto.UINT16, 65535)):
            if qmax <= high and (int4 or dtype != onnx.TensorProto.UINT4):
                return dtype
    else:
        for dtype, low, high in ((onnx.TensorProto.INT4, -8, 7), (onnx.TensorProto.INT8, -128, 127),
                                 (onnx.TensorProto.INT16, -32768, 32767)):
            if low <= qmin and qmax <= high and (int4 or dtype != onnx.TensorProto.INT4):
                return dtype
    raise ConfigError(f"no ONNX integer type holds the range [{qmin}, {qmax}]")


#: The values each integer type holds.
INTEGER_RANGE: dict[int, tuple[int, int]] = {
    onnx.TensorProto.UINT4: (0, 15), onnx.TensorProto.INT4: (-8, 7), onnx.TensorProto.UINT8: (0, 255),
    onnx.TensorProto.INT8: (-128, 127), onnx.TensorProto.UINT16: (0, 65535), onnx.TensorProto.INT16: (-32768, 32767)}
#: Types whose QuantizeLinear/DequantizeLinear need opset 21 (or ORT's com.microsoft domain).
WIDE_TYPES: set[int] = {onnx.TensorProto.UINT4, onnx.TensorProto.INT4, onnx.TensorProto.UINT16, onnx.TensorProto.INT16}


def integer_tensor(name: str, values: np.ndarray, dtype: int) -> onnx.TensorProto:
    """``values`` as an initializer of ONNX integer type ``dtype`` (INT4/UINT4 packed two to a byte)."""
    if dtype in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
        try:
            import ml_dtypes

            kind = ml_dtypes.int4 if dtype == onnx.TensorProto.INT4 else ml_dtypes.uint4
            return numpy_helper.from_array(np.asarray(values).astype(kind), name)
        except (ImportError, TypeError, ValueError):
            return helper.make_tensor(name, dtype, list(np.shape(values)), np.asarray(values).reshape(-1).tolist())
    np_dtype = helper.tensor_dtype_to_np_dtype(dtype)
    return numpy_helper.from_array(np.asarray(values).astype(np_dtype), name)
