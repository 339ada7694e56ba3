"""Run-directory files read back: a corrupt measurement key is a user error; bad measurement lines are
dropped with a warning (and so measured again), never trusted."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from mixq.errors import RunDirectoryError
from mixq.rundir import KEY_FILE, MEASUREMENTS, JsonlMeasurementLog, RunDirectory

GOOD = {"chunk": 0, "group": "conv1", "precision": "w4a8", "ratio_sum": 0.25, "count": 2}


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b"[1, 2]"])
def test_a_corrupt_measurement_key_is_a_run_directory_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / KEY_FILE).write_bytes(content)
    with RunDirectory(tmp_path) as run, pytest.raises(RunDirectoryError, match=f"{KEY_FILE}.*use a new --out"):
        run.bind({"seed": 0})


def test_a_matching_key_resumes(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_text(json.dumps({"seed": 0}))
    (tmp_path / MEASUREMENTS).write_text("")
    with RunDirectory(tmp_path) as run:
        assert run.bind({"seed": 0}) is True


@pytest.mark.parametrize("bad", [
    {**GOOD, "ratio_sum": "NaN"}, {**GOOD, "ratio_sum": -1.0}, {**GOOD, "ratio_sum": "0.25"},
    {**GOOD, "count": 0}, {**GOOD, "chunk": True}, {**GOOD, "precision": "w99a8"}, [1, 2],
])
def test_bad_measurement_lines_are_dropped_with_a_warning(tmp_path: Path, bad: object,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / MEASUREMENTS
    line = json.dumps(bad).replace('"NaN"', "NaN")
    path.write_text(json.dumps(GOOD) + "\n" + line + "\n")
    with caplog.at_level(logging.WARNING):
        log = JsonlMeasurementLog(path)
    assert [m.group for m in log.done()] == ["conv1"]
    assert "line 2" in caplog.text and "measured again" in caplog.text


def test_non_utf8_measurement_line_is_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / MEASUREMENTS
    path.write_bytes(b'{"group": "\xff"}\n' + json.dumps(GOOD).encode() + b"\n")
    with caplog.at_level(logging.WARNING):
        log = JsonlMeasurementLog(path)
    assert len(list(log.done())) == 1 and "not UTF-8" in caplog.text
