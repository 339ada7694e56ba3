"""Preprocess: parsing, printing and the pixel arithmetic of resize, crop and normalization."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mixq.data.preprocess import Preprocess
from mixq.errors import ConfigError, DataError


def gradient_image(height: int, width: int) -> np.ndarray:
    """HWC uint8 with distinct values, so crops and flips are visible."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([(x * 7) % 256, (y * 11) % 256, (x + y) % 256], axis=-1).astype(np.uint8)


def test_parse_full_spec() -> None:
    p = Preprocess.parse("resize=256 crop=224 interpolation=bicubic mean=0.485,0.456,0.406 std=0.229,0.224,0.225")
    assert p == Preprocess(resize=256, crop=(224, 224), interpolation="bicubic",
                           mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


@pytest.mark.parametrize("spec", [
    "",
    "resize=256 crop=224",
    "resize=20x30 crop=10x12 interpolation=nearest",
    "mean=0.5 std=0.25",
    "resize=32 interpolation=lanczos mean=0.485,0.456,0.406 std=0.229,0.224,0.225",
])
def test_str_round_trips(spec: str) -> None:
    p = Preprocess.parse(spec)
    assert str(p) == spec
    assert Preprocess.parse(str(p)) == p


def test_sizes_accept_int_and_pairs() -> None:
    assert Preprocess.parse("resize=64").resize == 64  # shorter side
    assert Preprocess.parse("resize=64x48").resize == (64, 48)  # exact
    assert Preprocess.parse("crop=7").crop == (7, 7)
    assert Preprocess(crop=5).crop == (5, 5)
    assert Preprocess(mean=[0.5, 0.5, 0.5]).mean == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("spec, item", [
    ("size=224", "size=224"),
    ("resize", "resize"),
    ("resize=abc", "resize=abc"),
    ("crop=0", "crop=0"),
    ("crop=2x3x4", "crop=2x3x4"),
    ("interpolation=cubic", "interpolation=cubic"),
    ("mean=a,b,c", "mean=a,b,c"),
])
def test_parse_errors_name_the_item_and_keys(spec: str, item: str) -> None:
    with pytest.raises(ConfigError) as info:
        Preprocess.parse(f"crop=8 {spec}" if not spec.startswith("crop") else spec)
    message = str(info.value)
    assert repr(item) in message
    assert "resize" in message and "crop" in message and "mean" in message


def test_invalid_values_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="std must be positive"):
        Preprocess.parse("std=0.5,0,0.5")
    with pytest.raises(ConfigError, match="repeats"):
        Preprocess.parse("resize=8 resize=9")
    with pytest.raises(ConfigError, match="mean has 3 values but std has 2"):
        Preprocess(mean=(0.1, 0.2, 0.3), std=(1.0, 1.0))
    with pytest.raises(ConfigError, match="interpolation"):
        Preprocess(interpolation="area")
    with pytest.raises(ConfigError):
        Preprocess(resize=0)


def test_coerce() -> None:
    assert Preprocess.coerce(None) is None
    assert Preprocess.coerce("crop=4") == Preprocess(crop=4)
    p = Preprocess(resize=8)
    assert Preprocess.coerce(p) is p
    with pytest.raises(ConfigError):
        Preprocess.coerce(3)  # type: ignore[arg-type]


def test_apply_image_scales_to_unit_range_chw() -> None:
    pixels = gradient_image(4, 6)
    x = Preprocess().apply_image(Image.fromarray(pixels))
    assert x.dtype == np.float32 and x.shape == (3, 4, 6)
    np.testing.assert_allclose(x, pixels.transpose(2, 0, 1) / 255.0, rtol=1e-6)


def test_normalization_known_values() -> None:
    img = Image.new("RGB", (3, 2), (51, 102, 255))  # 0.2, 0.4, 1.0
    x = Preprocess(mean=(0.2, 0.2, 0.5), std=(0.1, 0.2, 0.25)).apply_image(img)
    np.testing.assert_allclose(x[:, 0, 0], [0.0, 1.0, 2.0], atol=1e-6)
    single = Preprocess(mean=0.5, std=0.5).apply_image(img)  # one value for all channels
    np.testing.assert_allclose(single[:, 1, 2], [-0.6, -0.2, 1.0], atol=1e-6)


