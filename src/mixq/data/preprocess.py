"""Image preprocessing: resize, centre crop, scale to [0, 1], normalize.

A ``Preprocess`` is what turns a user's images into the tensors the model was trained on; getting it
wrong silently ruins every accuracy figure, so it is explicit, printable (``str`` round-trips to the
``--preprocess`` string) and validated when built. Resizing uses PIL (no torch needed), with the same
size and crop arithmetic as torchvision's ``Resize(int)`` and ``CenterCrop``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from mixq.data.decode import unit_pixels
from mixq.errors import ConfigError, DataError

INTERPOLATIONS: dict[str, Image.Resampling] = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}
KEYS = ("resize", "crop", "interpolation", "mean", "std")
EXAMPLE = "resize=256 crop=224 interpolation=bicubic mean=0.485,0.456,0.406 std=0.229,0.224,0.225"

#: The largest resize or crop side, in pixels: 16384 (a 16384x16384 RGB float image is 3 GB); a larger
#: size is a typo, refused here rather than reported later as a broken image file.
MAX_SIDE = 16384


def _size(value: Any, what: str, allow_int: bool) -> int | tuple[int, int]:
    """Check a size: a positive int (when allowed) or a pair of positive ints (H, W), at most ``MAX_SIDE``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if value <= 0:
            raise ConfigError(f"{what} must be positive, got {value}")
        _check_side(int(value), what)
        return int(value) if allow_int else (int(value), int(value))
    if isinstance(value, Sequence) and len(value) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        if min(value) <= 0:
            raise ConfigError(f"{what} must be positive, got {value[0]}x{value[1]}")
        _check_side(int(max(value)), what)
        return (int(value[0]), int(value[1]))
    raise ConfigError(f"{what} must be an int or a pair (height, width) of ints, got {value!r}")


def _check_side(side: int, what: str) -> None:
    if side > MAX_SIDE:
        raise ConfigError(f"{what}={side} is larger than {MAX_SIDE} pixels a side: give the size the model takes, "
                          f"e.g. --preprocess \"{EXAMPLE}\"")


def _floats(value: Any, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in (value if isinstance(value, Sequence) else (value,)))
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be numbers, one per channel, got {value!r}") from None
    if not values or not all(np.isfinite(values)):
        raise ConfigError(f"{what} must be finite numbers, one per channel, got {value!r}")
    return values


def _format_size(size: int | tuple[int, int]) -> str:
    if isinstance(size, int):
        return str(size)
    return str(size[0]) if size[0] == size[1] else f"{size[0]}x{size[1]}"


