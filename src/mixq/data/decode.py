"""Pixel values of a decoded image on one scale, whatever its bit depth.

8-bit images (and every mode PIL converts to RGB without loss: palette, grayscale, RGBA, CMYK...) are
divided by 255 exactly as before. High-bit-depth images are scaled, never clipped:

- 16-bit integer images (PIL modes ``I;16*``, what 16-bit PNGs and TIFFs open as) are divided by 65535;
- 32-bit integer images (mode ``I``) are read as 16-bit data (PIL's usual container for it): divided by
  65535, and refused if a value lies outside [0, 65535];
- float images (mode ``F``, e.g. 32-bit float TIFFs) are taken as already in [0, 1], the convention of
  float image formats; a value outside [0, 1], NaN or infinity is refused rather than guessed.

Single-channel high-bit-depth images are repeated over 3 channels, as ``convert("RGB")`` does for 8-bit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from mixq.errors import DataError

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
HIGH_BIT_DEPTH_MODES = (*SIXTEEN_BIT_MODES, "I", "F")


def unit_pixels(img: Image.Image, resize: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    """HWC float32 pixels in [0, 1] of ``img`` after ``resize`` (which keeps the image's mode)."""
    if img.mode not in HIGH_BIT_DEPTH_MODES:
        if img.mode != "RGB":
            img = img.convert("RGB")
        return np.asarray(resize(img), dtype=np.float32) / np.float32(255.0)
    values = np.asarray(img)
    if img.mode == "F":
        scaled = values.astype(np.float32)
        if not np.all(np.isfinite(scaled)) or scaled.min(initial=0.0) < 0.0 or scaled.max(initial=0.0) > 1.0:
            raise DataError(f"a float image must hold values in [0, 1] (got {_range(scaled)}): scale it to [0, 1] "
                            "or save it as an 8- or 16-bit image")
    else:
        if img.mode == "I" and (values.min(initial=0) < 0 or values.max(initial=0) > 65535):
            raise DataError(f"a 32-bit integer image is read as 16-bit data but holds values {_range(values)}: "
                            "save it as an 8- or 16-bit image")
        scaled = (values.astype(np.float64) / 65535.0).astype(np.float32)
    resized = np.asarray(resize(Image.fromarray(np.ascontiguousarray(scaled), mode="F")), dtype=np.float32)
    return np.repeat(resized[:, :, None], 3, axis=2)


def _range(values: np.ndarray) -> str:
    return f"from {values.min()} to {values.max()}" if values.size else "no values"
