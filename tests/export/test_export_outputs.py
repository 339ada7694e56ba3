"""Where an export may write: never over what it reads, never a folder, /proc or a path under a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixq.errors import ExportError
from mixq.export import input_paths, writable_output


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    files = {"model": tmp_path / "model.onnx", "plan": tmp_path / "run" / "plan.json", "factory": tmp_path / "net.py"}
    for path in files.values():
        path.parent.mkdir(exist_ok=True)
        path.write_text("x")
    return files


@pytest.mark.parametrize("name", ["model", "plan", "factory"])
def test_an_output_over_an_input_is_refused(inputs: dict[str, Path], name: str) -> None:
    sources = input_paths(inputs["model"], inputs["plan"].parent, f"{inputs['factory']}:build")
    with pytest.raises(ExportError, match="one of the inputs"):
        writable_output(inputs[name], sources)
    assert inputs[name].read_text() == "x"


def test_the_same_file_through_another_path_is_refused(inputs: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "alias.onnx").symlink_to(inputs["model"])
    with pytest.raises(ExportError, match="one of the inputs"):
        writable_output(tmp_path / "alias.onnx", input_paths(inputs["model"]))


@pytest.mark.parametrize("where, message", [("folder", "is a directory"), ("under a file", "is a file"),
                                            ("/proc", "does not accept new files")])
def test_bad_output_paths_are_user_errors(tmp_path: Path, where: str, message: str) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    path = {"folder": tmp_path / "folder", "under a file": tmp_path / "file" / "q.onnx",
            "/proc": Path("/proc/mixq-test.onnx")}[where]
    with pytest.raises(ExportError, match=message):
        writable_output(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]  # the probe leaves nothing


def test_a_new_file_in_a_new_folder_is_fine(tmp_path: Path) -> None:
    assert writable_output(tmp_path / "a" / "b" / "q.onnx") == tmp_path / "a" / "b" / "q.onnx"
