from __future__ import annotations

import pytest

from mixq.core.budget import CostBudget, CostUnit, QualityMetric, QualityTarget, parse_budget
from mixq.core.quality import Quality
from mixq.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bops<=0.375", CostBudget("bops", 0.375, CostUnit.RATIO)),
        ("bops <= 37.5%", CostBudget("bops", 0.375, CostUnit.RATIO)),
        ("size<=30%", CostBudget("size", 0.30, CostUnit.RATIO)),
        ("size<=2.5", CostBudget("size", 2.5e6, CostUnit.ABSOLUTE)),
        ("size<=2.5MB", CostBudget("size", 2.5e6, CostUnit.ABSOLUTE)),
        ("agreement>=0.99", QualityTarget(QualityMetric.AGREEMENT, 0.99)),
        ("agreement>=99%", QualityTarget(QualityMetric.AGREEMENT, 0.99)),
        ("sqnr>=25", QualityTarget(QualityMetric.SQNR, 25.0)),
        ("drop<=1", QualityTarget(QualityMetric.DROP, 1.0)),
    ],
)
def test_parse_budget(text: str, expected: object) -> None:
    assert parse_budget(text) == expected


@pytest.mark.parametrize("text", ["bops<=0.375", "size<=30%", "size<=2.5MB", "agreement>=0.99", "drop<=1"])
def test_str_reparses_to_the_same_budget(text: str) -> None:
    budget = parse_budget(text)
    assert parse_budget(str(budget)) == budget


def test_absolute_resolves_ratios_against_the_reference() -> None:
    assert parse_budget("bops<=0.5").absolute(1000.0) == 500.0  # type: ignore[union-attr]
    assert parse_budget("size<=2").absolute(1e9) == 2e6  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("bops=0.5", "budgets are bops<=R"),
        ("bops<=abc", "budgets are"),
        ("speed<=3", "unknown budget 'speed'"),
        ("bops>=0.5", "write bops<=0.5"),
        ("agreement<=0.9", "write agreement>=0.9"),
        ("bops<=-1", "negative"),
        ("agreement>=150%", "at most 1"),
        ("bops<=1.2.3", "cannot read the number"),
        # part S: a fraction is a percentage only when written with %, and numbers are finite
        ("agreement>=1.5", r"fraction in \[0, 1\].*write 99.5% or 0.995"),
        ("agreement>=99", "write 99.5% or 0.995"),
        ("bops<=1e999", "not a finite number: write e.g. bops<=0.375"),
        ("sqnr>=1e400", "not a finite number"),
        ("bops<=0.5MB", "only size and memory take megabytes"),
        ("sqnr>=30%", "sqnr takes no percent sign"),
    ],
)
def test_bad_budgets_are_config_errors_that_teach_the_syntax(text: str, hint: str) -> None:
    with pytest.raises(ConfigError, match=hint):
        parse_budget(text)


def test_quality_targets_read_their_metric() -> None:
    quality = Quality(n_samples=10, sqnr_db=21.0, agreement=0.98, top1=0.70)
    float_quality = Quality(n_samples=10, top1=0.705)
    assert parse_budget("sqnr>=20").met(quality)  # type: ignore[union-attr]
    assert not parse_budget("agreement>=0.99").met(quality)  # type: ignore[union-attr]
    drop = parse_budget("drop<=1")
    assert drop.value(quality, float_quality) == pytest.approx(0.5)  # type: ignore[union-attr]
    assert drop.met(quality, float_quality)  # type: ignore[union-attr]
    assert drop.needs_labels  # type: ignore[union-attr]


def test_unmeasurable_target_says_what_it_needs() -> None:
    with pytest.raises(ConfigError, match="labels"):
        parse_budget("drop<=1").met(Quality(n_samples=3, top1=0.5))  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="classifier"):
        parse_budget("agreement>=0.9").met(Quality(n_samples=3, sqnr_db=30.0))  # type: ignore[union-attr]
