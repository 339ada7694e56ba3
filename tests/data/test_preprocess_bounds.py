"""Preprocess sizes are bounded: a typo such as resize=99999999 is a ConfigError, not a 'broken image'."""

from __future__ import annotations

import pytest

from mixq.data.preprocess import MAX_SIDE, Preprocess
from mixq.errors import ConfigError


@pytest.mark.parametrize("spec, what", [("resize=99999999 crop=224", "resize=99999999"),
                                        ("resize=256 crop=99999x3", "crop=99999"),
                                        (f"resize={MAX_SIDE + 1}x8", f"resize={MAX_SIDE + 1}")])
def test_sizes_above_the_bound_are_refused(spec: str, what: str) -> None:
    with pytest.raises(ConfigError, match=f"{what} is larger than {MAX_SIDE} pixels a side"):
        Preprocess.parse(spec)


def test_the_bound_itself_is_fine() -> None:
    assert Preprocess(resize=MAX_SIDE, crop=(MAX_SIDE, 8)).resize == MAX_SIDE
