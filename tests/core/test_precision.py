from __future__ import annotations

import pytest

from mixq.core.precision import Precision, QuantScheme, RangeMethod, parse_candidates
from mixq.errors import ConfigError


@pytest.mark.parametrize("text", ["w4a8", "w8a8", "w8a16", "w2a16", "fp16", "fp32"])
def test_parse_round_trips(text: str) -> None:
    assert str(Precision.parse(text)) == text


def test_parse_is_case_and_space_insensitive() -> None:
    assert Precision.parse(" W4A8 ") == Precision(4, 8)
    assert Precision.parse("FP16") == Precision(16, 16, is_float=True)


def test_bits_per_mac_is_the_bops_factor() -> None:
    assert Precision.parse("w4a8").bits_per_mac == 32
    assert Precision.parse("w8a8").bits_per_mac == 64
    assert Precision.parse("w8a16").bits_per_mac == 128
    assert Precision.parse("fp16").bits_per_mac == 256


def test_only_fp32_keeps_float32() -> None:
    assert Precision.parse("fp32").keeps_float32
    assert not Precision.parse("fp16").keeps_float32
    assert not Precision.parse("w8a16").keeps_float32


@pytest.mark.parametrize("text", ["int8", "w4", "a8w4", "fp8", ""])
def test_unknown_spelling_is_a_config_error_with_examples(text: str) -> None:
    with pytest.raises(ConfigError, match="w4a8"):
        Precision.parse(text)


@pytest.mark.parametrize("text", ["w1a8", "w8a32", "w0a0"])
def test_out_of_range_bits_point_to_float(text: str) -> None:
    with pytest.raises(ConfigError, match="fp16 or fp32"):
        Precision.parse(text)


def test_float_precision_must_be_fp16_or_fp32() -> None:
    with pytest.raises(ConfigError, match="fp16 or fp32"):
        Precision(16, 8, is_float=True)


def test_parse_candidates_keeps_order_and_drops_duplicates() -> None:
    parsed = parse_candidates("w8a16, w4a8,,w8a16,fp16")
    assert [str(p) for p in parsed] == ["w8a16", "w4a8", "fp16"]
    assert parse_candidates([Precision(8, 8), "w8a8", "w4a8"]) == (Precision(8, 8), Precision(4, 8))


def test_empty_candidate_list_says_how_to_fix() -> None:
    with pytest.raises(ConfigError, match="--candidates"):
        parse_candidates(" , ")


def test_quant_scheme_coerces_range_names_and_checks_percentile() -> None:
    scheme = QuantScheme(weight_range="minmax", act_range="percentile")  # type: ignore[arg-type]
    assert scheme.weight_range is RangeMethod.MINMAX and scheme.act_range is RangeMethod.PERCENTILE
    with pytest.raises(ConfigError, match="percentile"):
        QuantScheme(percentile=40.0)
    with pytest.raises(ValueError):
        QuantScheme(weight_range="median")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"weight_per_channel": "yes"}, "weight_per_channel must be true or false, got 'yes'"),
        ({"act_dynamic": 1}, "act_dynamic must be true or false, got 1"),
        ({"weight_symmetric": None}, "weight_symmetric must be true or false"),
        ({"percentile": "99.9"}, r"percentile must be a number in \(50, 100\], e.g. 99.99, got '99.9'"),
        ({"percentile": True}, "percentile must be a number"),
    ],
)
def test_scheme_refuses_wrong_value_types(data: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        QuantScheme.from_dict(data)


def test_scheme_accepts_numpy_numbers_and_ints() -> None:
    import numpy as np

    assert QuantScheme(percentile=np.float32(99.5)).percentile == pytest.approx(99.5)
    assert QuantScheme(percentile=100).percentile == 100
