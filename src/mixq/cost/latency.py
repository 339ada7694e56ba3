"""The ``latency`` cost model: from a hardware description's kernel table, or timed on this machine.

Both sources give an additive cost named ``latency``; which one a search gets is decided by what it
has (a ``--hardware`` file with ``cost.latency`` wins over a measurement, as before). Without either
there is no latency to trade against, and the error says how to get one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mixq.core.precision import Precision
from mixq.cost.base import CostModel
from mixq.errors import ConfigError

if TYPE_CHECKING:
    from mixq.cost.measured_latency import LatencyTable

#: How a measured latency is modelled (``--latency-model``), each with what it is.
LATENCY_MODELS: dict[str, str] = {
    "deployed": "the exported file as the runtime runs it: kernels in context plus what each edge between an "
                "integer and a float group pays (Q/DQ, layout changes, unfused kernels), profiled on probe files",
    "kernels": "each group's kernel timed alone and summed (no transitions between groups)",
}

NO_SOURCE = ("latency needs a hardware description with cost.latency, or an ONNX model to measure it on "
             "(in ONNX Runtime)")


@dataclass(frozen=True)
class LatencySource:
    """Where latency figures come from (exactly one of ``kernels`` and ``measured``).

    Attributes:
        kernels: a hardware description's relative time per MAC, op kind -> precision -> time.
        hardware: the description's name (for errors).
        measured: milliseconds per (group, precision), timed by a backend.
    """

    kernels: Mapping[str, Mapping[Precision, float]] | None = None
    hardware: str = "hardware"
    measured: LatencyTable | None = None


def latency_model(source: LatencySource) -> CostModel:
    """The latency cost model of ``source``; a ConfigError when it has no figures."""
    if source.kernels is not None:
        from mixq.cost.kernel_latency import KernelLatency

        return KernelLatency(source.kernels, source.hardware)
    if source.measured is not None:
        from mixq.cost.measured_latency import MeasuredLatency

        return MeasuredLatency(source.measured)
    raise ConfigError(NO_SOURCE)
