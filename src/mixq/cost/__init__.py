"""Cost models: what a plan costs per group and precision (BOPs, weight bytes, latency, peak memory).

Each is an entry of :data:`COST_MODELS`; a third party adds one under the ``mixq.cost_models``
entry-point group. Entries tagged ``additive`` (a sum over groups) may be the ``--cost`` a search
trades against and the subject of ``name<=`` budgets; the rest (``memory``: a maximum) are totals.
"""

from __future__ import annotations

from typing import Any

from mixq.cost.base import CostModel, total_cost
from mixq.cost.bops import Bops
from mixq.cost.latency import LatencySource, latency_model
from mixq.cost.memory import PeakMemory
from mixq.cost.size import WeightSize
from mixq.registry import Registry

#: Tag of cost models that add up over groups (a search may walk along them).
ADDITIVE = "additive"

#: Cost models by name. Entries without settings are built for every search; ``latency`` needs a
#: source (a hardware description's table or a measured one).
COST_MODELS: Registry[Any] = Registry("cost model", "mixq.cost_models")
COST_MODELS.add("bops", Bops, tags={ADDITIVE}, help="bit operations, MACs x weight bits x activation bits")
COST_MODELS.add("size", WeightSize, tags={ADDITIVE}, help="weight bytes")
COST_MODELS.add("latency", latency_model, config=LatencySource, tags={ADDITIVE},
                help="milliseconds of each group's kernels measured in ONNX Runtime on this machine (.onnx "
                     "models), or --hardware's latency table")
COST_MODELS.add("memory", PeakMemory,
                help="peak activation bytes, the largest activation tensor a quantized op reads (memory<= budgets)")


def default_cost_models() -> dict[str, CostModel]:
    """The additive cost models every search has: those that need no source (``bops``, ``size``, plug-ins)."""
    return {entry.name: COST_MODELS.create(entry.name) for entry in COST_MODELS.entries(tag=ADDITIVE)
            if entry.config is None}


__all__ = ["ADDITIVE", "COST_MODELS", "Bops", "CostModel", "LatencySource", "PeakMemory", "WeightSize",
           "default_cost_models", "latency_model", "total_cost"]
