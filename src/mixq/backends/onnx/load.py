"""Loading an ONNX model: from a path or a ``ModelProto``, checked, at an opset QDQ can use.

Every way a file can be wrong (missing, truncated, not ONNX, invalid graph, opset too old or too new)
becomes one ``UnsupportedModelError`` sentence naming the file and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from onnx import version_converter

from mixq.errors import UnsupportedModelError

#: Per-axis (per-channel) QuantizeLinear/DequantizeLinear exist from opset 13 on.
MIN_OPSET = 13
#: Older opsets that ``onnx.version_converter`` can usually lift to ``MIN_OPSET``.
CONVERTIBLE_OPSETS = range(7, MIN_OPSET)
#: INT4/UINT4 initializers with DequantizeLinear need opset 21.
INT4_OPSET = 21


def is_onnx_model(model: object) -> bool:
    """A ``ModelProto`` or a path to a ``.onnx`` file (the file is not opened)."""
    if isinstance(model, onnx.ModelProto):
        return True
    return isinstance(model, (str, os.PathLike)) and str(model).lower().endswith(".onnx")


def describe(model: object) -> str:
    return str(model) if isinstance(model, (str, os.PathLike)) else "the ONNX model"


def load(model: object) -> onnx.ModelProto:
    """A checked copy of ``model`` at opset >= ``MIN_OPSET`` (the caller's proto is never changed)."""
    if isinstance(model, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
    elif isinstance(model, (str, os.PathLike)):
        proto = _read(Path(model))
    else:
        raise UnsupportedModelError(f"the ONNX backend takes a .onnx path or an onnx.ModelProto, not {type(model).__name__}")
    what = describe(model)
    if not proto.graph.node:
        raise UnsupportedModelError(f"{what} has an empty graph (is the file truncated or not an ONNX model?)")
    version = opset(proto)
    if 0 < version < CONVERTIBLE_OPSETS.start:
        raise UnsupportedModelError(
            f"{what} uses opset {version}; mixq needs opset >= {MIN_OPSET} and converts only from "
            f"{CONVERTIBLE_OPSETS.start}: re-export the model with opset_version={MIN_OPSET} or newer"
        )
    _check(proto, what)
    return upgrade(proto, MIN_OPSET, what)


def _read(path: Path) -> onnx.ModelProto:
    if not path.is_file():
        raise UnsupportedModelError(f"ONNX file {path} does not exist")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError, missing external data, ...
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise UnsupportedModelError(
            f"cannot read {path} as an ONNX model ({type(exc).__name__}: {first}); the file is corrupt or "
            "truncated, or not ONNX: export it again"
        ) from None


def opset(proto: onnx.ModelProto) -> int:
    """The version of the default (``ai.onnx``) domain; 0 when the model does not import it."""
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0


def _check(proto: onnx.ModelProto, what: str) -> None:
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        first = (str(exc).strip().splitlines() or ["invalid"])[0][:300]
        raise UnsupportedModelError(f"{what} fails the ONNX checker: {first}") from None
    except ValueError as exc:  # > 2 GB protos: the checker wants a path; the loader already parsed it
        if "2GB" not in str(exc):
            raise UnsupportedModelError(f"{what} fails the ONNX checker: {exc}") from None


def upgrade(proto: onnx.ModelProto, minimum: int, what: str = "the ONNX model") -> onnx.ModelProto:
    """``proto`` at opset >= ``minimum``, converted with ``onnx.version_converter`` when older."""
    version = opset(proto)
    if version == 0:
        raise UnsupportedModelError(f"{what} does not import the standard ONNX operator set (ai.onnx)")
    if version >= minimum:
        return proto
    if version < CONVERTIBLE_OPSETS.start:
        raise UnsupportedModelError(
            f"{what} uses opset {version}; mixq needs opset >= {minimum} and converts only from "
            f"{CONVERTIBLE_OPSETS.start}: re-export the model with opset_version={minimum} or newer"
        )
    try:
        converted = version_converter.convert_version(proto, minimum)
        onnx.checker.check_model(converted)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UnsupportedModelError(
            f"{what} uses opset {version}; mixq needs opset >= {minimum} (per-channel QDQ) and the automatic "
            f"conversion failed ({type(exc).__name__}: {first}); re-export the model with opset_version={minimum} "
            "or newer"
        ) from None
    return converted
