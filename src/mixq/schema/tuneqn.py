"""TuneQn's ``tuneqn.json`` (its report and resume checkpoint) as typed fields."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from mixq.schema.read import SchemaModel
from mixq.schema.types import FiniteFloat, NonNegativeInt, NotNaN


class LayerErrorFile(SchemaModel):
    group: str
    qdq_err: NotNaN
    xmodel_err: NotNaN
    score: NotNaN = 0.0
    local_sqnr_db: dict[str, NotNaN] = Field(default_factory=dict)


class IterationFile(SchemaModel):
    k: NonNegativeInt
    excluded: list[str]
    quality: dict[str, NotNaN]
    costs: dict[str, FiniteFloat]
    measured: dict[str, NotNaN] = Field(default_factory=dict)


class TuneQnStateFile(SchemaModel):
    key: dict[str, Any]
    errors: list[LayerErrorFile]
    ranking: list[str]
    iterations: list[IterationFile] = Field(default_factory=list)
    fronts: list[list[NonNegativeInt]] = Field(default_factory=list)
