"""Lazy data sets: samples are decoded and preprocessed when a range is loaded.

A 50,000-image folder must not sit in memory as float32 (it would take 30 GB at 224x224), so image
files are only opened when ``load`` asks for them. Every sample must come out with the same shape, since
the model runs on stacked batches; a mismatch is reported with the file that breaks it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from mixq.data.preprocess import Preprocess
from mixq.errors import ConfigError, DataError, MixqError
from mixq.schema.arrays import check_image_layout

PREPROCESS_HINT = '--preprocess "resize=256 crop=224"'


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(s) for s in shape)


class Dataset(ABC):
    """Samples ``0 .. len-1``, loaded by range as float32 NCHW arrays.

    Attributes:
        labels: int64 class indices, one per sample, or None for unlabeled data.
        names: one name per sample (the file name, or ``<file>[i]`` for arrays), for error messages.
    """

    labels: np.ndarray | None
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)

    @property
    @abstractmethod
    def sample_shape(self) -> tuple[int, ...]:
        """The (C, H, W) of every sample after preprocessing."""

    @abstractmethod
    def _load(self, start: int, stop: int) -> np.ndarray:
        """Samples ``start .. stop-1``, with ``0 <= start <= stop <= len``."""

    @abstractmethod
    def subset(self, n: int) -> Dataset:
        """The first ``n`` samples, in order."""

    def load(self, start: int, stop: int) -> np.ndarray:
        """Samples ``start .. stop-1`` (``stop`` is clipped to the length, as in slicing)."""
        if start < 0 or stop < start:
            raise IndexError(f"bad sample range {start}..{stop} for a data set of {len(self)} samples")
        stop = min(stop, len(self))
        start = min(start, stop)
        if start == stop:
            return np.zeros((0, *self.sample_shape), np.float32)
        return self._load(start, stop)

    def batches(self, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(start index, batch)`` pairs over the whole data set, in order."""
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        for start in range(0, len(self), batch_size):
            yield start, self.load(start, start + batch_size)

    def _check_subset(self, n: int) -> int:
        if n < 1:
            raise DataError(f"a subset needs at least one sample, got {n}")
        return min(n, len(self))


class ArrayDataset(Dataset):
    """Samples held in one array: NHWC uint8 images (preprocessed on load) or float model inputs (used as
    they are, unless ``preprocess`` crops or normalizes NCHW images)."""

    def __init__(self, x: np.ndarray, labels: np.ndarray | None = None, names: Sequence[str] | None = None,
                 preprocess: Preprocess | None = None, source: str = "array") -> None:
        x = np.asarray(x)
        if x.dtype == np.uint8:
            check_image_layout(x, source)
        elif np.issubdtype(x.dtype, np.floating):
            # used as the model's input as is, so any layout a model takes (NCHW, NHWC, features) is fine
            if x.ndim < 2:
                raise DataError(f"{source}: x must hold samples along its first axis, got shape {x.shape}")
            if preprocess is not None and (preprocess.resize is not None or x.ndim != 4):
                raise ConfigError(f"{source}: float arrays are used as they are (only crop, mean and std apply, "
                                  f"to NCHW images), so --preprocess \"{preprocess}\" cannot be applied: store "
                                  "images as NHWC uint8, or preprocess them before saving")
        else:
            raise DataError(f"{source}: x must be uint8 (NHWC images) or float (model inputs), got {x.dtype}")
        self.x = x
        self.preprocess = preprocess
        self.source = source
        self.names = tuple(names) if names is not None else tuple(f"{source}[{i}]" for i in range(len(x)))
        if len(self.names) != len(x):
            raise DataError(f"{source}: {len(self.names)} names for {len(x)} samples")
        self.labels = None if labels is None else _check_labels(labels, len(x), source)
        self._shape: tuple[int, ...] | None = None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        if self._shape is None:
            if self.preprocess is None and self.x.dtype != np.uint8:
                self._shape = tuple(self.x.shape[1:])
            else:
                self._shape = tuple(self._load(0, 1).shape[1:]) if len(self.x) else tuple(self.x.shape[1:])
        return self._shape

    def _load(self, start: int, stop: int) -> np.ndarray:
        batch = self.x[start:stop]
        if self.preprocess is not None:
            try:
                return self.preprocess.apply_array(batch)
            except DataError as exc:
                raise DataError(f"{self.source}: {exc}") from None
        if batch.dtype == np.uint8:
            return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)
        return np.ascontiguousarray(batch, dtype=np.float32)

    def subset(self, n: int) -> ArrayDataset:
        n = self._check_subset(n)
        return ArrayDataset(self.x[:n], None if self.labels is None else self.labels[:n], self.names[:n],
                            self.preprocess, self.source)


