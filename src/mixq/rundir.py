"""The run directory: every search leaves its settings, measurements, curve, plan and report here.

Phase-1 measurements are appended to ``measurements.jsonl`` one line at a time (flushed and
fsynced), so a killed run loses at most the measurement in flight; a resumed run reads them back
and repeats none, provided the settings they depend on are unchanged.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mixq.errors import RunDirectoryError
from mixq.atomic import write_atomic, write_json
from mixq.schema import read_json, validate
from mixq.schema.read import parse_json
from mixq.schema.rundir import MeasurementLine
from mixq.sensitivity.sqnr import Measurement

logger = logging.getLogger(__name__)

KEY_FILE = "measurement_key.json"
MEASUREMENTS = "measurements.jsonl"


def check_writable(path: str | Path) -> Path:
    """Fail early, before any work, if ``path`` cannot become a run directory; create nothing.

    Creation is left to ``RunDirectory``, after the model and data were accepted, so bad input
    never leaves an empty or partial run directory behind.
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
    return path


class RunDirectory:
    """One search's files. Creating it checks that it can be written."""

    def __init__(self, path: str | Path) -> None:
        self.path = check_writable(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise RunDirectoryError(
                f"cannot write the run directory {self.path}: {exc.strerror or exc}; choose another --out"
            ) from None

    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, data: Any) -> Path:
        path = self.file(name)
        try:
            write_json(path, data)
        except OSError as exc:
            raise RunDirectoryError(f"cannot write {path}: {exc.strerror or exc}") from None
        return path

    def write_text(self, name: str, text: str) -> Path:
        path = self.file(name)
        try:
            write_atomic(path, text)
        except OSError as exc:
            raise RunDirectoryError(f"cannot write {path}: {exc.strerror or exc}") from None
        return path

    def bind(self, key: dict[str, Any]) -> bool:
        """Tie the stored measurements to the settings they depend on.

        Returns True when earlier measurements exist and are reused; raises when they exist but
        were made with other settings.
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
            if stored != json.loads(json.dumps(key)):
                changed = sorted(k for k in set(stored) | set(key) if stored.get(k) != json.loads(json.dumps(key.get(k))))
                raise RunDirectoryError(
                    f"{self.path} holds measurements made with other settings (changed: {', '.join(changed)}); "
                    "use a new --out directory, or delete this one to start over"
                )
            return has_measurements
        if has_measurements:
            raise RunDirectoryError(f"{self.path} has measurements but no {KEY_FILE}; use a new --out directory")
        self.write_json(KEY_FILE, key)
        return False


class JsonlMeasurementLog:
    """``MeasurementLog`` backed by an append-only JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._drop_torn_tail()
        self._items = list(self._read())

    def _drop_torn_tail(self) -> None:
        """A run killed mid-write leaves a partial last line; cut it so appends start clean."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.path.open("r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)

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
            with self.path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:  # a torn line is cut when the run resumes, so nothing stored is lost
            raise RunDirectoryError(f"cannot append to {self.path}: {exc.strerror or exc}; free space (or fix "
                                    "the directory) and run the same command again to resume") from None
        self._items.append(measurement)
