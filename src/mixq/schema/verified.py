"""``verified.json``: the search's best plans exported, run in the runtime and judged as files.

Written by the judge step of a search (``mixq.verify``); read by ``mixq report`` to show each file's
measured latency and quality next to the search's predictions.
"""

from __future__ import annotations

from pydantic import Field

from mixq.schema.read import SchemaModel
from mixq.schema.types import AnyFloat, FiniteFloat, PrecisionText


class VerifiedFile(SchemaModel):
    """One exported file, timed interleaved with the others in the same run.

    ``quality`` is measured on the file run as given (``agreement``, ``sqnr_db``, ``top1`` with labels,
    ``drop``); ``predicted_quality`` is the search's simulation of the same plan on the same samples.
    """

    name: str  # "float", "uniform w8a8", "plan 0", ...
    kind: str  # "float" | "uniform" | "plan"
    file: str | None = None  # path relative to the run directory
    latency_ms: FiniteFloat
    predicted_latency_ms: FiniteFloat | None = None
    quality: dict[str, AnyFloat] = Field(default_factory=dict)
    predicted_quality: dict[str, AnyFloat] = Field(default_factory=dict)
    meets_target: bool | None = None
    assignment: dict[str, PrecisionText] | None = None


class VerifiedFileSet(SchemaModel):
    """What the judge did: which files, how timed, which plan it returned and why."""

    runtime: str
    threads: int | None = None
    rounds: int
    target: str | None = None
    files: list[VerifiedFile]
    chosen: str | None = None  # the name of the returned plan's file
    faster_than_float: bool
    note: str = ""
