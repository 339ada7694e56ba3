"""labels.csv and .npz at the boundary: huge class indices and paths outside the data folder are DataErrors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mixq.data.loading import load_data
from mixq.errors import DataError


def _folder(tmp_path: Path, rows: str) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    (folder / "labels.csv").write_text("file,class_index\n" + rows)
    return folder


def test_a_huge_class_index_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"line 2: class_index '100000000000000000000000' is not a non-negative "
                                        r"integer up to 2147483647"):
        load_data(_folder(tmp_path, "a.png,100000000000000000000000\n"))


@pytest.mark.parametrize("name", ["../x.png", "../../etc/passwd", "/etc/passwd", "sub/../../a.png", "~/a.png",
                                  "C:/a.png", "..\\\\x.png"])
def test_paths_outside_the_data_folder_are_refused_without_saying_whether_they_exist(tmp_path: Path,
                                                                                      name: str) -> None:
    (tmp_path / "x.png").write_bytes(b"")  # exists outside: the message must be the same as for a missing one
    with pytest.raises(DataError) as info:
        load_data(_folder(tmp_path, f"a.png,0\n{name},1\n"))
    message = str(info.value)
    assert "is outside the data folder" in message and "exist" not in message


def test_a_subfolder_path_inside_the_folder_is_fine(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "a.png,0\nsub/b.png,1\n")
    (folder / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(folder / "sub" / "b.png")
    assert len(load_data(folder)) == 2


def test_npz_labels_out_of_range_are_a_data_error(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 4, 4, 3), np.uint8), y=np.array([0, -3]))
    with pytest.raises(DataError, match="y holds class indices outside"):
        load_data(tmp_path / "d.npz")
