"""What an ``.npz``/``.npy`` data file holds, checked before a data set is built from it.

Arrays are not JSON-like values, so pydantic would add nothing: :func:`check_npz` is the one schema
function for them. The first violation is one DataError naming the array (``x`` or ``y``) and the fix.
"""

from __future__ import annotations

import numpy as np

from mixq.errors import DataError

#: Class indices are int32-sized (what a model's logits are indexed with).
MAX_CLASS_INDEX = 2**31 - 1
#: Finiteness is checked this many samples at a time (no full-size boolean copy of a large x).
_CHUNK = 256
_SAVE = "e.g. numpy.savez(path, x=x, y=y)"


def check_npz(x: np.ndarray, y: np.ndarray | None, source: str) -> None:
    """``x``: samples along axis 0, uint8 NHWC images (4 axes) or float model inputs (NCHW images or any
    layout the model takes), every value finite; ``y``: one integer class index in 0..2^31-1 per sample.

    Raises:
        DataError: the first violation, naming the array, what it holds and the fix.
    """
    _check_x(x, source)
    if y is not None:
        _check_y(y, len(x), source)


def check_image_layout(x: np.ndarray, source: str) -> None:
    """uint8 samples are NHWC images: 4 axes, channels last (an NCHW-looking array gets the transpose fix)."""
    if x.ndim != 4:
        raise DataError(f"{source}: uint8 x must be NHWC images with 4 axes, got shape {x.shape}"
                        + ("; add a channel axis, e.g. x[..., None]" if x.ndim == 3 else ""))
    if x.shape[1] in (1, 3) and x.shape[3] not in (1, 3, 4):
        raise DataError(f"{source}: uint8 x must be NHWC but shape {x.shape} looks NCHW: "
                        "transpose it with x.transpose(0, 2, 3, 1)")


def _check_x(x: np.ndarray, source: str) -> None:
    if x.dtype.kind not in "uif" or x.dtype == np.bool_:
        raise DataError(f"{source}: x must be uint8 (NHWC images) or float (model inputs), got {x.dtype}: "
                        f"convert it, e.g. x.astype(numpy.float32), and save it again ({_SAVE})")
    if x.ndim == 0 or len(x) == 0:
        raise DataError(f"{source}: x holds no samples (shape {x.shape}): save at least one sample along its "
                        f"first axis ({_SAVE})")
    if x.dtype == np.uint8:
        check_image_layout(x, source)
        return
    if x.dtype.kind != "f":
        raise DataError(f"{source}: x must be uint8 (NHWC images) or float (model inputs), got {x.dtype}: "
                        f"store images as uint8 NHWC or inputs as float32 ({_SAVE})")
    if x.ndim < 2:
        raise DataError(f"{source}: x must hold samples along its first axis, got shape {x.shape}: "
                        "e.g. x[:, None] for one value per sample")
    for start in range(0, len(x), _CHUNK):
        finite = np.isfinite(x[start:start + _CHUNK])
        if not finite.all():
            sample = start + int(np.argmin(finite.reshape(len(finite), -1).all(axis=1)))
            raise DataError(f"{source}: x holds NaN or infinite values (first in sample {sample}): replace "
                            "them, e.g. numpy.nan_to_num(x), or drop those samples")


def _check_y(y: np.ndarray, count: int, source: str) -> None:
    if y.ndim != 1 or len(y) != count:
        raise DataError(f"{source}: y has shape {y.shape} but x has {count} samples: y must hold one class "
                        "index per sample (1 axis)")
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise DataError(f"{source}: y must hold integer class indices, got {y.dtype}: save "
                        "y.astype(numpy.int64) with whole class numbers")
    if len(y) and not 0 <= int(y.min()) <= int(y.max()) <= MAX_CLASS_INDEX:
        raise DataError(f"{source}: y holds class indices outside 0..{MAX_CLASS_INDEX} (from {y.min()} to "
                        f"{y.max()}): save one non-negative class index per sample")
