"""The schema layer's readers: every unreadable file is one user error naming the file and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixq.errors import ConfigError, RunDirectoryError
from mixq.schema import SchemaModel, read_json, read_text, validate
from mixq.schema.types import FiniteFloat


class _Point(SchemaModel):
    x: FiniteFloat
    n: int


def test_non_utf8_bytes_are_a_user_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_bytes(b'{"x": "\xff\xfe"}')
    with pytest.raises(ConfigError, match=r"a.json is not UTF-8 text \(byte 7.*save it as UTF-8; fix it"):
        read_text(path, "thing", fix="fix it")


def test_a_directory_or_missing_file_is_the_chosen_error(tmp_path: Path) -> None:
    with pytest.raises(RunDirectoryError, match="is a directory, not a file"):
        read_json(tmp_path, "run file", RunDirectoryError)
    with pytest.raises(ConfigError, match="does not exist"):
        read_json(tmp_path / "none.json", "plan")


def test_bad_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text('{"x": 1,\n "n": }')
    with pytest.raises(ConfigError, match=r"a.json is not valid JSON \(line 2, column 7"):
        read_json(path, "thing")


def test_every_violation_is_named_by_its_field() -> None:
    with pytest.raises(ConfigError) as info:
        validate(_Point, {"x": float("nan"), "n": True}, "f.json", fix="rewrite it")
    message = str(info.value)
    assert message.startswith("f.json has invalid fields: x: input should be a finite number (got nan)")
    assert "n: input should be a valid integer (got True)" in message and message.endswith("; rewrite it")


def test_strict_types_refuse_text_for_numbers() -> None:
    with pytest.raises(ConfigError, match="x: input should be a valid number"):
        validate(_Point, {"x": "1", "n": 1}, "f.json")
    assert validate(_Point, {"x": 1, "n": 2}, "f.json").x == 1.0  # an int is a float


def test_a_bad_dict_key_is_located_by_its_path_without_a_key_marker() -> None:
    from pydantic import Field

    from mixq.schema.read import SchemaModel, validate
    from mixq.schema.types import PrecisionText

    class Table(SchemaModel):
        costs: dict[PrecisionText, float] = Field(default_factory=dict)

    with pytest.raises(ConfigError, match=r"t\.json has invalid fields: costs\.w99a8: ") as info:
        validate(Table, {"costs": {"w99a8": 1.0}}, "t.json")
    assert "[key]" not in str(info.value)
