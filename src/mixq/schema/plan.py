"""``plan.json``, formats 1 and 2, as typed fields (``mixq.plan.Plan`` is built from these)."""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field

from mixq.schema.read import SchemaModel
from mixq.schema.types import AnyFloat, FiniteFloat, PositiveInt, PrecisionText, SchemeDict


class CostRecordFile(SchemaModel):
    """One cost model's total in a format-2 plan."""

    value: FiniteFloat
    unit: str
    ratio: FiniteFloat


class ProvenanceFile(SchemaModel):
    """Where the plan came from; format 1 also kept the scheme and calibration size here."""

    mixq_version: str | None = None
    model_fingerprint: str = ""
    seed: int = 0
    strategy: str = "two-phase"
    solver: str = "greedy"
    hardware: str | None = None
    restrictions: list[str] = Field(default_factory=list)
    solver_details: dict[str, Any] = Field(default_factory=dict)
    scheme: SchemeDict | None = None
    num_samples: PositiveInt | None = None


class PlanFile(SchemaModel):
    """The fields every plan format shares; ``costs`` is checked per format by the models below."""

    schema_version: int = 1
    assignment: dict[str, PrecisionText]
    predicted_sqnr_db: AnyFloat = math.nan
    quality: dict[str, int | AnyFloat | dict[str, int | AnyFloat]] = Field(default_factory=dict)  # nondeterminism: nested
    budgets: list[str] = Field(default_factory=list)
    provenance: ProvenanceFile = Field(default_factory=ProvenanceFile)


class PlanFileV1(PlanFile):
    """Format 1: flat cost keys (``bops``, ``bops_ratio``...)."""

    costs: dict[str, FiniteFloat] = Field(default_factory=dict)


class PlanFileV2(PlanFile):
    """Format 2: one record per cost model; scheme and calibration size as fields of their own."""

    costs: dict[str, CostRecordFile] = Field(default_factory=dict)
    scheme: SchemeDict | None = None
    num_samples: PositiveInt | None = None
    tuned: str | None = None  # the tuned quantizers' file, relative to the plan's folder (absent: none)
