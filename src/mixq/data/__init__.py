"""Data loading: image folders and arrays, read lazily and preprocessed on access."""

from __future__ import annotations

from mixq.data.dataset import ArrayDataset, Dataset, ImageDataset
from mixq.data.loading import load_data
from mixq.data.preprocess import Preprocess

__all__ = ["ArrayDataset", "Dataset", "ImageDataset", "Preprocess", "load_data"]