class ImageDataset(Dataset):
    """Image files, decoded with PIL and preprocessed when loaded; only the paths are kept."""

    def __init__(self, paths: Sequence[str | Path], preprocess: Preprocess | None = None,
                 labels: np.ndarray | None = None, names: Sequence[str] | None = None) -> None:
        self.paths = tuple(Path(p) for p in paths)
        self.preprocess = preprocess if preprocess is not None else Preprocess()
        self.names = tuple(names) if names is not None else tuple(p.name for p in self.paths)
        if len(self.names) != len(self.paths):
            raise DataError(f"{len(self.names)} names for {len(self.paths)} images")
        self.labels = None if labels is None else _check_labels(labels, len(self.paths), "labels")
        self._given_preprocess = preprocess is not None
        self._shape: tuple[int, ...] | None = None

    def _expected(self, index: int) -> tuple[int, int, int]:
        """The shape image ``index`` will have, from its header only (no decoding)."""
        try:
            with Image.open(self.paths[index]) as img:
                width, height = img.size
        except Exception as exc:  # PIL raises many types for bad files; the user needs the file name
            raise DataError(f"cannot read image {self.names[index]}: {_reason(exc)}; "
                            "remove or replace the file") from exc
        try:
            return (3, *self.preprocess.output_size(height, width))
        except DataError as exc:
            raise DataError(f"image {self.names[index]}: {exc}") from None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        if self._shape is None:
            if not self.paths:
                raise DataError("the data set has no images")
            self._shape = self._expected(0)
        return self._shape

    def check(self) -> None:
        """Open every file's header: unreadable files and shape mismatches fail now, not mid-run."""
        reference = self.sample_shape
        for index in range(1, len(self.paths)):
            shape = self._expected(index)
            if shape != reference:
                raise self._mismatch(index, shape)

    def _mismatch(self, index: int, shape: Sequence[int]) -> DataError:
        if not self._given_preprocess:
            how = f"no preprocessing was given; pass e.g. {PREPROCESS_HINT} (the size your model expects)"
        else:
            how = (f"the preprocessing \"{self.preprocess}\" does not give one size; add a crop, e.g. "
                   f"{PREPROCESS_HINT}")
        return DataError(f"image {self.names[index]} is {_shape_text(shape)} after preprocessing but "
                         f"{self.names[0]} is {_shape_text(self.sample_shape)}: every sample must have the same "
                         f"shape; {how}")

    def _decode(self, index: int) -> np.ndarray:
        try:
            with Image.open(self.paths[index]) as img:
                img.load()
                return self.preprocess.apply_image(img)
        except MixqError as exc:
            raise type(exc)(f"image {self.names[index]}: {exc}") from None
        except Exception as exc:  # truncated or corrupt data surfaces only when decoding
            raise DataError(f"cannot decode image {self.names[index]}: {_reason(exc)}; "
                            "remove or replace the file") from exc

    def _load(self, start: int, stop: int) -> np.ndarray:
        reference = self.sample_shape
        out = np.empty((stop - start, *reference), np.float32)
        for offset, index in enumerate(range(start, stop)):
            sample = self._decode(index)
            if sample.shape != reference:
                raise self._mismatch(index, sample.shape)
            out[offset] = sample
        return out

    def subset(self, n: int) -> ImageDataset:
        n = self._check_subset(n)
        sub = ImageDataset(self.paths[:n], self.preprocess, None if self.labels is None else self.labels[:n],
                           self.names[:n])
        sub._given_preprocess, sub._shape = self._given_preprocess, self._shape
        return sub


def _check_labels(labels: np.ndarray, count: int, source: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != count:
        raise DataError(f"{source}: {labels.shape[0] if labels.ndim else 0} labels for {count} samples: "
                        "give exactly one class index per sample")
    if np.issubdtype(labels.dtype, np.floating) and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
        labels = labels.astype(np.int64)
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{source}: labels must be integer class indices, got {labels.dtype}")
    return labels.astype(np.int64, copy=False)


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
