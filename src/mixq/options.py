"""A plug-in's settings from what a user typed: ``KEY=VALUE`` strings or a config file's mapping.

Every registry entry that takes settings declares them as a dataclass (``Entry.config``). Users set
its fields by name, without mixq knowing the plug-in: ``--solver-option curve_points=50`` on the
command line, ``solver_options: {curve_points: 50}`` in a config file. Values are converted to the
field's annotated type (int, float, bool, str), a nested settings dataclass is reached with a dotted
key (``ilp.time_limit_s=5``), and an unknown key is a ConfigError naming the known ones.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Toy:
...     steps: int = 3
...     rate: float = 0.5
>>> with_options(Toy(), {"steps": "7"}, "solver toy")
Toy(steps=7, rate=0.5)
>>> with_options(Toy(), {"step": 7}, "solver toy")
Traceback (most recent call last):
...
mixq.errors.ConfigError: solver toy has no setting 'step'; did you mean 'steps'? known: steps, rate
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from mixq.errors import ConfigError

C = TypeVar("C")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def parse_pairs(items: Iterable[str], flag: str) -> dict[str, str]:
    """``["a=1", "b.c=x"]`` -> ``{"a": "1", "b.c": "x"}``; a word without ``=`` is a ConfigError."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} takes KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def known_keys(config_class: type) -> list[str]:
    """The settings a user may give, nested dataclasses' as dotted keys."""
    keys: list[str] = []
    hints = typing.get_type_hints(config_class)
    for f in dataclasses.fields(config_class):
        kind = hints.get(f.name)
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            keys += [f"{f.name}.{sub}" for sub in known_keys(kind)]
        else:
            keys.append(f.name)
    return keys


def with_options(config: C, options: Mapping[str, Any], owner: str) -> C:
    """``config`` (a settings dataclass instance) with ``options`` set, each converted to its field's type.

    ``owner`` names whose settings these are in errors (``"solver ilp"``). A value the dataclass
    refuses in ``__post_init__`` is a ConfigError from the dataclass itself.
    """
    if not options:
        return config
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise ConfigError(f"{owner} takes no settings; drop {', '.join(sorted(options))}")
    nested: dict[str, dict[str, Any]] = {}
    direct: dict[str, Any] = {}
    hints = typing.get_type_hints(type(config))
    known = known_keys(type(config))
    for key, value in options.items():
        head, dot, rest = key.partition(".")
        if _is_settings(hints.get(key)):
            fields = ", ".join(k for k in known if k.startswith(f"{key}."))
            raise ConfigError(f"{owner}: {key!r} is a group of settings; set its fields ({fields})")
        if key not in known:
            raise ConfigError(_unknown(owner, key, known))
        if dot:
            nested.setdefault(head, {})[rest] = value
        else:
            direct[head] = _convert(value, hints.get(head), f"{owner} setting {key!r}")
    for head, sub in nested.items():
        direct[head] = with_options(getattr(config, head), sub, f"{owner} ({head})")
    return typing.cast(C, dataclasses.replace(config, **direct))


def _is_settings(kind: Any) -> bool:
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


def _unknown(owner: str, key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    return f"{owner} has no setting {key!r}{hint} known: {', '.join(known) or 'none'}"


def _convert(value: Any, kind: Any, where: str) -> Any:
    """A typed value as the annotation asks; strings (from the command line) are parsed."""
    optional = False
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        optional = len(args) < len(typing.get_args(kind))
        kind = args[0] if len(args) == 1 else Any
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", ""))):
        return None
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE | _FALSE:
                return text in _TRUE
            raise ValueError(value)
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if kind is str:
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be {_type_name(kind)}, got {value!r}") from None
    return value


def _type_name(kind: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number"}.get(kind, str(kind))
