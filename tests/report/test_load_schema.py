"""Run files read by the report go through the schema: a damaged file names the file and the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from mixq.errors import RunDirectoryError
from mixq.report import load_run


def _edit(path: Path, change: Callable[[Any], Any]) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text())), allow_nan=True))


@pytest.mark.parametrize("name, change, message", [
    ("graph.json", lambda d: [{**d[0], "macs": "many"}, *d[1:]], r"graph.json has invalid fields: 0.macs"),
    ("graph.json", lambda d: [{**d[0], "candidates": ["w99a8"]}, *d[1:]], r"0.candidates.0: weight bit-width 99"),
    ("sensitivity.json", lambda d: [{**d[0], "sqnr_db": float("nan")}, *d[1:]], r"0.sqnr_db: NaN is not a valid"),
    ("timings.json", lambda d: {**d, "search_s": -1}, r"timings.json has invalid fields: search_s"),
    ("config.json", lambda d: [d], r"config.json has invalid fields: .*valid dictionary"),
    ("evaluations.json", lambda d: {"x": 1}, r"evaluations.json has invalid fields"),
    ("curve.json", lambda d: [[1]], r"curve.json has invalid fields: 0"),
])
def test_a_damaged_run_file_names_file_and_field(run_copy: Path, name: str, change: Callable[[Any], Any],
                                                 message: str) -> None:
    _edit(run_copy / name, change)
    with pytest.raises(RunDirectoryError, match=message):
        load_run(run_copy)


def test_non_utf8_run_file(run_copy: Path) -> None:
    (run_copy / "timings.json").write_bytes(b'{"\xff": 1}')
    with pytest.raises(RunDirectoryError, match="timings.json is not UTF-8 text.*run the same `mixq search`"):
        load_run(run_copy)
