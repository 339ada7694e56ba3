"""``latency_model.json``: the measured pairwise latency model a search by deployed latency leaves behind.

Written as :meth:`mixq.cost.deployed.DeployedLatency.to_records`; read back by ``mixq report`` to draw each
group's predicted milliseconds and the transitions a plan pays. The records stay typed values here; the
report turns them into a ``DeployedLatency`` (the schema layer sits below the cost models).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from mixq.schema.read import SchemaModel
from mixq.schema.types import FiniteFloat, NonNegativeInt, PrecisionText

NonNegativeMs = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class UnaryLatency(SchemaModel):
    """One group's own kernel time at one precision."""

    group: str
    precision: PrecisionText
    ms: NonNegativeMs


class PairLatency(SchemaModel):
    """What the runtime pays on one edge for one (producer, consumer) pair of precisions. May be negative: the
    edge also carries how the consumer's precision shifts the producer's kernel from its mean (an int8 conv
    that fuses when its consumer is int8 is faster than its average over the probes)."""

    producer: str
    consumer: str
    precisions: Annotated[list[PrecisionText], Field(min_length=2, max_length=2)]
    ms: FiniteFloat


class LatencyModelFile(SchemaModel):
    """The whole model: fixed cost, the float reference, per-group and per-edge times."""

    runtime: str
    fixed_ms: FiniteFloat
    reference_ms: NonNegativeMs
    probes: NonNegativeInt = 0
    key: dict[str, Any] = Field(default_factory=dict)
    unary: list[UnaryLatency]
    pairs: list[PairLatency] = Field(default_factory=list)
