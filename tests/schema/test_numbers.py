"""Numeric flags: NaN, infinity, zero and negative values are refused with the flag's name and an example."""

from __future__ import annotations

import math

import pytest

from mixq.config import SearchConfig
from mixq.errors import ConfigError
from mixq.schema.numbers import MAX_SEED, positive_finite, seed
from mixq.sensitivity.sqnr import SqnrConfig


@pytest.mark.parametrize("value", [math.inf, math.nan, 0.0, -1.0, True, "5"])
def test_positive_finite_refuses(value: object) -> None:
    with pytest.raises(ConfigError, match="--cache-mb must be a finite number above 0.*e.g. --cache-mb 4096"):
        positive_finite(value, "--cache-mb", "4096")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-1, MAX_SEED + 1, True])
def test_seed_out_of_range(value: int) -> None:
    with pytest.raises(ConfigError, match=f"--seed must be a whole number from 0 to {MAX_SEED}"):
        seed(value)


@pytest.mark.parametrize("kwargs, flag", [({"cache_mb": math.inf}, "--cache-mb"), ({"cache_mb": math.nan}, "--cache-mb"),
                                          ({"seed": -1, "solver": "evolution"}, "--seed"),
                                          ({"time_limit_s": math.inf}, "--time-limit")])
def test_search_config_checks_ranges(kwargs: dict[str, object], flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        SearchConfig(**kwargs)  # type: ignore[arg-type]


def test_sqnr_config_refuses_nan() -> None:
    with pytest.raises(ConfigError, match="cache_mb must be a finite number"):
        SqnrConfig(cache_mb=math.nan)
    assert positive_finite(1, "--x", "1") == 1.0 and seed(MAX_SEED) == MAX_SEED
