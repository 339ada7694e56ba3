"""Progress bars with ETA (rich) for the library's ``progress(stage, done, total)`` callbacks."""

from __future__ import annotations

import json
import sys
import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn


class BarProgress:
    """One bar per stage; a stage's bar appears on its first call and completes on done == total."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("elapsed"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console, transient=False,
        )
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        task = self._tasks.get(stage)
        if task is None:
            task = self._progress.add_task(stage, total=total, completed=done)
            self._tasks[stage] = task
        self._progress.update(task, completed=done, total=total)
        if done >= total:
            self._progress.refresh()
            # the next call for this stage (e.g. another evaluation) starts a fresh bar
            del self._tasks[stage]

    def __enter__(self) -> BarProgress:
        self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._progress.stop()


class JsonProgress:
    """Machine-readable progress: one JSON object per line on stderr, throttled per stage."""

    def __init__(self, min_interval_s: float = 0.5) -> None:
        self._last: dict[str, float] = {}
        self._min_interval = min_interval_s

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last.get(stage, 0.0) < self._min_interval:
            return
        self._last[stage] = now
        sys.stderr.write(json.dumps({"event": "progress", "stage": stage, "done": done, "total": total}) + "\n")
        sys.stderr.flush()

    def __enter__(self) -> JsonProgress:
        return self

    def __exit__(self, *args: object) -> None:
        return None


class NoProgress:
    def __call__(self, stage: str, done: int, total: int) -> None:
        return None

    def __enter__(self) -> NoProgress:
        return self

    def __exit__(self, *args: object) -> None:
        return None