def test_resize_shorter_side_keeps_aspect() -> None:
    landscape = Image.fromarray(gradient_image(40, 60))
    portrait = Image.fromarray(gradient_image(60, 40))
    p = Preprocess(resize=20)
    assert p.apply_image(landscape).shape == (3, 20, 30)
    assert p.apply_image(portrait).shape == (3, 30, 20)
    assert p.output_size(40, 60) == (20, 30)
    # as torchvision, the long side is truncated: 170 * 500 / 333 = 255.25 -> 255
    assert Preprocess(resize=170).output_size(500, 333)[0] == 255
    assert Preprocess(resize=(12, 17)).apply_image(landscape).shape == (3, 12, 17)


def test_centre_crop_takes_the_middle() -> None:
    pixels = gradient_image(6, 8)
    x = Preprocess(crop=(2, 4)).apply_image(Image.fromarray(pixels))
    np.testing.assert_allclose(x * 255.0, pixels[2:4, 2:6].transpose(2, 0, 1), atol=1e-4)


def test_resize_then_crop_and_interpolation_matter() -> None:
    img = Image.fromarray(gradient_image(40, 60))
    nearest = Preprocess(resize=20, crop=16, interpolation="nearest").apply_image(img)
    bicubic = Preprocess(resize=20, crop=16, interpolation="bicubic").apply_image(img)
    assert nearest.shape == bicubic.shape == (3, 16, 16)
    assert not np.allclose(nearest, bicubic)
    # nearest neighbour only copies pixels: every value exists in the source
    assert set(np.round(nearest[0].ravel() * 255).astype(int)) <= set(gradient_image(40, 60)[..., 0].ravel())


def test_grayscale_rgba_and_palette_become_rgb() -> None:
    gray = Image.fromarray(np.full((5, 5), 100, np.uint8))
    x = Preprocess().apply_image(gray)
    assert x.shape == (3, 5, 5)
    np.testing.assert_allclose(x, 100 / 255.0, rtol=1e-6)
    rgba = Image.new("RGBA", (5, 5), (10, 20, 30, 0))
    np.testing.assert_allclose(Preprocess().apply_image(rgba)[:, 0, 0], np.array([10, 20, 30]) / 255.0, rtol=1e-6)
    palette = Image.new("RGB", (5, 5), (200, 0, 0)).convert("P")
    assert Preprocess().apply_image(palette).shape == (3, 5, 5)


def test_crop_larger_than_image_is_a_data_error() -> None:
    with pytest.raises(DataError, match="larger than the image"):
        Preprocess(crop=10).apply_image(Image.new("RGB", (8, 8)))


def test_mean_length_must_match_channels() -> None:
    with pytest.raises(ConfigError, match="4 values but the data has 3 channels"):
        Preprocess(mean=(0.1, 0.2, 0.3, 0.4)).apply_image(Image.new("RGB", (4, 4)))


def test_apply_array_uint8_matches_apply_image() -> None:
    batch = np.stack([gradient_image(30, 40), gradient_image(30, 40)[::-1]])
    p = Preprocess(resize=20, crop=(16, 18), interpolation="bicubic", mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4))
    x = p.apply_array(batch)
    assert x.shape == (2, 3, 16, 18) and x.dtype == np.float32
    for i in range(2):
        np.testing.assert_allclose(x[i], p.apply_image(Image.fromarray(batch[i])), atol=1e-5)
    plain = Preprocess().apply_array(batch)
    np.testing.assert_allclose(plain, batch.transpose(0, 3, 1, 2) / 255.0, rtol=1e-6)


def test_apply_array_float_is_taken_as_preprocessed() -> None:
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(Preprocess().apply_array(x), x)
    np.testing.assert_allclose(Preprocess(mean=1.0, std=2.0).apply_array(x), (x - 1.0) / 2.0, rtol=1e-6)
    np.testing.assert_array_equal(Preprocess(crop=2).apply_array(x), x[:, :, 2:4, 2:4])
    with pytest.raises(ConfigError, match="cannot resize float"):
        Preprocess(resize=4).apply_array(x)
    with pytest.raises(DataError, match="4 axes"):
        Preprocess().apply_array(x[0])
    with pytest.raises(DataError, match="uint8"):
        Preprocess().apply_array(x.astype(np.int32))
