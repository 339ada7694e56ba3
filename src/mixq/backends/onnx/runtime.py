"""ONNX Runtime sessions: created quietly, with errors turned into one sentence, and run in batches.

A model whose batch dimension is fixed (an export with batch 1 and no dynamic axes) is run in
chunks of that size, so the rest of mixq can hand it any batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import onnxruntime as ort

from mixq.core.precision import Precision
from mixq.errors import DataError, UnsupportedModelError, internal


def session(proto: onnx.ModelProto, what: str = "the ONNX model", threads: int | None = None,
            arena: bool = True) -> ort.InferenceSession:
    """``arena=False``: memory is returned after each run (for the many short-lived phase-1 sessions)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # unused initializers and shape-hint mismatches are not the user's business
    options.enable_cpu_mem_arena = arena
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise UnsupportedModelError(f"ONNX Runtime cannot load {what}: {first}") from None


class Runner:
    """A session for a model with one batch-major data input; ``run`` accepts any batch size.

    ``fixed_batch``: the graph only runs at that batch size, so batches are run in padded chunks.
    """

    def __init__(self, proto: onnx.ModelProto, input_name: str | None, fixed_batch: int | None = None,
                 what: str = "the ONNX model", arena: bool = True, threads: int | None = None) -> None:
        self.proto = proto
        self.input_name = input_name
        self.fixed_batch = fixed_batch
        self.what = what
        self.session = session(proto, what, threads, arena=arena)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, inputs: np.ndarray, outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        if self.input_name is None:
            raise internal("Runner.run needs the model's input name; use run_feeds")
        return self.run_feeds({self.input_name: inputs}, len(inputs), outputs, batched={self.input_name})

    def run_feeds(self, feeds: dict[str, np.ndarray], batch: int, outputs: Sequence[str] | None = None,
                  batched: set[str] | None = None) -> list[np.ndarray]:
        """Run with ``feeds``; those named in ``batched`` have the batch on axis 0 (chunked if needed)."""
        names = list(outputs) if outputs is not None else self.output_names
        if self.fixed_batch is None or batch == self.fixed_batch:
            return self._run(names, feeds)
        size = self.fixed_batch
        split = {name for name in (batched or set()) if name in feeds}
        parts: list[list[np.ndarray]] = []
        for start in range(0, batch, size):
            chunk = {}
            for name, value in feeds.items():
                if name in split:
                    part = value[start:start + size]
                    if len(part) < size:  # pad the last chunk with copies of its last sample
                        part = np.concatenate([part, np.repeat(part[-1:], size - len(part), axis=0)])
                    chunk[name] = part
                else:
                    chunk[name] = value
            parts.append(self._run(names, chunk))
        out = []
        for i in range(len(names)):
            first = parts[0][i]
            if first.ndim and first.shape[0] == size:
                out.append(np.concatenate([p[i] for p in parts])[:batch])
            else:
                out.append(first)
        return out

    def _run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        options = ort.RunOptions()
        options.log_severity_level = 3  # the DataError below says it once
        try:
            return self.session.run(names, feeds, options)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            shape = tuple(feeds[self.input_name].shape) if self.input_name in feeds else None
            raise DataError(
                f"{self.what} cannot run on the data: {first}. Input shape was {shape}; check --preprocess "
                "(e.g. resize/crop to the model's size)"
            ) from None


def with_outputs(proto: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """A copy of ``proto`` that also returns the tensors ``names`` (ONNX Runtime infers their types)."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    existing = {o.name for o in out.graph.output}
    for name in names:
        if name not in existing:
            info = onnx.ValueInfoProto()
            info.name = name
            out.graph.output.append(info)
            existing.add(name)
    return out


def integer_kernel(precision: Precision, int4: bool) -> bool:
    """Whether ORT runs a group at ``precision`` as an integer kernel (both operands in 8-bit containers)."""
    return not precision.is_float and precision.act_bits <= 8 and precision.weight_bits <= 8 \
        and (precision.weight_bits > 4 or not int4)
