"""Typed settings of a search; parsed from strings once, at the CLI edge."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mixq.core.budget import Budget, CostBudget, QualityTarget, parse_budget
from mixq.core.precision import Precision, QuantScheme, RangeMethod, parse_candidates
from mixq.errors import ConfigError

SCHEMA_VERSION = 1
DEFAULT_CANDIDATES = "w4a8,w8a8,w8a16"


@dataclass(frozen=True)
class SearchConfig:
    """Everything that decides a search's result.

    Attributes:
        candidates: precisions every group may take (the target's kernels).
        budgets: cost limits and/or one quality target; all must hold.
        num_samples: calibration samples (the first N of the data), for ranges and phase 1.
        eval_samples: samples used to measure quality targets (None = all the data).
        seed: seeds every random choice (sampling for range setting).
        scheme: how tensors are quantized at a bit-width.
        solver: phase-2 allocation solver (``greedy`` is Pandey et al.'s).
        cost: the cost phase 2 trades sensitivity against (``bops`` or ``size``).
        cache_mb: memory for phase 1's cached float activations; larger = fewer chunks.
        threads: torch/BLAS threads (None = the library default).
    """

    candidates: tuple[Precision, ...] = field(default_factory=lambda: parse_candidates(DEFAULT_CANDIDATES))
    budgets: tuple[Budget, ...] = ()
    num_samples: int = 64
    eval_samples: int | None = None
    seed: int = 0
    scheme: QuantScheme = field(default_factory=QuantScheme)
    solver: str = "greedy"
    cost: str = "bops"
    cache_mb: float = 4096.0
    threads: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "candidates", parse_candidates(self.candidates))
        budgets = tuple(parse_budget(b) if isinstance(b, str) else b for b in self.budgets)
        object.__setattr__(self, "budgets", budgets)
        if sum(isinstance(b, QualityTarget) for b in budgets) > 1:
            raise ConfigError("give at most one quality target (sqnr>=, agreement>= or drop<=) per search")
        if self.num_samples < 1:
            raise ConfigError(f"--num-samples must be at least 1, got {self.num_samples}")
        if self.eval_samples is not None and self.eval_samples < 1:
            raise ConfigError(f"--eval-samples must be at least 1, got {self.eval_samples}")
        if self.cost not in ("bops", "size"):
            raise ConfigError(f"--cost must be bops or size, got {self.cost!r}")
        if self.cache_mb <= 0:
            raise ConfigError("--cache-mb must be positive")
        if self.threads is not None and self.threads < 1:
            raise ConfigError("--threads must be at least 1")

    @property
    def cost_budgets(self) -> tuple[CostBudget, ...]:
        return tuple(b for b in self.budgets if isinstance(b, CostBudget))

    @property
    def quality_target(self) -> QualityTarget | None:
        return next((b for b in self.budgets if isinstance(b, QualityTarget)), None)

    def to_dict(self) -> dict[str, Any]:
        scheme = scheme_to_dict(self.scheme)
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out.update(candidates=[str(p) for p in self.candidates], budgets=[str(b) for b in self.budgets],
                   scheme=scheme, schema_version=SCHEMA_VERSION)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        data = dict(data)
        data.pop("schema_version", None)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown settings {unknown}; known: {sorted(known)}")
        if "scheme" in data and isinstance(data["scheme"], dict):
            data["scheme"] = scheme_from_dict(data["scheme"])
        if "candidates" in data:
            data["candidates"] = parse_candidates(data["candidates"])
        if "budgets" in data:
            data["budgets"] = tuple(data["budgets"])
        return cls(**data)

    def measurement_key(self) -> dict[str, Any]:
        """The settings stored measurements depend on; changing any of them invalidates a run."""
        d = self.to_dict()
        return {k: d[k] for k in ("num_samples", "seed", "scheme")}


def scheme_to_dict(scheme: QuantScheme) -> dict[str, Any]:
    out = asdict(scheme)
    out.update(weight_range=scheme.weight_range.value, act_range=scheme.act_range.value)
    return out


def scheme_from_dict(data: dict[str, Any]) -> QuantScheme:
    known = {f.name for f in fields(QuantScheme)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown quantization scheme settings {unknown}; known: {sorted(known)}")
    values = dict(data)
    for key in ("weight_range", "act_range"):
        if key in values:
            values[key] = RangeMethod(values[key])
    return QuantScheme(**values)
