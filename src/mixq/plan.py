"""A plan: the chosen assignment with its costs, predicted and measured quality, and provenance."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixq.core.assignment import Assignment
from mixq.atomic import write_json
from mixq.errors import ConfigError
from mixq.version import __version__

PLAN_SCHEMA = 1


@dataclass(frozen=True)
class Plan:
    """What ``search`` returns and ``eval``/``export`` consume.

    Attributes:
        assignment: precision per quantizer group.
        costs: totals and ratios (``bops``, ``bops_ratio``, ``weight_bytes``, ``size_ratio``).
        predicted_sqnr_db: phase 1's additive-noise prediction for this assignment.
        quality: measured quality on the search's evaluation data, when it was measured.
        budgets: the budget expressions the plan was chosen for.
        provenance: mixq version, model name and fingerprint, seed, strategy.
    """

    assignment: Assignment
    costs: Mapping[str, float]
    predicted_sqnr_db: float
    quality: Mapping[str, float] = field(default_factory=dict)
    budgets: tuple[str, ...] = ()
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": PLAN_SCHEMA,
            "mixq_version": __version__,
            "assignment": self.assignment.to_dict(),
            "precision_counts": self.assignment.counts(),
            "costs": dict(self.costs),
            "predicted_sqnr_db": self.predicted_sqnr_db,
            "quality": dict(self.quality),
            "budgets": list(self.budgets),
            "provenance": dict(self.provenance),
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        path = Path(path)
        if path.is_dir():
            path = path / "plan.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"plan file {path} does not exist; pass RUN/plan.json written by `mixq search`") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read plan {path}: {exc}") from None
        if not isinstance(data, dict) or "assignment" not in data:
            raise ConfigError(f"{path} is not a mixq plan (no 'assignment')")
        if data.get("schema_version", 0) > PLAN_SCHEMA:
            raise ConfigError(f"{path} was written by a newer mixq (schema {data['schema_version']}); upgrade mixq")
        return cls(
            assignment=Assignment.from_dict(data["assignment"]),
            costs=data.get("costs", {}),
            predicted_sqnr_db=float(data.get("predicted_sqnr_db", float("nan"))),
            quality=data.get("quality", {}),
            budgets=tuple(data.get("budgets", ())),
            provenance=data.get("provenance", {}),
        )
