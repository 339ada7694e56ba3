"""``load_data``: a folder of images (optionally labelled by a CSV) or an ``.npz`` of arrays.

Everything a user can get wrong here (a typo in a path, a stray file, a CSV with other column names)
ends in one ``DataError`` sentence that names the problem and the fix, before any model runs.
"""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from mixq.data.dataset import ArrayDataset, Dataset, ImageDataset
from mixq.data.preprocess import Preprocess
from mixq.errors import ConfigError, DataError
from mixq.schema.arrays import MAX_CLASS_INDEX, check_npz

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
LABELS_FILE = "labels.csv"
FILE_COLUMN, LABEL_COLUMN = "file", "class_index"


def load_data(path: str | Path, preprocess: Preprocess | None = None, labels: str | Path | None = None,
              limit: int | None = None) -> Dataset:
    """Open a data set lazily; headers of the image files are checked now, pixels are decoded on load.

    Args:
        path: a folder of images (sorted by name, or in the order of its ``labels.csv``), one image
            file, or an ``.npz`` with ``x`` (NHWC uint8 or NCHW float) and optional ``y``.
        preprocess: how to turn images into model inputs; None keeps the size and scales to [0, 1].
        labels: a CSV with columns ``file,class_index`` (default: ``labels.csv`` in the folder).
        limit: keep only the first ``limit`` samples.
    """
    if limit is not None and limit <= 0:
        raise DataError(f"the sample limit must be a positive number, got {limit}")
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"data path {path} does not exist: give a folder of images or an .npz file")
    if path.is_dir():
        dataset: Dataset = _image_folder(path, preprocess, labels, limit)
    elif path.suffix.lower() in (".npz", ".npy"):
        if labels is not None:
            raise ConfigError(f"--labels (labels=) applies to image folders; {path.name} carries its labels in its array y")
        dataset = _arrays(path, preprocess, limit)
    elif path.suffix.lower() in IMAGE_EXTENSIONS:
        if labels is not None:
            raise ConfigError(f"--labels (labels=) applies to image folders, not to the single image {path.name}")
        dataset = ImageDataset([path], preprocess)
    else:
        raise DataError(f"cannot read data from {path.name}: give a folder of images "
                        f"({', '.join(sorted(IMAGE_EXTENSIONS))}) or an .npz file with an array x")
    if isinstance(dataset, ImageDataset):
        dataset.check()
    return dataset


def _image_folder(folder: Path, preprocess: Preprocess | None, labels: str | Path | None,
                  limit: int | None) -> ImageDataset:
    images = sorted(p.name for p in folder.iterdir()
                    if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file())
    labels_path = Path(labels).expanduser() if labels is not None else folder / LABELS_FILE
    if labels is not None and not labels_path.is_file():
        raise DataError(f"labels file {labels_path} does not exist: give a CSV with columns "
                        f"{FILE_COLUMN},{LABEL_COLUMN}")
    if not labels_path.is_file():
        if not images:
            raise _no_images(folder)
        names, label_array = images, None
    else:
        names, label_array = _read_labels(labels_path, folder, images)
    if limit is not None:
        names = names[:limit]
        label_array = None if label_array is None else label_array[:limit]
    return ImageDataset([folder / name for name in names], preprocess, label_array, names)


def _no_images(folder: Path) -> DataError:
    subfolders = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    where = (f"; images in subfolders ({subfolders[0].name}/ ...) are not read: put them directly in the folder"
             if subfolders else "")
    return DataError(f"no images in {folder} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}){where}")


def _read_labels(path: Path, folder: Path, images: list[str]) -> tuple[list[str], np.ndarray]:
    """Files and class indices from a CSV, in its row order; every image must be listed exactly once."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            reader.fieldnames = columns
            missing = [c for c in (FILE_COLUMN, LABEL_COLUMN) if c not in columns]
            if missing:
                raise DataError(f"{path.name} has no column {' or '.join(missing)} (its header is "
                                f"{','.join(columns) or 'empty'}): the first row must name the columns "
                                f"{FILE_COLUMN},{LABEL_COLUMN}")
            names: list[str] = []
            values: list[int] = []
            for row in reader:
                name, value = (row.get(FILE_COLUMN) or "").strip(), (row.get(LABEL_COLUMN) or "").strip()
                if not name and not value:
                    continue
                try:
                    index = int(value) if len(value) <= 12 else -1  # int() of a huge string is slow
                except ValueError:
                    index = -1
                if not 0 <= index <= MAX_CLASS_INDEX:
                    shown = value if len(value) <= 24 else value[:21] + "..."
                    raise DataError(f"{path.name} line {reader.line_num}: class_index {shown!r} is not a "
                                    f"non-negative integer up to {MAX_CLASS_INDEX}")
                if not _inside(name):
                    raise DataError(f"{path.name} line {reader.line_num}: file {name!r} is outside the data "
                                    f"folder: name files relative to {folder.name}/ (no '..', no absolute path)")
                names.append(name)
                values.append(index)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read labels file {path}: {exc}") from None
    if not names:
        raise DataError(f"{path.name} lists no files: add one row per image ({FILE_COLUMN},{LABEL_COLUMN})")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"{path.name} lists {name} twice: give each file once")
        seen.add(name)
    absent = [name for name in names if not (folder / name).is_file()]
    if absent:
        raise DataError(f"{path.name} names {len(absent)} file(s) not in {folder}, e.g. {absent[0]}: "
                        "fix the file column or add the images")
    unlisted = [name for name in images if name not in seen]
    if unlisted:
        raise DataError(f"{len(unlisted)} image(s) in {folder} have no row in {path.name}, e.g. {unlisted[0]}: "
                        "add them to the CSV or move them out of the folder")
    return names, np.asarray(values, dtype=np.int64)


def _inside(name: str) -> bool:
    """True when ``name`` is a path inside the data folder, judged from the text alone (so the answer never
    tells whether some file outside exists): relative, no ``..``, no home or drive prefix."""
    pure = PurePosixPath(name.replace("\\", "/"))
    return bool(name) and not pure.is_absolute() and ".." not in pure.parts and not name.startswith("~") \
        and ":" not in pure.parts[0] and "\x00" not in name


def _arrays(path: Path, preprocess: Preprocess | None, limit: int | None) -> ArrayDataset:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"cannot read {path.name}: {type(exc).__name__}: {exc}; save it with numpy.savez") from None
    if isinstance(loaded, np.ndarray):
        x, y, names = loaded, None, None
    else:
        with loaded:
            keys = list(loaded.files)
            if "x" not in keys:
                raise DataError(f"{path.name} has no array x (it has {', '.join(keys) or 'nothing'}): save the "
                                "inputs as x (NHWC uint8 or NCHW float) and the labels as y, e.g. "
                                "numpy.savez(path, x=x, y=y)")
            try:
                x = loaded["x"]
                y = loaded["y"] if "y" in keys else None
                names = loaded["filename"] if "filename" in keys else None
            except (ValueError, OSError, zipfile.BadZipFile) as exc:
                raise DataError(f"cannot read the arrays in {path.name}: {exc}") from None
    check_npz(x, y, path.name)
    if names is not None and (names.ndim != 1 or len(names) != len(x) or names.dtype.kind not in "US"):
        names = None
    if limit is not None:
        x, y = x[:limit], None if y is None else y[:limit]
        names = None if names is None else names[:limit]
    return ArrayDataset(x, y, None if names is None else [str(n) for n in names], preprocess, source=path.name)
