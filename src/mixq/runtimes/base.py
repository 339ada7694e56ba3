"""The runtime interface: a CPU runtime that runs an exported file as given and times it.

A runtime takes a model file (an ONNX path or proto, e.g. a QDQ file written by ``mixq export``) as it
is: nothing is traced or re-quantized. Entries of :data:`mixq.runtimes.RUNTIMES` satisfy
:class:`Runtime`; framework code lives in the backends and is named by lazy ``"module:attr"`` strings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

#: A model run batch by batch: ``(batch, ...)`` float32 inputs to ``(batch, features)`` float32 outputs.
BatchRunner = Callable[[np.ndarray], np.ndarray]

#: The runtime files run in when none is named.
DEFAULT_RUNTIME = "onnxruntime"


@runtime_checkable
class Runtime(Protocol):
    """A runtime for exported files (``mixq eval FILE --reference FLOAT --runtime NAME``)."""

    #: The registry name (what users type: ``--runtime openvino``).
    name: str

    def run_as_given(self, model: object, sample: np.ndarray, threads: int | None = None) -> BatchRunner:
        """A runner on ``model`` as is; ``sample`` (at least one sample) fixes the input's shape."""
        ...

    def latency_ms(self, model: object, sample: np.ndarray, runs: int = 50, warmup: int = 5,
                   threads: int | None = None) -> float:
        """Median wall time of one batch-1 run of ``model`` after ``warmup`` untimed runs, in milliseconds."""
        ...
