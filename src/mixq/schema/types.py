"""Field types shared by the schemas: finite numbers, precisions and schemes checked where they are read."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, Field, PlainValidator

from mixq.core.precision import Precision, QuantScheme
from mixq.errors import ConfigError

#: A float that is neither NaN nor infinite (an int is accepted: JSON may write ``3.0`` as ``3``).
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
#: Any float, Infinity and NaN included (the SQNR of a float32 group is infinite).
AnyFloat = float
#: A float that may be infinite but is not NaN (a NaN read back would compare false with everything).
NotNaN = Annotated[float, AfterValidator(lambda v: _not_nan(v))]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveInt = Annotated[int, Field(gt=0)]


def _not_nan(value: float) -> float:
    if math.isnan(value):
        raise ValueError("NaN is not a valid value here")
    return value


def _precision(text: Any) -> Precision:
    if not isinstance(text, str):
        raise ValueError(f"a precision is text such as \"w4a8\" or \"fp16\", not {type(text).__name__}")
    try:
        return Precision.parse(text)
    except ConfigError as exc:  # pydantic reports a ValueError at the field's location
        raise ValueError(str(exc)) from None


def _scheme(data: Any) -> QuantScheme:
    if not isinstance(data, dict):
        raise ValueError(f"the scheme is an object of settings, not {type(data).__name__}")
    try:
        return QuantScheme.from_dict(dict(data))
    except (ConfigError, TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None


#: A precision written as text (``w4a8``, ``fp16``), parsed.
PrecisionText = Annotated[Precision, PlainValidator(_precision)]
#: A quantization scheme as ``QuantScheme.to_dict`` writes it, parsed.
SchemeDict = Annotated[QuantScheme, PlainValidator(_scheme)]