@dataclass(frozen=True)
class Preprocess:
    """Resize, then centre crop, then scale pixels to [0, 1], then ``(x - mean) / std``.

    Attributes:
        resize: an int resizes the shorter side to it, keeping the aspect ratio; ``(H, W)`` resizes
            to exactly that; None keeps the size.
        crop: centre crop ``(H, W)`` (an int means a square); None keeps the whole image.
        interpolation: bilinear, bicubic, nearest or lanczos.
        mean, std: per channel (or one value for all channels), on the [0, 1] scale.
    """

    resize: tuple[int, int] | int | None = None
    crop: tuple[int, int] | None = None
    interpolation: str = "bilinear"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.resize is not None:
            object.__setattr__(self, "resize", _size(self.resize, "resize", allow_int=True))
        if self.crop is not None:
            object.__setattr__(self, "crop", _size(self.crop, "crop", allow_int=False))
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {self.interpolation!r}")
        if self.mean is not None:
            object.__setattr__(self, "mean", _floats(self.mean, "mean"))
        if self.std is not None:
            std = _floats(self.std, "std")
            if min(std) <= 0:
                raise ConfigError(f"std must be positive, got {','.join(map(repr, std))}")
            object.__setattr__(self, "std", std)
        if self.mean is not None and self.std is not None and 1 not in (len(self.mean), len(self.std)) \
                and len(self.mean) != len(self.std):
            raise ConfigError(f"mean has {len(self.mean)} values but std has {len(self.std)}: give one per channel")

    @classmethod
    def parse(cls, spec: str) -> Preprocess:
        """Read ``"resize=256 crop=224 interpolation=bicubic mean=0.485,0.456,0.406 std=..."``."""
        fields: dict[str, Any] = {}
        for item in spec.split():
            key, sep, value = item.partition("=")
            key = key.strip().lower()
            if not sep or key not in KEYS or not value:
                raise ConfigError(f"preprocess item {item!r} is not understood: use key=value with keys "
                                  f"{', '.join(KEYS)}, e.g. \"{EXAMPLE}\"")
            if key in fields:
                raise ConfigError(f"preprocess item {item!r} repeats {key}: give each key once")
            try:
                if key in ("resize", "crop"):
                    fields[key] = _parse_size(value, allow_int=key == "resize")
                elif key == "interpolation":
                    if value.lower() not in INTERPOLATIONS:
                        raise ValueError
                    fields[key] = value.lower()
                else:
                    fields[key] = tuple(float(v) for v in value.split(","))
            except ValueError:
                hint = {"resize": "N (shorter side) or HxW", "crop": "N or HxW",
                        "interpolation": "|".join(INTERPOLATIONS)}.get(key, "comma-separated numbers")
                raise ConfigError(f"preprocess item {item!r} has a bad value: {key} takes {hint} "
                                  f"(valid keys: {', '.join(KEYS)})") from None
        try:
            return cls(**fields)
        except ConfigError as exc:
            raise ConfigError(f"preprocess {spec!r}: {exc}") from None

    @classmethod
    def coerce(cls, value: Preprocess | str | None) -> Preprocess | None:
        """Accept a Preprocess, a spec string or None (as factories and the CLI give them)."""
        if value is None or isinstance(value, Preprocess):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        raise ConfigError(f"preprocessing must be a Preprocess or a string like \"{EXAMPLE}\", got {type(value).__name__}")

    def __str__(self) -> str:
        items = []
        if self.resize is not None:
            items.append(f"resize={self.resize}" if isinstance(self.resize, int)
                         else f"resize={self.resize[0]}x{self.resize[1]}")
        if self.crop is not None:
            items.append(f"crop={_format_size(self.crop)}")
        if self.interpolation != "bilinear":
            items.append(f"interpolation={self.interpolation}")
        if self.mean is not None:
            items.append("mean=" + ",".join(repr(v) for v in self.mean))
        if self.std is not None:
            items.append("std=" + ",".join(repr(v) for v in self.std))
        return " ".join(items)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) an image of this size comes out with, without decoding it."""
        if self.resize is not None:
            height, width = _resized(self.resize, height, width)
        if self.crop is not None:
            _check_crop(self.crop, height, width)
            height, width = self.crop
        return height, width

    def apply_image(self, img: Image.Image) -> np.ndarray:
        """Decode one PIL image into a float32 CHW array (grayscale, palette and RGBA become RGB); 16-bit and
        float images are scaled, not clipped (:mod:`mixq.data.decode`)."""
        x = self._crop(unit_pixels(img, self._resize), axes=(0, 1))
        return self._normalize(np.ascontiguousarray(x.transpose(2, 0, 1)), channel_axis=0)

    def apply_array(self, x: np.ndarray) -> np.ndarray:
        """An already-decoded batch: NHWC uint8 (scaled by 1/255) or NCHW float (taken as already scaled).

        Float input cannot be resized (that needs torch or a per-channel PIL round trip that would lose
        precision); crop and normalization apply to both.
        """
        if x.ndim != 4:
            raise DataError(f"a batch must have 4 axes (NHWC uint8 or NCHW float), got shape {x.shape}")
        if x.dtype == np.uint8:
            if self.resize is not None:
                x = np.stack([self._resize_hwc(img) for img in x]) if len(x) else x
            x = self._crop(x, axes=(1, 2)).astype(np.float32) / np.float32(255.0)
            x = x.transpose(0, 3, 1, 2)
        elif np.issubdtype(x.dtype, np.floating):
            if self.resize is not None:
                raise ConfigError(f"cannot resize float arrays ({self}): store the images as NHWC uint8, "
                                  "or resize them before saving and drop resize= from the preprocessing")
            x = self._crop(x, axes=(2, 3)).astype(np.float32, copy=False)
        else:
            raise DataError(f"array data must be uint8 (NHWC) or float (NCHW), got {x.dtype}")
        return self._normalize(np.ascontiguousarray(x, dtype=np.float32), channel_axis=1)

    def _resize(self, img: Image.Image) -> Image.Image:
        if self.resize is None:
            return img
        height, width = _resized(self.resize, img.height, img.width)
        if (height, width) == (img.height, img.width):
            return img
        return img.resize((width, height), INTERPOLATIONS[self.interpolation])

    def _resize_hwc(self, img: np.ndarray) -> np.ndarray:
        """Resize one HWC uint8 image channel by channel, so any channel count works."""
        return np.stack([np.asarray(self._resize(Image.fromarray(np.ascontiguousarray(img[:, :, c]))))
                         for c in range(img.shape[2])], axis=-1)

    def _crop(self, x: np.ndarray, axes: tuple[int, int]) -> np.ndarray:
        if self.crop is None:
            return x
        (crop_h, crop_w), height, width = self.crop, x.shape[axes[0]], x.shape[axes[1]]
        _check_crop(self.crop, height, width)
        top, left = round((height - crop_h) / 2.0), round((width - crop_w) / 2.0)
        index = [slice(None)] * x.ndim
        index[axes[0]], index[axes[1]] = slice(top, top + crop_h), slice(left, left + crop_w)
        return x[tuple(index)]

    def _normalize(self, x: np.ndarray, channel_axis: int) -> np.ndarray:
        if self.mean is None and self.std is None:
            return x
        channels = x.shape[channel_axis]
        shape = [1] * x.ndim
        shape[channel_axis] = channels
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and len(values) not in (1, channels):
                raise ConfigError(f"{name} has {len(values)} values but the data has {channels} channels: "
                                  f"give one value per channel (or a single value)")
        mean = np.broadcast_to(np.asarray(self.mean or (0.0,), np.float32), (channels,)).reshape(shape)
        std = np.broadcast_to(np.asarray(self.std or (1.0,), np.float32), (channels,)).reshape(shape)
        return ((x - mean) / std).astype(np.float32, copy=False)


def _parse_size(value: str, allow_int: bool) -> int | tuple[int, int]:
    parts = value.lower().split("x")
    if len(parts) == 1:
        size = int(parts[0])
        if size <= 0:
            raise ValueError
        return size if allow_int else (size, size)
    if len(parts) == 2:
        height, width = int(parts[0]), int(parts[1])
        if min(height, width) <= 0:
            raise ValueError
        return (height, width)
    raise ValueError


def _resized(resize: int | tuple[int, int], height: int, width: int) -> tuple[int, int]:
    """The (H, W) after resizing: an int is the shorter side (aspect kept), a pair the exact size."""
    return _shorter_side(height, width, resize) if isinstance(resize, int) else resize


def _check_crop(crop: tuple[int, int], height: int, width: int) -> None:
    crop_h, crop_w = crop
    if crop_h > height or crop_w > width:
        raise DataError(f"the crop {crop_h}x{crop_w} is larger than the image ({height}x{width} after resizing): "
                        f"resize first, e.g. --preprocess \"resize={max(crop_h, crop_w) * 8 // 7} "
                        f"crop={_format_size(crop)}\"")


def _shorter_side(height: int, width: int, size: int) -> tuple[int, int]:
    """torchvision's ``Resize(int)``: the shorter side becomes ``size``, the longer one is truncated."""
    if height <= width:
        return size, max(1, int(size * width / height))
    return max(1, int(size * height / width)), size

