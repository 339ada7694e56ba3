"""Property tests over the string parsers: budgets, preprocessing specs, candidate lists.

Any text gives a value or a ConfigError (a user error), never another exception; what is accepted
reads back the same from its own string; and numbers are range-checked (finite, fractions in [0, 1]).
"""

from __future__ import annotations

import math

import pytest
from fuzzkit import examples
from hypothesis import example, given
from hypothesis import strategies as st

from mixq.core.budget import CostBudget, MemoryBudget, QualityTarget, parse_budget
from mixq.core.precision import parse_candidates
from mixq.data.preprocess import Preprocess
from mixq.errors import ConfigError

FAST = examples(150)

NAMES = st.sampled_from(["bops", "size", "latency", "memory", "drop", "sqnr", "agreement", "speed", ""])
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-10**30, max_value=10**30).map(str),
    st.sampled_from(["1e400", "-0", ".5", "5.", "1e-400", "nan", "inf", "1.5", "100", "1e23", "0x10", "--1", "."]),
)
SUFFIXES = st.sampled_from(["", "%", "mb", "MB", "ms", "s", " %"])
BUDGET_TEXT = st.one_of(
    st.builds(lambda n, op, v, s: f"{n}{op}{v}{s}", NAMES, st.sampled_from(["<=", ">=", "<", "=", ""]), NUMBERS,
              SUFFIXES),
    st.text(max_size=30),
)


def _budget_or_error(text: str) -> CostBudget | MemoryBudget | QualityTarget | None:
    try:
        return parse_budget(text)
    except ConfigError:
        return None


def _limit(budget: CostBudget | MemoryBudget | QualityTarget) -> float:
    return budget.threshold if isinstance(budget, QualityTarget) else budget.limit


@FAST
@given(BUDGET_TEXT)
def test_budget_text_gives_a_budget_or_a_config_error(text: str) -> None:
    budget = _budget_or_error(text)
    if budget is not None and math.isfinite(_limit(budget)):
        # what is accepted reads back from its own string (written with 6 significant digits, hence isclose)
        again = parse_budget(str(budget))
        assert type(again) is type(budget) and str(again) == str(budget)
        assert math.isclose(_limit(again), _limit(budget), rel_tol=1e-5, abs_tol=1e-12)


@FAST
@given(BUDGET_TEXT)
@example("bops<=1e400")
@example("drop<=1e309")
def test_accepted_budgets_are_finite_and_not_negative(text: str) -> None:
    budget = _budget_or_error(text)
    if budget is not None:
        assert math.isfinite(_limit(budget)) and _limit(budget) >= 0, (text, budget)


@FAST
@given(st.floats(min_value=1.0, max_value=1e6, exclude_min=True))
@example(1.5)
def test_agreement_over_one_without_percent_is_refused(value: float) -> None:
    with pytest.raises(ConfigError):
        parse_budget(f"agreement>={value!r}")


@FAST
@given(st.floats(min_value=0.0, max_value=100.0))
def test_agreement_percent_is_a_fraction(value: float) -> None:
    budget = parse_budget(f"agreement>={value!r}%")
    assert isinstance(budget, QualityTarget) and math.isclose(budget.threshold, value / 100.0)


SIZE = st.one_of(st.integers(min_value=-5, max_value=10**9).map(str),
                 st.builds(lambda h, w: f"{h}x{w}", st.integers(-2, 10**8), st.integers(-2, 10**8)),
                 st.sampled_from(["", "x", "1e3", "3x", "nan", "٣"]))
FLOATS = st.lists(st.floats(allow_nan=True, allow_infinity=True).map(repr), min_size=0, max_size=4).map(",".join)
ITEM = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["resize", "crop"]), SIZE),
    st.builds(lambda v: f"interpolation={v}", st.sampled_from(["bilinear", "BICUBIC", "nearest", "lanczos", "cubic", ""])),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["mean", "std"]), FLOATS),
    st.text(alphabet="=xresizcop ,0123456789", max_size=12),
)
SPEC = st.one_of(st.lists(ITEM, max_size=5).map(" ".join), st.text(max_size=40))


@FAST
@given(SPEC)
def test_preprocess_spec_gives_a_spec_or_a_config_error(spec: str) -> None:
    try:
        parsed = Preprocess.parse(spec)
    except ConfigError:
        return
    assert Preprocess.parse(str(parsed)) == parsed


@FAST
@given(st.sampled_from(["resize", "crop"]), st.integers(min_value=10**6, max_value=10**12))
@example("resize", 99999999)
def test_absurd_preprocess_sizes_are_refused(key: str, size: int) -> None:
    with pytest.raises(ConfigError):
        Preprocess.parse(f"{key}={size}")


PRECISION = st.one_of(
    st.builds(lambda w, a: f"w{w}a{a}", st.integers(-1, 40), st.integers(-1, 40)),
    st.sampled_from(["fp32", "FP32", "w8", "a8", "int8", "w8a8 ", " w4a8", "w4a16", "fp16", "w", ""]),
    st.text(max_size=6),
)
CANDIDATES = st.one_of(st.lists(PRECISION, max_size=6).map(",".join), st.text(max_size=30))


@FAST
@given(CANDIDATES)
def test_candidate_list_gives_precisions_or_a_config_error(text: str) -> None:
    try:
        parsed = parse_candidates(text)
    except ConfigError:
        return
    assert parsed and len(set(parsed)) == len(parsed)
    assert parse_candidates(",".join(str(p) for p in parsed)) == parsed
