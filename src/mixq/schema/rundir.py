"""Run-directory files mixq reads back on resume or for a report: each line or file as typed fields.

Nothing read back is trusted: a measurement that is NaN, negative or of the wrong type is refused here
(and re-measured by the caller) rather than steering a search.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from mixq.schema.read import SchemaModel
from mixq.schema.types import NonNegativeInt, NotNaN, PositiveInt, PrecisionText

NonNegativeFinite = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class MeasurementLine(SchemaModel):
    """One line of ``measurements.jsonl``: a group's noise-to-signal sum over one calibration chunk."""

    chunk: NonNegativeInt
    group: str
    precision: PrecisionText
    ratio_sum: NonNegativeFinite
    count: PositiveInt


class GroupRecord(SchemaModel):
    """One quantizer group in ``graph.json``."""

    id: str
    ops: list[str] = Field(default_factory=list)
    kinds: list[str] = Field(default_factory=list)
    macs: NonNegativeInt = 0
    weight_params: NonNegativeInt = 0
    candidates: list[PrecisionText] = Field(default_factory=list)


class SensitivityRecord(SchemaModel):
    """One row of ``sensitivity.json``: a group's output SQNR at one precision (infinite for float32)."""

    group: str
    precision: PrecisionText
    sqnr_db: NotNaN


#: ``timings.json``: seconds per stage.
Timings = dict[str, Annotated[float, Field(ge=0.0, allow_inf_nan=False)]]
#: ``config.json``: the resolved settings (read as a mapping; the report shows it as written).
ConfigFile = dict[str, Any]
#: ``evaluations.json`` and ``curve.json``: one object per row (the curve's rows are checked by ParetoCurve).
Records = list[dict[str, Any]]
