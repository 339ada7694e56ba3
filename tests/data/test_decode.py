"""High-bit-depth images are scaled onto [0, 1], not clipped; 8-bit images decode exactly as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mixq.data.preprocess import Preprocess
from mixq.errors import DataError


def _saved(tmp_path: Path, array: np.ndarray, name: str) -> Image.Image:
    Image.fromarray(array).save(tmp_path / name)
    img = Image.open(tmp_path / name)
    img.load()
    return img


def test_16_bit_png_is_scaled_by_65535(tmp_path: Path) -> None:
    pixels = np.array([[0, 1000], [40000, 65535]], np.uint16)
    x = Preprocess().apply_image(_saved(tmp_path, pixels, "deep.png"))
    assert x.shape == (3, 2, 2)
    np.testing.assert_allclose(x[0], pixels / 65535.0, rtol=1e-6)
    assert np.array_equal(x[0], x[2])  # gray repeated over RGB


def test_float_tiff_in_unit_range_is_kept(tmp_path: Path) -> None:
    pixels = np.array([[0.0, 0.25], [0.5, 1.0]], np.float32)
    x = Preprocess().apply_image(_saved(tmp_path, pixels, "float.tif"))
    np.testing.assert_allclose(x[1], pixels)


def test_float_image_outside_unit_range_is_refused(tmp_path: Path) -> None:
    pixels = np.array([[0.0, 3.0], [-1.0, 1.0]], np.float32)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        Preprocess().apply_image(_saved(tmp_path, pixels, "hdr.tif"))


def test_16_bit_image_resizes_without_losing_its_scale(tmp_path: Path) -> None:
    pixels = np.full((8, 8), 50000, np.uint16)
    x = Preprocess(resize=4).apply_image(_saved(tmp_path, pixels, "deep.png"))
    assert x.shape == (3, 4, 4)
    np.testing.assert_allclose(x, 50000 / 65535.0, rtol=1e-5)


def test_8_bit_images_decode_exactly_as_before() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    x = Preprocess(crop=(4, 4)).apply_image(Image.fromarray(pixels))
    expected = pixels[1:5, 0:4].astype(np.float32).transpose(2, 0, 1) / np.float32(255.0)
    assert np.array_equal(x, expected)
    gray = Preprocess().apply_image(Image.fromarray(pixels[:, :, 0]))
    assert np.array_equal(gray[0], pixels[:, :, 0].astype(np.float32) / np.float32(255.0))
