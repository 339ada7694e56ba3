"""The run directory: every search leaves its settings, measurements, curve, plan and report here.

Phase-1 measurements are appended to ``measurements.jsonl`` one line at a time (flushed and
fsynced), so a killed run loses at most the measurement in flight; a resumed run reads them back
and repeats none, provided the settings they depend on are unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from filelock import FileLock, Timeout

from mixq.atomic import append_line, jsonable, open_nofollow, write_atomic, write_json
from mixq.errors import RunDirectoryError
from mixq.schema import read_json, validate
from mixq.schema.read import parse_json
from mixq.schema.rundir import MeasurementLine
from mixq.sensitivity.sqnr import Measurement
from mixq.version import __version__

logger = logging.getLogger(__name__)

KEY_FILE = "measurement_key.json"
MEASUREMENTS = "measurements.jsonl"
#: Written first into every run directory: what tells mixq a folder is its own (and safe to write into).
MARKER = ".mixq-run"
#: The lock one search holds on its run directory (``flock``: released by the kernel when the process dies).
LOCK_FILE = ".mixq.lock"
#: Who holds the lock: pid, host, command and start time, for the message a second search gets.
LOCK_INFO = ".mixq.lock.json"
_OWN_FILES = {MARKER, LOCK_FILE, LOCK_INFO}


def is_run_directory(path: str | Path) -> bool:
    """True if ``path`` is missing, empty, or holds a mixq run (so writing there loses none of the user's files).

    A run is recognised by its marker file, or (runs written before the marker existed) by mixq's
    ``measurement_key.json`` or a ``config.json`` that mixq wrote (it records ``mixq_version``).
    """
    path = Path(path)
    if not path.is_dir():
        return not path.exists()
    names = {entry.name for entry in path.iterdir()}
    if not names - _OWN_FILES or MARKER in names or KEY_FILE in names:
        return True
    if "config.json" in names:
        try:
            config = json.loads((path / "config.json").read_bytes())
        except (OSError, ValueError):
            return False
        return isinstance(config, dict) and "mixq_version" in config
    return False


def check_writable(path: str | Path) -> Path:
    """Fail early, before any work, if ``path`` cannot become a run directory; create nothing.

    Creation is left to ``RunDirectory``, after the model and data were accepted, so bad input
    never leaves an empty or partial run directory behind. A folder holding other files than a mixq
    run is refused: the run would overwrite them (a ``config.json`` of the user's, say).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirectoryError(f"{path} is a file, not a directory; choose another --out")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise RunDirectoryError(f"cannot create the run directory {path}: {existing} is a file; choose another --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirectoryError(f"cannot write the run directory {path}: {existing} is not writable; "
                                "choose another --out")
    try:
        recognised = is_run_directory(path)
    except OSError as exc:
        raise RunDirectoryError(f"cannot read the run directory {path}: {exc.strerror or exc}; "
                                "choose another --out") from None
    if not recognised:
        raise RunDirectoryError(f"{path} is not empty and is not a mixq run directory (mixq would overwrite its files); "
                                "choose a new or empty --out, or the --out of an earlier mixq search to resume it")
    check_unlocked(path)
    return path


class RunLock:
    """This process's lock on a run directory, re-entrant within the process (the CLI holds it over search
    and report; ``search`` takes it again inside). Another process fails at once with a message naming the
    holder. ``flock`` is released by the kernel when the holder dies, so a killed run never blocks the next.
    """

    _held: dict[Path, tuple[FileLock, int]] = {}

    def __init__(self, folder: Path, command: str | None = None, record: bool = True) -> None:
        self.folder = folder
        self._key = folder.resolve()
        self._released = False
        lock, count = self._held.get(self._key, (None, 0))
        if lock is None:
            lock = FileLock(str(folder / LOCK_FILE), timeout=0)
            try:
                lock.acquire()
            except Timeout:
                raise RunDirectoryError(f"{folder} is in use by another mixq process ({holder(folder)}); wait for it "
                                        "to finish, or use another --out") from None
            except OSError as exc:
                raise RunDirectoryError(f"cannot lock the run directory {folder}: {exc.strerror or exc}; "
                                        "choose another --out") from None
            try:
                if record:
                        write_json(folder / LOCK_INFO, {"pid": os.getpid(), "host": socket.gethostname(),
                                                    "started": time.time(), "command": command or " ".join(sys.argv)})
            except OSError as exc:
                lock.release()
                raise RunDirectoryError(f"cannot write {folder / LOCK_INFO}: {exc.strerror or exc}; "
                                        "choose another --out") from None
        self._held[self._key] = (lock, count + 1)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        lock, count = self._held.pop(self._key)
        if count > 1:
            self._held[self._key] = (lock, count - 1)
        else:
            lock.release()

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()


def holder(folder: Path) -> str:
    """Who holds ``folder``'s lock, from the info file it wrote."""
    try:
        info = json.loads((folder / LOCK_INFO).read_bytes())
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["started"])))
        return f"pid {int(info['pid'])} on {info['host']}, started {started}: {info['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return f"its details are not readable in {folder / LOCK_INFO}"


def check_unlocked(folder: Path) -> None:
    """Refuse early (before minutes of work) a run directory another process holds; takes nothing."""
    if (folder / LOCK_FILE).is_file():
        RunLock(folder, record=False).release()


