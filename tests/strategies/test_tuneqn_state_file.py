"""TuneQn's checkpoint read back through the schema: corrupt or mistyped state is a RunDirectoryError."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mixq.errors import RunDirectoryError
from mixq.strategies.tuneqn import Iteration, LayerError, TuneQnState, load_state

KEY = {"seed": 0}


def _state() -> TuneQnState:
    return TuneQnState(dict(KEY), [LayerError("conv1", 0.1, 0.2, 0.5, {"w8a8": math.inf})], ["conv1"],
                       [Iteration(1, ["conv1"], {"sqnr_db": 30.0}, {"size": 100.0})], [[0]])


def test_a_saved_state_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "tuneqn.json"
    _state().save(path)
    assert load_state(path, KEY) == _state()


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["iterations"][0].update(k="1"), "iterations.0.k"),
    (lambda d: d["errors"][0].update(qdq_err="NaN"), "errors.0.qdq_err"),
    (lambda d: d.update(ranking=None), "ranking"),
    (lambda d: d["iterations"][0]["costs"].update(size="Infinity"), "iterations.0.costs.size"),
])
def test_a_mistyped_state_names_the_field(tmp_path: Path, edit: object, field: str) -> None:
    path = tmp_path / "tuneqn.json"
    data = _state().to_dict()
    edit(data)  # type: ignore[operator]
    path.write_text(json.dumps(data).replace('"NaN"', "NaN").replace('"Infinity"', "Infinity"))
    with pytest.raises(RunDirectoryError, match=f"TuneQn state .* has invalid fields: {field}.*use a new --out"):
        load_state(path, KEY)


@pytest.mark.parametrize("content", [b"\xff\xfe", b"{", b"[]"])
def test_corrupt_state_is_a_run_directory_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "tuneqn.json"
    path.write_bytes(content)
    with pytest.raises(RunDirectoryError, match="tuneqn.json"):
        load_state(path, KEY)
