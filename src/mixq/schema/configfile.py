"""A ``--config-file``'s top level (YAML/TOML, parsed) as typed values, before argparse converts them.

The known keys depend on the command (they are its flag names), so the model is made per file by
:func:`config_model`: each key holds one scalar (number, text, true/false) or a list of scalars; a
KEY=VALUE flag (``solver_options``) may also hold a mapping. A wrong shape is one violation naming the
key and the fix; the flag's own conversion (integer, choice, registry name) comes after.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Annotated, Any

from pydantic import Field, PlainValidator, create_model

from mixq.errors import ConfigError
from mixq.schema.read import SchemaModel, validate

SCALARS = (str, int, float, bool)
_ONE = "one value (a number, text or true/false) or a list of them"


def _is_scalar(value: Any) -> bool:
    return isinstance(value, SCALARS)


def _flag_value(value: Any) -> Any:
    if _is_scalar(value):
        return value
    if isinstance(value, list):
        bad = next((item for item in value if not _is_scalar(item)), None)
        if bad is not None or any(item is None for item in value):
            raise ValueError(f"a list here holds single values, not {_kind(bad)}: write it as [16, 32] or "
                             "[\"a\", \"b\"]")
        return value
    raise ValueError(f"must be {_ONE}, not {_kind(value)}: write it as on the command line, e.g. "
                     "num_samples: 16 or budget: [\"bops<=0.5\"]")


def _options(value: Any) -> Any:
    if isinstance(value, Mapping):
        _check_options(value)
        return value
    try:
        return _flag_value(value)
    except ValueError:
        raise ValueError(f"must be a mapping of option names to values, e.g. {{curve_points: 50}} or "
                         f"{{ilp: {{time_limit_s: 5}}}}, or KEY=VALUE text; not {_kind(value)}") from None


def _check_options(mapping: Mapping[Any, Any], prefix: str = "") -> None:
    for key, item in mapping.items():
        if not isinstance(key, str):
            raise ValueError(f"option names are text, got {key!r}")
        if isinstance(item, Mapping):
            _check_options(item, f"{prefix}{key}.")
        elif item is not None and not _is_scalar(item):
            raise ValueError(f"option {prefix}{key} must be one value (a number, text or true/false), "
                             f"not {_kind(item)}")


def _kind(value: Any) -> str:
    if value is None:
        return "empty (null)"
    if isinstance(value, Mapping):
        return "a mapping"
    return "a list" if isinstance(value, list) else type(value).__name__


#: A flag's value: a scalar or a list of scalars.
FlagValue = Annotated[Any, PlainValidator(_flag_value)]
#: A KEY=VALUE flag's value: also a mapping of option names (nested: ``{ilp: {time_limit_s: 5}}``).
OptionsValue = Annotated[Any, PlainValidator(_options)]


def config_model(keys: Collection[str], mappings: Collection[str]) -> type[SchemaModel]:
    """A model with one field per key as the file spells it (``num-samples``); keys whose normalized name
    is in ``mappings`` may hold a mapping."""
    fields: dict[str, Any] = {}
    for index, key in enumerate(keys):
        kind = OptionsValue if key.replace("-", "_") in mappings else FlagValue
        fields[f"key{index}"] = (kind, Field(alias=key))
    return create_model("ConfigFile", __base__=SchemaModel, **fields)


def validate_config(data: Mapping[str, Any], mappings: Collection[str], source: str) -> None:
    """Every value of ``data`` (keys already known) has the shape its flag takes; else one ConfigError."""
    validate(config_model(list(data), mappings), dict(data), source, ConfigError)
