"""load_data and the lazy data sets: image folders, label CSVs, npz arrays and every way they go wrong."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mixq.data import ArrayDataset, Dataset, Preprocess, load_data
from mixq.data.dataset import ImageDataset
from mixq.errors import ConfigError, DataError


def save(path: Path, size: tuple[int, int] = (8, 6), colour: tuple[int, ...] = (10, 20, 30),
         mode: str = "RGB") -> Path:
    """An image of ``size`` = (width, height) filled with ``colour``."""
    Image.new(mode, size, colour if mode != "L" else colour[0]).save(path)
    return path


def folder_of(tmp_path: Path, names: list[str], **kwargs: object) -> Path:
    for i, name in enumerate(names):
        save(tmp_path / name, colour=(i * 10, i * 10 + 1, i * 10 + 2), **kwargs)  # type: ignore[arg-type]
    return tmp_path


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- image folders ---------------------------------------------------------------------------------------


def test_folder_sorted_by_name_and_case_insensitive_extensions(tmp_path: Path) -> None:
    folder_of(tmp_path, ["b.PNG", "a.png", "c.bmp"])
    Image.new("RGB", (8, 6)).save(tmp_path / "d.JPG", format="JPEG")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "._a.png").write_bytes(b"macOS resource fork, not an image")
    (tmp_path / "sub").mkdir()
    data = load_data(tmp_path)
    assert isinstance(data, ImageDataset)
    assert data.names == ("a.png", "b.PNG", "c.bmp", "d.JPG")
    assert len(data) == 4 and data.labels is None
    x = data.load(0, 4)
    assert x.shape == (4, 3, 6, 8) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 0, 0], np.array([10, 11, 12]) / 255.0, rtol=1e-6)  # a.png was saved second
    np.testing.assert_allclose(x[1, :, 0, 0], np.array([0, 1, 2]) / 255.0, rtol=1e-6)


def test_labels_csv_sets_order_and_labels(tmp_path: Path) -> None:
    folder_of(tmp_path, ["a.png", "b.png", "c.png"])
    write_csv(tmp_path / "labels.csv", "file,class_index,synset,name\nc.png,7,n1,cat\na.png,3,n2,dog\nb.png,0,n3,x\n")
    data = load_data(tmp_path)
    assert data.names == ("c.png", "a.png", "b.png")
    assert data.labels is not None and data.labels.dtype == np.int64
    assert data.labels.tolist() == [7, 3, 0]
    np.testing.assert_allclose(data.load(0, 1)[0, 0, 0, 0], 20 / 255.0, rtol=1e-6)  # c.png first


def test_explicit_labels_path(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    folder_of(images, ["a.png", "b.png"])
    labels = write_csv(tmp_path / "my labels.csv", "class_index,file\n5,b.png\n1,a.png\n")
    data = load_data(images, labels=labels)
    assert data.names == ("b.png", "a.png") and data.labels is not None and data.labels.tolist() == [5, 1]
    with pytest.raises(DataError, match="does not exist"):
        load_data(images, labels=tmp_path / "nope.csv")


@pytest.mark.parametrize("csv_text, match", [
    ("file,label\na.png,1\n", "no column class_index"),
    ("name,class_index\na.png,1\n", "no column file"),
    ("file,class_index\na.png,1\nmissing.png,2\n", "missing.png"),
    ("file,class_index\na.png,cat\n", "line 2"),
    ("file,class_index\n", "lists no files"),
    ("file,class_index\na.png,1\na.png,1\n", "twice"),
])
def test_bad_labels_csv(tmp_path: Path, csv_text: str, match: str) -> None:
    folder_of(tmp_path, ["a.png"])
    write_csv(tmp_path / "labels.csv", csv_text)
    with pytest.raises(DataError, match=match):
        load_data(tmp_path)


def test_images_without_a_label_row_are_an_error(tmp_path: Path) -> None:
    folder_of(tmp_path, ["a.png", "b.png"])
    write_csv(tmp_path / "labels.csv", "file,class_index\na.png,1\n")
    with pytest.raises(DataError, match="b.png"):
        load_data(tmp_path)


def test_missing_path_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_data(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no images"):
        load_data(tmp_path)
    (tmp_path / "cats").mkdir()
    save(tmp_path / "cats" / "a.png")
    with pytest.raises(DataError, match="subfolders"):
        load_data(tmp_path)
    (tmp_path / "x.csv").write_text("a")
    with pytest.raises(DataError, match="cannot read data from x.csv"):
        load_data(tmp_path / "x.csv")


def test_limit(tmp_path: Path) -> None:
    folder_of(tmp_path, ["a.png", "b.png", "c.png"])
    assert load_data(tmp_path, limit=2).names == ("a.png", "b.png")
    assert len(load_data(tmp_path, limit=10)) == 3
    for bad in (0, -1):
        with pytest.raises(DataError, match="positive"):
            load_data(tmp_path, limit=bad)


def test_unreadable_image_is_named_at_load_data(tmp_path: Path) -> None:
    folder_of(tmp_path, ["a.png"])
    (tmp_path / "broken.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(DataError, match="broken.jpg") as info:
        load_data(tmp_path)
    assert "UnidentifiedImageError" in str(info.value)


def test_truncated_image_is_named_when_loaded(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    save(tmp_path / "a.png")
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).save(buffer, format="PNG")
    (tmp_path / "b.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    data = load_data(tmp_path)  # the header is intact: decoding happens lazily
    np.testing.assert_allclose(data.load(0, 1)[0, :, 0, 0], np.array([10, 20, 30]) / 255.0, rtol=1e-6)
    with pytest.raises(DataError, match="cannot decode image b.png"):
        data.load(0, 2)


def test_different_sizes_need_preprocess(tmp_path: Path) -> None:
    save(tmp_path / "a.png", size=(8, 6))
    save(tmp_path / "b.png", size=(10, 6))
    with pytest.raises(DataError) as info:
        load_data(tmp_path)
    message = str(info.value)
    assert "b.png is 3x6x10" in message and "a.png is 3x6x8" in message and "--preprocess" in message
    with pytest.raises(DataError, match="add a crop"):
        load_data(tmp_path, Preprocess(resize=4))
    data = load_data(tmp_path, Preprocess(resize=6, crop=5))
    assert data.load(0, 2).shape == (2, 3, 5, 5)
    with pytest.raises(DataError, match="image a.png: the crop 7x7 is larger than the image"):
        load_data(tmp_path, Preprocess(crop=7))  # found from the headers, before any decoding


def test_mismatch_found_lazily_is_reported_too(tmp_path: Path) -> None:
    save(tmp_path / "a.png", size=(8, 6))
    save(tmp_path / "b.png", size=(10, 6))
    data = ImageDataset([tmp_path / "a.png", tmp_path / "b.png"])  # not checked up front
    assert data.load(0, 1).shape == (1, 3, 6, 8)
    with pytest.raises(DataError, match="b.png"):
        data.load(1, 2)


def test_grayscale_and_rgba_are_converted(tmp_path: Path) -> None:
    save(tmp_path / "a.png", colour=(100,), mode="L")
    save(tmp_path / "b.png", colour=(1, 2, 3, 128), mode="RGBA")
    x = load_data(tmp_path).load(0, 2)
    assert x.shape == (2, 3, 6, 8)
    np.testing.assert_allclose(x[0, :, 0, 0], [100 / 255.0] * 3, rtol=1e-6)
    np.testing.assert_allclose(x[1, :, 0, 0], np.array([1, 2, 3]) / 255.0, rtol=1e-6)


def test_single_image_file(tmp_path: Path) -> None:
    data = load_data(save(tmp_path / "one.png"), Preprocess(crop=4))
    assert len(data) == 1 and data.load(0, 1).shape == (1, 3, 4, 4)


def test_subset_batches_and_ranges(tmp_path: Path) -> None:
    folder_of(tmp_path, [f"{i:02d}.png" for i in range(7)])
    write_csv(tmp_path / "labels.csv", "file,class_index\n" + "".join(f"{i:02d}.png,{i}\n" for i in range(7)))
    data = load_data(tmp_path)
    sub = data.subset(3)
    assert sub.names == ("00.png", "01.png", "02.png") and sub.labels is not None and sub.labels.tolist() == [0, 1, 2]
    starts, total = [], []
    for start, batch in data.batches(3):
        starts.append(start)
        total.append(batch)
    assert starts == [0, 3, 6] and [len(b) for b in total] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate(total), data.load(0, 7))
    assert data.load(5, 100).shape[0] == 2  # clipped like a slice
    assert data.load(7, 7).shape == (0, 3, 6, 8)
    with pytest.raises(ConfigError):
        next(data.batches(0))
    with pytest.raises(DataError):
        data.subset(0)


# --- arrays ----------------------------------------------------------------------------------------------


def test_npz_uint8_nhwc(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 4, 6, 3), dtype=np.uint8)
    y = np.arange(5)
    np.savez(tmp_path / "d.npz", x=x, y=y, filename=np.array([f"img{i}.png" for i in range(5)]))
    data = load_data(tmp_path / "d.npz")
    assert isinstance(data, ArrayDataset) and len(data) == 5
    assert data.labels is not None and data.labels.dtype == np.int64 and data.labels.tolist() == [0, 1, 2, 3, 4]
    assert data.names[0] == "img0.png"
    np.testing.assert_allclose(data.load(0, 5), x.transpose(0, 3, 1, 2) / 255.0, rtol=1e-6)
    normalized = load_data(tmp_path / "d.npz", Preprocess(mean=0.5, std=0.5), limit=2)
    assert len(normalized) == 2
    np.testing.assert_allclose(normalized.load(0, 2), (x[:2].transpose(0, 3, 1, 2) / 255.0 - 0.5) / 0.5, atol=1e-6)
    resized = load_data(tmp_path / "d.npz", Preprocess(resize=8, crop=8))
    assert resized.load(0, 1).shape == (1, 3, 8, 8)


def test_npz_float_nchw_used_as_is(tmp_path: Path) -> None:
    x = np.random.default_rng(1).standard_normal((3, 2, 5, 5)).astype(np.float64)
    np.savez(tmp_path / "f.npz", x=x)
    data = load_data(tmp_path / "f.npz")
    assert data.labels is None and data.names[0] == "f.npz[0]"
    out = data.load(0, 3)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, x, rtol=1e-6)
    with pytest.raises(ConfigError, match="cannot be applied"):
        load_data(tmp_path / "f.npz", Preprocess(resize=4))
    np.save(tmp_path / "plain.npy", x)
    assert load_data(tmp_path / "plain.npy").load(0, 1).shape == (1, 2, 5, 5)


@pytest.mark.parametrize("arrays, match", [
    ({"images": np.zeros((2, 4, 4, 3), np.uint8)}, "no array x.*images"),
    ({"x": np.zeros((2, 4, 4), np.uint8)}, "4 axes.*channel axis"),
    ({"x": np.zeros(5, np.float32)}, "first axis"),
    ({"x": np.zeros((2, 4, 4, 3), np.int32)}, "uint8"),
    ({"x": np.zeros((2, 3, 8, 8), np.uint8)}, "looks NCHW"),
    ({"x": np.zeros((3, 4, 4, 3), np.uint8), "y": np.arange(2)}, "y has shape"),
    ({"x": np.zeros((0, 4, 4, 3), np.uint8)}, "no samples"),
])
def test_bad_npz(tmp_path: Path, arrays: dict[str, np.ndarray], match: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=match):
        load_data(tmp_path / "bad.npz")


def test_corrupt_npz(tmp_path: Path) -> None:
    (tmp_path / "c.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="cannot read c.npz"):
        load_data(tmp_path / "c.npz")


def test_array_dataset_from_memory() -> None:
    x = np.random.default_rng(2).standard_normal((4, 3, 2, 2)).astype(np.float32)
    data: Dataset = ArrayDataset(x)
    np.testing.assert_array_equal(data.load(1, 3), x[1:3])
    assert data.sample_shape == (3, 2, 2)
    assert data.subset(2).load(0, 10).shape == (2, 3, 2, 2)
    with pytest.raises(DataError, match="labels"):
        ArrayDataset(x, labels=np.arange(3))
    features = np.ones((5, 7), np.float32)  # any float layout a model takes is used as is
    assert ArrayDataset(features).load(0, 2).shape == (2, 7)
    with pytest.raises(ConfigError, match="cannot be applied"):
        ArrayDataset(features, preprocess=Preprocess(mean=0.5))


# --- the shared benchmark data ---------------------------------------------------------------------------


def test_cifar_npz(shared_data: Path) -> None:
    path = shared_data / "cifar10-test.npz"
    if not path.is_file():
        pytest.skip(f"{path} not present (benchmark data lives in ../shared)")
    data = load_data(path, limit=64)
    assert len(data) == 64 and data.labels is not None
    assert set(data.labels.tolist()) == set(range(10))  # shuffled: the first 64 cover all classes
    x = data.load(0, 64)
    assert x.shape == (64, 3, 32, 32) and 0.0 <= x.min() and x.max() <= 1.0


def test_imagenet_samples_follow_labels_csv(shared_data: Path) -> None:
    folder = shared_data / "imagenet-samples"
    if not folder.is_dir():
        pytest.skip(f"{folder} not present (benchmark data lives in ../shared)")
    with pytest.raises(DataError, match="--preprocess"):
        load_data(folder, limit=10)  # photos of different sizes
    data = load_data(folder, Preprocess.parse("resize=256 crop=224"))
    assert len(data) == 500
    first = (folder / "labels.csv").read_text().splitlines()[1].split(",")
    assert data.names[0] == first[0] and data.labels is not None and data.labels[0] == int(first[1])
    assert data.load(0, 2).shape == (2, 3, 224, 224)
