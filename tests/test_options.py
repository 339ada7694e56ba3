"""Settings dataclasses from KEY=VALUE strings and config-file mappings."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from mixq.errors import ConfigError
from mixq.options import known_keys, parse_pairs, with_options


@dataclass(frozen=True)
class Inner:
    limit: float = 1.0


@dataclass(frozen=True)
class Outer:
    count: int = 1
    name: str = "a"
    verbose: bool = False
    cap: int | None = None
    inner: Inner = field(default_factory=Inner)


def test_pairs_are_split_once_at_the_first_equals_sign() -> None:
    assert parse_pairs(["a=1", " b.c = x=y "], "--opt") == {"a": "1", "b.c": "x=y"}
    with pytest.raises(ConfigError, match="--opt takes KEY=VALUE, got 'oops'"):
        parse_pairs(["oops"], "--opt")


def test_strings_become_the_annotated_types_and_dotted_keys_reach_nested_settings() -> None:
    got = with_options(Outer(), {"count": "4", "name": 7, "verbose": "yes", "cap": "none", "inner.limit": "2.5"}, "x")
    assert got == Outer(count=4, name="7", verbose=True, cap=None, inner=Inner(2.5))
    assert with_options(Outer(), {"cap": 3, "verbose": False}, "x") == Outer(cap=3)
    assert known_keys(Outer) == ["count", "name", "verbose", "cap", "inner.limit"]


@pytest.mark.parametrize(("options", "match"), [
    ({"count": "many"}, "x setting 'count' must be an integer, got 'many'"),
    ({"count": 1.5}, "must be an integer"),
    ({"verbose": "maybe"}, "must be true or false"),
    ({"inner.limt": 1}, ("no setting 'inner.limt'; did you mean 'inner.limit'\\? known: count, name, verbose, "
                         "cap, inner.limit")),
    ({"inner": 1}, "'inner' is a group of settings; set its fields \\(inner.limit\\)"),
    ({"count.x": 1}, "no setting 'count.x'"),
])
def test_bad_options_name_the_key_and_what_is_known(options: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        with_options(Outer(), options, "x")
