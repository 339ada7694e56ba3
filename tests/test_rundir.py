"""Run directories: recognised before anything is written, locked for one process, never written through links."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mixq.errors import RunDirectoryError
from mixq.rundir import (KEY_FILE, LOCK_INFO, MARKER, JsonlMeasurementLog, RunDirectory, RunLock, check_writable,
                         is_run_directory)

HOLD = """
import sys, time
from mixq.rundir import RunDirectory
run = RunDirectory(sys.argv[1], command="mixq search held-by-test")
print("locked", flush=True)
time.sleep(120)
"""


def test_a_folder_with_the_users_files_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"learning_rate": 0.1}')
    with pytest.raises(RunDirectoryError, match="not a mixq run directory"):
        RunDirectory(tmp_path)
    assert (tmp_path / "config.json").read_text() == '{"learning_rate": 0.1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


@pytest.mark.parametrize("files", [{}, {MARKER: "{}"}, {KEY_FILE: "{}"},
                                   {"config.json": '{"mixq_version": "0.1.0"}', "graph.json": "[]"}],
                         ids=["empty", "marker", "older run: key", "older run: config"])
def test_new_empty_and_mixq_folders_are_run_directories(tmp_path: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert is_run_directory(tmp_path) and is_run_directory(tmp_path / "new")
    with RunDirectory(tmp_path) as run:
        run.write_json("graph.json", [])
        assert run.file(MARKER).is_file()  # written with mixq's first file


def test_a_changed_key_is_refused_without_writing(tmp_path: Path) -> None:
    with RunDirectory(tmp_path) as run:
        run.bind({"seed": 1})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != LOCK_INFO}
    with RunDirectory(tmp_path) as run, pytest.raises(RunDirectoryError, match="changed: seed"):
        run.check_key({"seed": 2})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != LOCK_INFO} == before


def test_a_second_process_is_refused_naming_the_holder_and_a_killed_holder_blocks_nothing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirectoryError, match=rf"in use by another mixq process \(pid {holder.pid} on .*"
                                                     "held-by-test"):
            RunDirectory(run)
        with pytest.raises(RunDirectoryError, match="in use"):
            check_writable(run)  # refused before any work, too
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    started = time.monotonic()
    with RunDirectory(run) as taken:  # flock died with its process: no stale lock
        info = json.loads(taken.file(LOCK_INFO).read_text())
        assert info["pid"] == os.getpid()
    assert time.monotonic() - started < 5


def test_the_lock_is_reentrant_within_a_process_and_released_at_the_end(tmp_path: Path) -> None:
    outer = RunLock(tmp_path)
    with outer:
        with RunDirectory(tmp_path):
            pass
        assert outer._key in RunLock._held  # still held by the outer lock
    assert outer._key not in RunLock._held


def test_a_measurement_log_that_is_a_link_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "measurements.jsonl").symlink_to(outside)
    with pytest.raises(RunDirectoryError, match="symbolic link"):
        JsonlMeasurementLog(tmp_path / "run" / "measurements.jsonl")
    assert outside.read_text() == "precious"
