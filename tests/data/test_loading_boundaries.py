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


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"x": np.array([[1.0, np.nan], [0.0, 1.0]], np.float32)},
         r"x holds NaN or infinite values \(first in sample 0\): replace them, e\.g\. numpy\.nan_to_num"),
        ({"x": np.concatenate([np.zeros((300, 2), np.float32), np.full((1, 2), np.inf, np.float32)])},
         r"x holds NaN or infinite values \(first in sample 300\)"),
        ({"x": np.zeros((2, 3), np.complex64)}, r"x must be uint8 \(NHWC images\) or float .*got complex64"),
        ({"x": np.zeros((2, 3), bool)}, r"x must be uint8 .*got bool"),
        ({"x": np.array(["a", "b"])}, r"x must be uint8 .*got <U1"),
        ({"x": np.zeros((2, 4, 4, 3), np.uint8), "y": np.array([0.5, 1.0])},
         r"y must hold integer class indices, got float64: save y\.astype"),
        ({"x": np.zeros((2, 4, 4, 3), np.uint8), "y": np.zeros((2, 1), np.int64)}, r"y has shape \(2, 1\)"),
        ({"x": np.zeros((2, 4, 4, 3), np.uint8), "y": np.array([True, False])}, r"y must hold integer class"),
    ],
)
def test_npz_contents_are_checked_by_the_schema(tmp_path: Path, arrays: dict[str, np.ndarray], match: str) -> None:
    np.savez(tmp_path / "d.npz", **arrays)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=match) as info:
        load_data(tmp_path / "d.npz")
    assert str(info.value).startswith("d.npz: ") and "\n" not in str(info.value)


def test_npz_whole_float_labels_and_float_features_pass(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.ones((3, 5), np.float32), y=np.array([0.0, 2.0, 1.0]))
    data = load_data(tmp_path / "d.npz")
    assert len(data) == 3 and data.labels is not None and list(data.labels) == [0, 2, 1]
