"""A hardware description file (YAML/TOML, see :mod:`mixq.hardware.spec`) as typed fields.

``mixq.hardware.Hardware`` is built from :class:`HardwareFile`; every violation is named by its field
(``kernels.convolution``, ``cost.latency.default.w8a8``) with the known op kinds or the fix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, PlainValidator, field_validator, model_validator

from mixq.core.graph import OpKind
from mixq.core.precision import Precision, parse_candidates
from mixq.core.restrictions import parse_restrictions
from mixq.errors import ConfigError
from mixq.schema.read import SchemaModel
from mixq.schema.types import PrecisionText

#: The key for op kinds a description does not list.
DEFAULT_KEY = "default"
KINDS = ", ".join(k.value for k in OpKind)
TOP_KEYS = ("name", "description", "kernels", "cost", "restrictions")


def _kind(key: str) -> str:
    if key != DEFAULT_KEY and key not in {k.value for k in OpKind}:
        raise ValueError(f"unknown op kind {key!r}; use {KINDS} or {DEFAULT_KEY}")
    return key


def _precisions(raw: Any) -> tuple[Precision, ...]:
    if isinstance(raw, str):
        items: list[Any] = raw.split(",")
    elif isinstance(raw, list):
        items = raw
    else:
        raise ValueError(f"a list of precisions such as [w8a8, fp32] is needed, not {type(raw).__name__}")
    if not all(isinstance(item, str) for item in items):
        raise ValueError("precisions are text such as [w8a8, fp32]")
    try:
        return parse_candidates(items)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


def _time_per_mac(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError("must be positive (a finite time per MAC, e.g. 1.0)")
    return float(value)


def _restrictions(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(r, str) for r in raw):
        raise ValueError("`restrictions` must be a list of strings such as [\"first,last>=w8a8\"]")
    try:
        parse_restrictions(raw)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return tuple(raw)


def _not_empty(table: dict[str, Any]) -> dict[str, Any]:
    if not table:
        raise ValueError("`cost.latency` maps op kinds to {precision: time per MAC}; it is empty")
    return table


def _only(data: Any, known: tuple[str, ...], what: str, hint: str = "") -> Any:
    if isinstance(data, Mapping):  # a plug-in may build its description as any mapping
        data = dict(data)
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be a mapping with {', '.join(known)}, not {type(data).__name__}")
    unknown = sorted(str(k) for k in set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown keys {unknown}; known: {', '.join(known)}{hint}")
    return data


#: An op kind (``conv``, ``matmul`` ...) or ``default``.
KindKey = Annotated[str, AfterValidator(_kind)]
#: A list of precisions (``[w8a8, fp32]``; a comma-separated string also works), parsed and deduplicated.
PrecisionList = Annotated[tuple[Precision, ...], PlainValidator(_precisions)]
#: A kernel's relative time per MAC: a positive finite number.
TimePerMac = Annotated[float, PlainValidator(_time_per_mac)]
#: Restriction rules, each one checked to parse.
RestrictionList = Annotated[tuple[str, ...], PlainValidator(_restrictions)]
LatencyTable = Annotated[dict[KindKey, dict[PrecisionText, TimePerMac]], AfterValidator(_not_empty)]


class CostFile(SchemaModel):
    """``cost:``: only ``latency`` (bops and size are always available)."""

    model_config = ConfigDict(extra="forbid")

    latency: LatencyTable | None = None

    @model_validator(mode="before")
    @classmethod
    def _known(cls, data: Any) -> Any:
        return _only({} if data is None else data, ("latency",), "`cost`",
                     " (bops and size are always available)")


class HardwareFile(SchemaModel):
    """A hardware description; unknown keys are refused (a typo must not silently mean "any kernel")."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    description: str = ""
    kernels: dict[KindKey, PrecisionList] | None = None
    cost: CostFile = Field(default_factory=CostFile)
    restrictions: RestrictionList = ()

    @model_validator(mode="before")
    @classmethod
    def _known(cls, data: Any) -> Any:
        data = _only(data, TOP_KEYS, "a hardware description")
        data = dict(data)  # an empty key (``cost:``) means its default, as an absent one does
        if data.get("kernels") == "any":
            data["kernels"] = None
        for key, empty in (("description", ""), ("cost", {}), ("restrictions", [])):
            if data.get(key) is None:
                data[key] = empty
        return data

    @field_validator("kernels", mode="before")
    @classmethod
    def _kernels_mapping(cls, raw: Any) -> Any:
        if raw is not None and not isinstance(raw, dict):
            raise ValueError(f"`kernels` maps op kinds ({KINDS}, {DEFAULT_KEY}) to lists of precisions, "
                             "or is `any`")
        return raw
