"""The layers' input moments of an ONNX model, for bias correction and the output-aware weight range.

The inputs are gathered as AdaRound gathers them (:func:`mixq.backends.onnx.rounding.layer_inputs`: the float
model's values on at most 64 calibration samples, unshared Conv/Gemm/MatMul weights); the moments are computed
with torch's patch view (reached through :data:`mixq.backends.MOMENTS`: this backend never imports the torch
one). Means are computed at once and the inputs dropped unless second moments are wanted (the output range);
those are computed per weight on first use and only the last is kept (one weight's ranges at every bit-width
are set in a row, and a ``d x d`` moment per layer would add up).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from mixq.backends import layer_moment
from mixq.backends.onnx.trace import GraphIndex
from mixq.core.rounding import LayerSpec

logger = logging.getLogger(__name__)


#: The input position that stands for "a bias ``Add`` after the node" (a MatMul without one gets one).
BIAS_ADD = -1


class OnnxMoments:
    """:class:`mixq.core.bias_correction.LayerMoments` of an ONNX model's gathered layer inputs."""

    def __init__(self, specs: dict[str, LayerSpec], inputs: dict[str, np.ndarray], weights: dict[str, np.ndarray],
                 keep_inputs: bool) -> None:
        self.specs = specs
        self.shapes = {key: tuple(weights[key].shape) for key in specs}
        self._moment: Any = layer_moment()
        self._means = {key: self._moment("mean", specs[key], inputs[key], self.shapes[key]) for key in specs}
        self._inputs = inputs if keep_inputs else {}
        self._last: tuple[str, np.ndarray | None] | None = None

    def mean(self, key: str) -> np.ndarray | None:
        return self._means.get(key)

    def gram(self, key: str) -> np.ndarray | None:
        if key not in self._inputs:
            return None
        if self._last is None or self._last[0] != key:
            self._last = (key, self._moment("gram", self.specs[key], self._inputs[key], self.shapes[key]))
        return self._last[1]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_moment"] = None  # a module function: looked up again after unpickling
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._moment = layer_moment()


def op_bias(index: GraphIndex, node: onnx.NodeProto, out: int
            ) -> tuple[tuple[str, int] | None, np.ndarray | None, str]:
    """Where bias correction writes this op's bias (a node and its input position), the bias there (None:
    the op has none, one is added), or None and why not. Conv and Gemm (``beta == 1``; a constant bias of one
    value per output channel, or one) take it as input 2; a MatMul's bias is the 1-D constant of the one
    ``Add`` reading its output (as ``torch.onnx.export`` writes ``nn.Linear``), or one added after it
    (position :data:`BIAS_ADD`)."""
    if node.op_type == "MatMul":
        consumers = index.consumers.get(node.output[0], [])
        add = index.nodes[consumers[0]] if len(consumers) == 1 and node.output[0] not in index.outputs else None
        if add is None or add.op_type != "Add" or add.domain not in ("", "ai.onnx") or len(add.input) != 2:
            return (node.name, BIAS_ADD), None, ""
        position = 1 if add.input[0] == node.output[0] else 0
        bias = _array(index, add.input[position])
        if bias is None or bias.shape != (out,):
            return None, None, "MatMul whose Add is not a bias"
        return (add.name, position), bias, ""
    if node.op_type not in ("Conv", "Gemm"):
        return None, None, f"{node.op_type} has no bias input"
    if node.op_type == "Gemm" and any(a.name == "beta" and a.f != 1.0 for a in node.attribute):
        return None, None, "Gemm with beta != 1"
    if len(node.input) < 3 or not node.input[2]:
        return (node.name, 2), None, ""
    bias = _array(index, node.input[2])
    if bias is None:
        return None, None, "its bias is computed at run time"
    if bias.size not in (1, out) or bias.ndim > 2 or (bias.ndim == 2 and bias.shape[0] != 1):
        return None, None, f"its bias has shape {bias.shape}"
    return (node.name, 2), bias, ""


def _array(index: GraphIndex, name: str) -> np.ndarray | None:
    tensor = index.initializers.get(name)
    return None if tensor is None else numpy_helper.to_array(tensor)


__all__ = ["BIAS_ADD", "OnnxMoments", "op_bias"]
