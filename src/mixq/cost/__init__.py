"""Cost models: additive per-group costs of a precision (BOPs, weight bytes, later latency)."""

from mixq.cost.base import CostModel, total_cost
from mixq.cost.bops import Bops
from mixq.cost.size import WeightSize

COST_MODELS: dict[str, type] = {"bops": Bops, "size": WeightSize}

__all__ = ["COST_MODELS", "Bops", "CostModel", "WeightSize", "total_cost"]