class RunDirectory:
    """One search's files, locked for this process while it is open (``with RunDirectory(out) as run``).

    Opening checks that the folder is new, empty or a mixq run, creates it, takes the lock (a second
    search on it fails at once naming the holder); the marker goes in with mixq's first file. Callers accept
    a resume with :meth:`check_key` before their first write, so a refused resume changes nothing.
    """

    def __init__(self, path: str | Path, command: str | None = None) -> None:
        self.path = check_writable(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirectoryError(
                f"cannot write the run directory {self.path}: {exc.strerror or exc}; choose another --out"
            ) from None
        self._lock = RunLock(self.path, command)

    def mark(self) -> None:
        """Write the marker that makes this folder a mixq run, before mixq's first file in it."""
        marker = self.file(MARKER)
        if not marker.exists():
            try:
                write_json(marker, {"mixq_version": __version__})
            except OSError as exc:
                raise RunDirectoryError(f"cannot write {marker}: {exc.strerror or exc}; choose another --out") from None

    def close(self) -> None:
        """Release the lock (the info file stays: it names the last holder)."""
        self._lock.release()

    def __enter__(self) -> RunDirectory:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, data: Any) -> Path:
        self.mark()
        path = self.file(name)
        try:
            write_json(path, data)
        except OSError as exc:
            raise RunDirectoryError(f"cannot write {path}: {exc.strerror or exc}") from None
        return path

    def write_text(self, name: str, text: str) -> Path:
        return self._write(name, text)

    def write_bytes(self, name: str, data: bytes) -> Path:
        return self._write(name, data)

    def _write(self, name: str, data: str | bytes) -> Path:
        self.mark()
        path = self.file(name)
        try:
            write_atomic(path, data)
        except OSError as exc:
            raise RunDirectoryError(f"cannot write {path}: {exc.strerror or exc}") from None
        return path

    def check_key(self, key: dict[str, Any]) -> bool:
        """Accept or refuse resuming with the settings ``key``, writing nothing.

        Returns True when earlier measurements exist and will be reused; raises when they exist but
        were made with other settings. ``search`` calls it before its first write into the folder.
        """
        key_path = self.file(KEY_FILE)
        has_measurements = self.file(MEASUREMENTS).exists()
        if key_path.exists():
            stored = read_json(key_path, "the measurement key", RunDirectoryError,
                               fix="the run directory is damaged: use a new --out directory, or delete this one "
                                   "to start over")
            if not isinstance(stored, dict):
                raise RunDirectoryError(f"the measurement key {key_path} must hold a JSON object, not "
                                        f"{type(stored).__name__}; the run directory is damaged: use a new --out "
                                        "directory, or delete this one to start over")
            wanted = json.loads(json.dumps(key, default=jsonable))
            if stored != wanted:
                changed = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
                raise RunDirectoryError(
                    f"{self.path} holds measurements made with other settings (changed: {', '.join(changed)}); "
                    "use a new --out directory, or delete this one to start over"
                )
            return has_measurements
        if has_measurements:
            raise RunDirectoryError(f"{self.path} has measurements but no {KEY_FILE}; use a new --out directory")
        return False

    def bind(self, key: dict[str, Any]) -> bool:
        """Tie the stored measurements to the settings they depend on (:meth:`check_key`, then store the key)."""
        resumed = self.check_key(key)
        if not self.file(KEY_FILE).exists():
            self.write_json(KEY_FILE, key)
        return resumed


class JsonlMeasurementLog:
    """``MeasurementLog`` backed by an append-only JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_symlink():  # appending would write wherever the link points
            raise RunDirectoryError(f"{path} is a symbolic link, not mixq's measurement log; use a new --out directory")
        if path.exists() and not path.is_file():
            raise RunDirectoryError(f"{path} is not a file, so it cannot be mixq's measurement log; the run directory "
                                    "is damaged: use a new --out directory, or delete this one to start over")
        self._drop_torn_tail()
        self._items = list(self._read())

    def _drop_torn_tail(self) -> None:
        """A run killed mid-write leaves a partial last line; cut it so appends start clean."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            descriptor = open_nofollow(self.path, os.O_RDWR)
            try:
                os.ftruncate(descriptor, data.rfind(b"\n") + 1)
            finally:
                os.close(descriptor)

    def _read(self) -> Iterable[Measurement]:
        """The stored measurements; a line that is not a valid measurement (torn, not UTF-8, NaN, a wrong
        type) is dropped with a warning, so it is measured again rather than trusted."""
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                source = f"{self.path} line {number}"
                try:
                    record = parse_json(raw.decode("utf-8"), source, RunDirectoryError, nonfinite=False)
                    line = validate(MeasurementLine, record, source, RunDirectoryError)
                except UnicodeDecodeError:
                    logger.warning("ignoring %s: not UTF-8 text; it will be measured again", source)
                    continue
                except RunDirectoryError as exc:
                    logger.warning("ignoring %s; it will be measured again", exc)
                    continue
                yield Measurement(line.chunk, line.group, line.precision, line.ratio_sum, line.count)

    def done(self) -> Iterable[Measurement]:
        return list(self._items)

    def add(self, measurement: Measurement) -> None:
        record = {"chunk": measurement.chunk, "group": measurement.group, "precision": str(measurement.precision),
                  "ratio_sum": measurement.ratio_sum, "count": measurement.count}
        try:
            append_line(self.path, json.dumps(record) + "\n")
        except OSError as exc:  # a torn line is cut when the run resumes, so nothing stored is lost
            raise RunDirectoryError(f"cannot append to {self.path}: {exc.strerror or exc}; free space (or fix "
                                    "the directory) and run the same command again to resume") from None
        self._items.append(measurement)
