"""Caches mixq reads back (measured kernel latencies, pair noise): a cache that fails its schema is ignored
with a warning and measured again, never trusted."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from mixq.schema.read import SchemaModel
from mixq.schema.types import NonNegativeInt, NotNaN, PrecisionText

PositiveMs = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
Noise = Annotated[NotNaN, Field(ge=0.0)]


class LatencyEntryFile(SchemaModel):
    group: str
    precision: PrecisionText
    ms: PositiveMs
    kernel: str
    ops: list[str] = Field(default_factory=list)


class LatencyCacheFile(SchemaModel):
    format: int
    key: dict[str, Any]
    entries: list[LatencyEntryFile] = Field(default_factory=list)


class SingleNoiseFile(SchemaModel):
    group: str
    precision: PrecisionText
    noise: Noise


class PairNoiseFile(SchemaModel):
    groups: Annotated[list[str], Field(min_length=2, max_length=2)]
    precisions: Annotated[list[PrecisionText], Field(min_length=2, max_length=2)]
    noise: Noise


class PairCacheFile(SchemaModel):
    n_samples: NonNegativeInt = 0
    single: list[SingleNoiseFile]
    joint: list[PairNoiseFile]
