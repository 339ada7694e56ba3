"""The one way mixq writes a file: whole or not at all, never through a planted link.

Every writer (plans, run-directory files, caches, reports, exported models) goes through
:func:`write_atomic`: the content goes to a temporary file created exclusively (unique name, ``O_EXCL``,
so a symlink planted beside the target is never followed) in the target's folder, is flushed to disk,
and then renamed over the target, so a killed process leaves the old file or the new one, never half.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomic(path: str | Path, data: bytes | str | Callable[[Path], None]) -> Path:
    """Write ``data`` (bytes, text, or a function that writes a given path) to ``path`` atomically."""
    path = Path(path)
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        os.chmod(descriptor, _FILE_MODE)  # mkstemp makes 0600; the file gets what open() would have given it
        if callable(data):
            os.close(descriptor)
            data(tmp)
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        else:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data.encode("utf-8") if isinstance(data, str) else data)
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # e.g. a full disk: leave the old file, not a partial one
        raise
    return path


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


#: Permissions of written files: as ``open(path, "w")`` gives them under the process's umask.
_FILE_MODE = _default_mode()


def write_json(path: str | Path, data: Any, indent: int | None = 2) -> Path:
    """``data`` as JSON (numpy scalars as numbers, other unknown values as text), atomically."""
    return write_atomic(path, json.dumps(data, indent=indent, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)
