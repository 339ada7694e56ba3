"""Running models as given, for ``evaluate(..., reference=...)``: exported files and float references.

An exported QDQ file cannot be traced and re-quantized (its weights are already integers), and comparing
it with itself says nothing; so it is run as is with ONNX Runtime and compared with a float reference
model run on the same data.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mixq.backends.base import Progress
from mixq.data.dataset import Dataset
from mixq.errors import DataError

logger = logging.getLogger(__name__)

#: Node types that only a quantized (QDQ or QOperator) ONNX graph contains.
QUANTIZED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
                           "QLinearMatMul", "MatMulInteger", "ConvInteger"})


def describe(model: object) -> str:
    """How a model is named in results: its path, or its type."""
    return str(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__


def is_quantized_file(model: object) -> bool:
    """An ONNX model (path or proto) written by ``mixq export`` or holding quantize/dequantize nodes."""
    from mixq import backends

    if not backends._is_onnx_model(model):
        return False
    proto = _proto(model)
    if proto is None:
        return False  # unreadable: the normal loading path gives the error
    return proto.producer_name == "mixq" or any(node.op_type in QUANTIZED_OPS for node in proto.graph.node)


def stored_weight_bytes(model: object) -> int | None:
    """Bytes of an ONNX model's initializers at their stored types (INT4 counts half a byte)."""
    from onnx import TensorProto

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
    from onnx import helper

    try:
        return int(np.dtype(helper.tensor_dtype_to_np_dtype(data_type)).itemsize)
    except (KeyError, TypeError, ValueError):
        return 4


def _proto(model: object) -> object | None:
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    try:
        return onnx.load(str(model), load_external_data=False)
    except Exception:
        return None


@dataclass
class AsGiven:
    """A model run as is, batch by batch, to ``(batch, features)`` float32 outputs."""

    model: object
    name: str
    _run: Callable[[np.ndarray], np.ndarray] | None = None

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self._run is None:
            self._run = _runner(self.model, batch)
        return self._run(batch)


def _runner(model: object, sample: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """ONNX: an ONNX Runtime session on the file as is (as deployed). Others: the backend's float run."""
    from mixq import backends
    from mixq.core.precision import QuantScheme, parse_candidates

    if backends._is_onnx_model(model):
        return _onnx_runner(model, sample)
    traced = backends.resolve(model).trace(model, sample[:1], parse_candidates("w8a8"))
    sim = traced.prepare(np.ascontiguousarray(sample[:1]), QuantScheme())  # float runs need no real calibration
    return lambda batch: sim.run(batch, None)


def _onnx_runner(model: object, sample: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    from mixq.backends.base import require_finite
    from mixq.backends.onnx.load import describe as what_of
    from mixq.backends.onnx.load import load
    from mixq.backends.onnx.runtime import Runner
    from mixq.backends.onnx.simulation import flatten_outputs
    from mixq.backends.onnx.trace import bind_input, model_input, relax_batch

    what = what_of(model)
    sample = np.ascontiguousarray(sample[:1], dtype=np.float32)
    proto, fixed_batch = bind_input(load(model), tuple(sample.shape))
    input_name = model_input(proto).name
    if fixed_batch is not None:
        fixed_batch = relax_batch(proto, input_name, fixed_batch, sample)
    runner = Runner(proto, input_name, fixed_batch, what)
    return lambda batch: require_finite(flatten_outputs(runner.run(np.ascontiguousarray(batch, dtype=np.float32))))


def paired_outputs(model: AsGiven, reference: AsGiven, data: Dataset, batch_size: int,
                   progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Both models' outputs on every sample of ``data`` (``reference`` may be ``model`` itself); a shape
    mismatch stops at the first batch."""
    outputs, references = [], []
    total = len(data)
    what = f"evaluating {model.name} against {reference.name}"
    for start, batch in data.batches(batch_size):
        if progress:
            progress(what, start, total)
        out = model.run(batch)
        ref = out if reference is model else reference.run(batch)
        if out.shape != ref.shape:
            raise DataError(
                f"{model.name} gives {out.shape[1]} output values per sample but the reference {reference.name} "
                f"gives {ref.shape[1]}: the reference must be the float model that {model.name} was made from "
                "(same outputs, same input preprocessing)"
            )
        outputs.append(out)
        references.append(ref)
    if progress:
        progress(what, total, total)
    return np.concatenate(outputs), np.concatenate(references)


def evaluate_as_given(model: object, data: Dataset, reference: object | None, quantized_file: bool,
                      progress: Progress | None = None) -> dict[str, Any]:
    """``model`` run as is against ``reference`` (or itself). Costs: float costs from a trace; for an exported
    file, ``bops_ratio`` is unknown (``None``) and ``weight_bytes`` are its stored initializers' bytes."""
    from mixq import backends
    from mixq.cost.totals import plan_costs
    from mixq.core.assignment import uniform
    from mixq.core.precision import Precision, parse_candidates
    from mixq.core.quality import measure_quality
    from mixq.evaluation import EVAL_BATCH

    if len(data) == 0:
        raise DataError("the data set is empty: give at least one sample")
    target = AsGiven(model, describe(model))
    if reference is None:
        logger.warning("%s is already quantized and no reference was given: agreement and SQNR are against "
                       "itself; give --reference FLOAT_MODEL to measure the quantization", target.name)
    against = AsGiven(reference, describe(reference)) if reference is not None else target
    outputs, references = paired_outputs(target, against, data, EVAL_BATCH, progress)
    result: dict[str, Any] = measure_quality(outputs, references, data.labels).to_dict()
    if quantized_file:
        result.update(bops_ratio=None, weight_bytes=stored_weight_bytes(model))
    else:
        graph = backends.resolve(model).trace(model, data.load(0, 1), parse_candidates("w8a8")).graph
        costs = plan_costs(graph, uniform(graph, Precision.parse("fp32")))
        result.update(bops_ratio=costs["bops"].ratio, weight_bytes=costs["size"].value)
    if reference is not None:
        result["reference"] = against.name
    return result
