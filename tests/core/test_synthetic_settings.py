"""The synthetic-data request and its settings are checked where they are made."""

from __future__ import annotations

import pytest

from mixq.core.synthetic import SyntheticData, SyntheticSettings
from mixq.errors import ConfigError


@pytest.mark.parametrize("kwargs, flag", [({"iterations": 0}, "--synthetic-iterations"),
                                          ({"iterations": 2.5}, "--synthetic-iterations"),
                                          ({"lr": 0.0}, "--synthetic-lr"), ({"lr": float("nan")}, "--synthetic-lr")])
def test_bad_settings_name_their_flag(kwargs: dict, flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        SyntheticSettings(**kwargs)


@pytest.mark.parametrize("shape", [(), (3, 0, 16), (3, -1), (3.0, 16, 16)])
def test_bad_shapes_are_refused(shape: tuple) -> None:
    with pytest.raises(ConfigError, match="input shape"):
        SyntheticData(shape)


def test_record_holds_every_setting() -> None:
    record = SyntheticData([3, 8, 8], SyntheticSettings(iterations=7, lr=0.3)).record(16, 5)  # type: ignore[arg-type]
    assert record == {"method": "zeroq", "samples": 16, "shape": [3, 8, 8], "seed": 5, "iterations": 7, "lr": 0.3}
