"""The one way mixq writes a file: whole or not at all, never through a planted link.

Every writer (plans, run-directory files, caches, reports, exported models) goes through
:func:`write_atomic`: the content goes to a temporary file created exclusively (unique name, ``O_EXCL``,
so a symlink planted beside the target is never followed) in the target's folder, is flushed to disk,
and then renamed over the target, so a killed process leaves the old file or the new one, never half.
The rename replaces a symlink planted at the target itself (it never writes through it), and the folder
is fsynced after the rename so the new name survives a power cut, not only the new bytes.

The one exception is the append-only measurement log: :func:`append_line` opens it with ``O_NOFOLLOW``
(a planted symlink is refused, not followed) and fsyncs every line.
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
            handle_fd = os.open(tmp, os.O_RDWR | _NOFOLLOW)  # the writer may not swap a link in
            try:
                os.fsync(handle_fd)
            finally:
                os.close(handle_fd)
        else:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data.encode("utf-8") if isinstance(data, str) else data)
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # e.g. a full disk: leave the old file, not a partial one
        raise
    fsync_dir(path.parent)
    return path


def append_line(path: str | Path, line: str) -> None:
    """Append ``line`` (with its newline) to ``path`` and fsync it; refuse to follow a symlink at ``path``.

    ``O_NOFOLLOW`` makes opening a planted link fail (``ELOOP``) instead of appending to its target; a file
    created here gets its folder fsynced too, so the new log survives a power cut.
    """
    path = Path(path)
    created = not path.exists()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW, 0o666)
    try:
        os.write(descriptor, line.encode("utf-8"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    if created:
        fsync_dir(path.parent)


def open_nofollow(path: str | Path, flags: int = os.O_RDONLY) -> int:
    """A descriptor of ``path`` opened without following a symlink there (``OSError`` if it is one)."""
    return os.open(path, flags | _NOFOLLOW)


def fsync_dir(folder: str | Path) -> None:
    """Make a rename or a new file in ``folder`` durable; a no-op where folders cannot be opened (Windows)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:  # some file systems refuse fsync on a folder; the rename itself is still atomic
        pass
    finally:
        os.close(descriptor)


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


#: Permissions of written files: as ``open(path, "w")`` gives them under the process's umask.
_FILE_MODE = _default_mode()


def write_json(path: str | Path, data: Any, indent: int | None = 2) -> Path:
    """``data`` as JSON (numpy scalars as numbers, other unknown values as text), atomically."""
    return write_atomic(path, json.dumps(data, indent=indent, default=jsonable) + "\n")


def jsonable(value: Any) -> Any:
    """How :func:`write_json` stores a value JSON does not know (numpy scalars as numbers, the rest as text)."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)
