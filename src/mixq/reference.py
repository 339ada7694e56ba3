"""Running models as given, for ``evaluate(..., reference=...)``: exported files and float references.

An exported QDQ file cannot be traced and re-quantized (its weights are already integers), and comparing
it with itself says nothing; so it is run as is (``Backend.run_as_given``: ONNX Runtime on the file) and
compared with a float reference model run on the same data. What is framework-specific (reading the
file, running it) is the backend's; the pairing and the quality are here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mixq.backends.base import Backend, Progress
from mixq.data.dataset import Dataset
from mixq.errors import BackendUnavailableError, DataError, UnsupportedModelError

logger = logging.getLogger(__name__)

def describe(model: object) -> str:
    """How a model is named in results: its path, or its type."""
    return str(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__


def _backend_of(model: object) -> Backend | None:
    """The backend that takes ``model``, or None if none does (or its framework is not installed)."""
    from mixq import backends

    try:
        return backends.resolve(model)
    except (UnsupportedModelError, BackendUnavailableError):
        return None


def is_quantized_file(model: object) -> bool:
    """A file that is already quantized (e.g. written by ``mixq export``): it can only be run as given."""
    backend = _backend_of(model)
    return backend is not None and backend.is_quantized_file(model)


def stored_weight_bytes(model: object) -> int | None:
    """Bytes of a quantized file's weights at their stored types (INT4 counts half a byte)."""
    backend = _backend_of(model)
    return None if backend is None else backend.stored_weight_bytes(model)


@dataclass
class AsGiven:
    """A model run as is (``Backend.run_as_given``), batch by batch, to ``(batch, features)`` float32 outputs."""

    model: object
    name: str
    #: A ``mixq.runtimes.RUNTIMES`` name to run the file in; None: the model's backend's own runner.
    runtime: str | None = None
    threads: int | None = None
    _run: Callable[[np.ndarray], np.ndarray] | None = None

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self._run is None:
            if self.runtime is not None:
                from mixq.runtimes import get_runtime

                self._run = get_runtime(self.runtime).run_as_given(self.model, batch, self.threads)
            else:
                from mixq import backends

                self._run = backends.resolve(self.model).run_as_given(self.model, batch)
        return self._run(batch)


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
                      progress: Progress | None = None, threads: int | None = None,
                      runtime: str | None = None) -> dict[str, Any]:
    """``model`` run as is against ``reference`` (or itself). Costs: float costs from a trace; for an exported
    file, ``bops_ratio`` is unknown (``None``) and ``weight_bytes`` are its stored initializers' bytes.
    ``threads``: set on the backend of each model that runs (and on ``model``'s runtime).

    ``runtime``: the ``mixq.runtimes.RUNTIMES`` entry ``model`` runs in (the reference runs as before). None:
    an exported file runs in the default runtime (ONNX Runtime), any other model in its backend. The result's
    ``runtime`` field names the runtime whenever one ran ``model``."""
    from mixq import backends
    from mixq.cost.totals import plan_costs
    from mixq.core.assignment import uniform
    from mixq.core.precision import Precision, parse_candidates
    from mixq.core.quality import measure_quality
    from mixq.evaluation import EVAL_BATCH

    if len(data) == 0:
        raise DataError("the data set is empty: give at least one sample")
    if threads is not None:
        for each in (model, reference):
            if each is not None:
                backends.resolve(each).set_threads(threads)
    from mixq.runtimes import DEFAULT_RUNTIME, RUNTIMES

    if runtime is not None:
        RUNTIMES.get(runtime)  # a wrong name fails before any work, with did-you-mean
    elif quantized_file:
        runtime = DEFAULT_RUNTIME
    target = AsGiven(model, describe(model), runtime, threads)
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
    if runtime is not None:
        result["runtime"] = runtime
    return result
