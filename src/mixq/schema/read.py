"""Reading a file into typed values: bytes to text to JSON to a pydantic model, every failure a MixqError."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from mixq.errors import ConfigError, MixqError

M = TypeVar("M", bound=BaseModel)

#: At most this many violations are listed in one message (the rest are counted).
MAX_LISTED = 5


class SchemaModel(BaseModel):
    """Base of mixq's file schemas: strict types, frozen values; unknown keys are ignored (a newer mixq
    may add fields), unless a model says ``extra="forbid"``."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


def read_text(path: str | Path, what: str, error: type[MixqError] = ConfigError, fix: str = "") -> str:
    """The file's text; missing, a directory, unreadable or not UTF-8 is ``error`` naming ``what`` and ``fix``."""
    path = Path(path)
    tail = f"; {fix}" if fix else ""
    if path.is_dir():
        raise error(f"{what} {path} is a directory, not a file{tail}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"cannot read {what} {path}: it does not exist{tail}") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}{tail}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path} is not UTF-8 text (byte {exc.start} cannot be decoded); "
                    f"save it as UTF-8{tail}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json(text: str, source: str, error: type[MixqError] = ConfigError, fix: str = "",
               nonfinite: bool = True) -> Any:
    """JSON text to Python values; syntax errors are ``error`` naming ``source``. mixq writes ``Infinity``
    (a float32 group's SQNR) and ``NaN`` (an unmeasured quality), so they are read unless ``nonfinite`` is
    False; a schema field that must be finite says so (``FiniteFloat``)."""
    tail = f"; {fix}" if fix else ""
    try:
        return json.loads(text) if nonfinite else json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise error(f"{source} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}){tail}") from None
    except (ValueError, RecursionError) as exc:
        raise error(f"{source} is not valid JSON ({exc}){tail}") from None


def read_json(path: str | Path, what: str, error: type[MixqError] = ConfigError, fix: str = "") -> Any:
    """A JSON file's values (see :func:`read_text` and :func:`parse_json`)."""
    return parse_json(read_text(path, what, error, fix), f"{what} {path}", error, fix)


def _where(loc: tuple[int | str, ...]) -> str:
    # a dict key's own violation is located as ``kernels.convolution.[key]``: the key's path says it
    return ".".join(str(part) for part in loc if part != "[key]") or "(top level)"


def describe(exc: ValidationError, limit: int = MAX_LISTED) -> str:
    """Violations as ``field: problem (got value)``, separated by ``; ``."""
    items = []
    for err in exc.errors(include_url=False)[:limit]:
        got = repr(err.get("input"))
        got = got if len(got) <= 40 else got[:37] + "..."
        msg = re.sub(r" or instance of \w+", "", err['msg'].removeprefix('Value error, '))  # no class names
        msg = msg[:1].lower() + msg[1:] if msg.split(' ', 1)[0][1:].islower() else msg  # keep NaN, SQNR
        items.append(f"{_where(err['loc'])}: {msg} (got {got})")
    more = exc.error_count() - limit
    return "; ".join(items) + (f"; and {more} more" if more > 0 else "")


def validate(model: type[M], data: Any, source: str, error: type[MixqError] = ConfigError, fix: str = "") -> M:
    """``data`` as ``model``; every violation named by its field in one ``error`` that names ``source`` and ``fix``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        tail = f"; {fix}" if fix else ""
        raise error(f"{source} has invalid fields: {describe(exc)}{tail}") from None


def validate_as(kind: Any, data: Any, source: str, error: type[MixqError] = ConfigError, fix: str = "") -> Any:
    """``data`` as any type pydantic knows (``list[Model]``, ``dict[str, float]``), strictly; errors as in
    :func:`validate`."""
    try:
        return TypeAdapter(kind, config=ConfigDict(strict=True)).validate_python(data)
    except ValidationError as exc:
        tail = f"; {fix}" if fix else ""
        raise error(f"{source} has invalid fields: {describe(exc)}{tail}") from None
