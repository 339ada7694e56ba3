"""The one writer: a symlink planted beside the target or at it never redirects a write; the folder is fsynced."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mixq.atomic import append_line, write_atomic, write_json


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside the output folder that an attacker wants mixq to overwrite."""
    target = tmp_path / "outside" / "victim.txt"
    target.parent.mkdir()
    target.write_text("precious")
    return target


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("planted", ["plan.json.tmp", ".plan.json.tmp"])
def test_a_link_planted_at_the_old_temporary_name_is_not_followed(out: Path, outside: Path, planted: str) -> None:
    (out / planted).symlink_to(outside)
    write_json(out / "plan.json", {"new": True})
    assert outside.read_text() == "precious"
    assert (out / "plan.json").read_text().strip().startswith("{")
    assert (out / planted).is_symlink()  # left alone, never written through


def test_a_link_planted_at_the_target_is_replaced_not_written_through(out: Path, outside: Path) -> None:
    (out / "plan.json").symlink_to(outside)
    write_atomic(out / "plan.json", "new")
    assert outside.read_text() == "precious"
    assert not (out / "plan.json").is_symlink() and (out / "plan.json").read_text() == "new"


def test_a_writer_function_gets_a_fresh_file_in_the_target_folder(out: Path, outside: Path) -> None:
    seen: list[Path] = []

    def writer(tmp: Path) -> None:
        seen.append(tmp)
        tmp.write_bytes(b"model")

    write_atomic(out / "model.onnx", writer)
    assert seen[0].parent == out and seen[0].name != "model.onnx.tmp"
    assert (out / "model.onnx").read_bytes() == b"model" and sorted(p.name for p in out.iterdir()) == ["model.onnx"]


def test_the_folder_is_fsynced_after_the_rename(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor: int) -> None:
        events.append("fsync-dir" if stat.S_ISDIR(os.fstat(descriptor).st_mode) else "fsync-file")
        real_fsync(descriptor)

    def replace(source: str | Path, target: str | Path) -> None:
        events.append("rename")
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_atomic(out / "plan.json", "x")
    assert events == ["fsync-file", "rename", "fsync-dir"]


def test_the_append_only_log_refuses_a_planted_link(out: Path, outside: Path) -> None:
    (out / "measurements.jsonl").symlink_to(outside)
    with pytest.raises(OSError):
        append_line(out / "measurements.jsonl", "{}\n")
    assert outside.read_text() == "precious"


def test_the_append_only_log_appends(out: Path) -> None:
    append_line(out / "log.jsonl", "a\n")
    append_line(out / "log.jsonl", "b\n")
    assert (out / "log.jsonl").read_text() == "a\nb\n"
