"""Property tests over plans: any JSON (or any bytes) handed in as a plan is a plan or a ConfigError."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from fuzzkit import examples
from hypothesis import example, given
from hypothesis import strategies as st

from mixq.errors import MixqError
from mixq.plan import Plan

FAST = examples(150)

BASE: dict[str, Any] = {
    "schema_version": 2, "mixq_version": "0.1.0",
    "assignment": {"conv1": "w8a8", "conv2": "w4a8", "head.fc": "w8a16"},
    "precision_counts": {"w8a8": 1, "w4a8": 1, "w8a16": 1},
    "costs": {"bops": {"value": 22454272.0, "unit": "BOPs", "ratio": 0.5},
              "size": {"value": 2240.0, "unit": "bytes", "ratio": 0.27}},
    "predicted_sqnr_db": 42.1, "quality": {"sqnr_db": 41.0, "agreement": 1.0}, "budgets": ["bops<=0.5"],
    "scheme": {"weight_per_channel": True, "weight_symmetric": True, "act_symmetric": False, "weight_range": "mse",
               "act_range": "mse", "percentile": 99.99, "act_dynamic": False},
    "num_samples": 8,
    "provenance": {"mixq_version": "0.1.0", "model_fingerprint": "9a4b18cfa0c84ba5", "seed": 0,
                   "strategy": "two-phase", "solver": "greedy", "hardware": None, "restrictions": [],
                   "solver_details": {}},
}

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**25, 10**25) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
#: Every field of a plan, as a path of keys into BASE.
PATHS = [(k,) for k in BASE] + [("assignment", "conv1"), ("costs", "bops"), ("costs", "bops", "ratio"),
                                ("costs", "bops", "value"), ("scheme", "weight_range"), ("scheme", "percentile"),
                                ("provenance", "seed"), ("provenance", "restrictions"),
                                ("provenance", "solver_details"), ("quality", "agreement")]


def _replaced(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(BASE))
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


def _check_plan(plan: Plan) -> None:
    """An accepted plan is well typed: it writes back and reads back the same."""
    assert Plan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


@FAST
@given(st.dictionaries(st.sampled_from(["conv1", "conv2", "head.fc"]),
                       st.sampled_from(["w4a8", "w8a8", "w8a16", "w2a4", "fp32"]), min_size=1))
def test_well_typed_plans_read_back_the_same(assignment: dict[str, str]) -> None:
    _check_plan(Plan.from_dict({**BASE, "assignment": assignment}))


@FAST
@given(st.sampled_from(PATHS), JSON)
@example(("assignment",), [])
@example(("assignment",), None)
@example(("assignment", "conv1"), 8)
@example(("schema_version",), "2")
@example(("provenance",), "x")
def test_plan_with_any_field_replaced_is_a_plan_or_a_user_error(path: tuple[str, ...], value: Any) -> None:
    try:
        plan = Plan.from_dict(_replaced(path, value))
    except MixqError:
        return
    _check_plan(plan)


def _mutations() -> st.SearchStrategy[bytes]:
    good = json.dumps(BASE).encode()
    flips = st.lists(st.tuples(st.integers(0, len(good) - 1), st.integers(0, 255)), min_size=1, max_size=4).map(
        lambda edits: bytes(_flip(good, edits)))
    return st.one_of(st.binary(max_size=64), st.integers(0, len(good)).map(lambda n: good[:n]), flips,
                     JSON.map(lambda v: json.dumps(v).encode()))


def _flip(data: bytes, edits: list[tuple[int, int]]) -> bytearray:
    out = bytearray(data)
    for index, value in edits:
        out[index] = value
    return out


@FAST
@given(_mutations())
@example(b"\xff\xfe{}")
@example(json.dumps({**BASE, "assignment": None}).encode())
def test_any_bytes_as_plan_file_are_a_plan_or_a_user_error(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "plan.json"
        path.write_bytes(content)
        try:
            plan = Plan.load(path)
        except MixqError:
            return
        _check_plan(plan)


def test_plan_path_that_is_a_directory_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "plan.json").mkdir()
    with pytest.raises(MixqError):
        Plan.load(tmp_path)
