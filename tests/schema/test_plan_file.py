"""plan.json through the schema: wrong types and undecodable bytes are ConfigErrors naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mixq.errors import ConfigError
from mixq.plan import Plan

GOOD = {"schema_version": 2, "assignment": {"conv1": "w8a8"}, "costs": {"bops": {"value": 1.0, "unit": "BOPs",
                                                                               "ratio": 0.5}},
        "predicted_sqnr_db": "Infinity", "provenance": {"seed": 3}}


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data).replace('"Infinity"', "Infinity"))
    return path


def test_a_good_plan_loads(tmp_path: Path) -> None:
    plan = Plan.load(_write(tmp_path, GOOD))
    assert str(plan.assignment["conv1"]) == "w8a8" and plan.costs["bops"].ratio == 0.5
    assert plan.predicted_sqnr_db == float("inf") and plan.provenance.seed == 3


@pytest.mark.parametrize("change, message", [
    ({"assignment": ["conv1"]}, "assignment: input should be a valid dictionary"),
    ({"assignment": None}, "assignment: input should be a valid dictionary"),
    ({"assignment": {"conv1": 8}}, "assignment.conv1: a precision is text"),
    ({"assignment": {"conv1": "w99a8"}}, "assignment.conv1: weight bit-width 99"),
    ({"schema_version": "2"}, "schema_version must be a whole number"),
    ({"provenance": "mine"}, "provenance: input should be a valid dictionary"),
    ({"costs": {"bops": {"value": "1", "unit": "BOPs", "ratio": 0.5}}}, "costs.bops.value"),
    ({"num_samples": -1}, "num_samples: input should be greater than 0"),
    ({"scheme": {"bogus": 1}}, "scheme: unknown quantization scheme settings"),
])
def test_wrong_types_name_the_field(tmp_path: Path, change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Plan.load(_write(tmp_path, {**GOOD, **change}))


def test_non_utf8_plan_and_plan_json_directory(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_bytes(b'{"assignment": {"\xff": "w8a8"}}')
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        Plan.load(path)
    run = tmp_path / "run"
    (run / "plan.json").mkdir(parents=True)
    with pytest.raises(ConfigError, match="plan.json is a directory, not a file"):
        Plan.load(run)
    with pytest.raises(ConfigError, match="plan.json is a directory, not a file"):
        Plan.load(run / "plan.json")
