"""The "Deployed files" section: each exported file's measured latency and quality beside the predictions.

The search predicts (a latency model, a simulated quality); the judge step exports the best plans, runs
them in the runtime and measures them (``verified.json``). Showing both side by side is how a reader
sees whether the predictions held and why the returned plan was returned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mixq.schema.verified import VerifiedFile, VerifiedFileSet

#: Quality keys of verified.json in the order the table shows them, with their column labels.
QUALITY_COLUMNS = {"agreement": "agreement", "top1": "top-1", "top5": "top-5", "sqnr_db": "SQNR (dB)",
                   "drop": "drop"}


def _value(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


@dataclass(frozen=True)
class QualityCell:
    """One quality metric of one file: measured on the file and as the simulation predicted it."""

    metric: str
    measured: float | None
    predicted: float | None

    @property
    def difference(self) -> float | None:
        """Measured minus predicted (None unless both are numbers; ``inf - inf`` is None too)."""
        if self.measured is None or self.predicted is None:
            return None
        difference = self.measured - self.predicted
        return None if math.isnan(difference) else difference


@dataclass(frozen=True)
class FileRow:
    """One exported file as the table shows it."""

    name: str
    kind: str
    file: str | None
    latency_ms: float
    predicted_ms: float | None
    vs_float: float | None  # latency as a fraction of the float file's (what ``latency<=0.5`` reads)
    quality: tuple[QualityCell, ...]
    meets_target: bool | None
    chosen: bool


@dataclass(frozen=True)
class DeployedFiles:
    """The judge's files, how they were timed, and what it concluded."""

    runtime: str
    threads: int | None
    rounds: int
    target: str | None
    metrics: tuple[tuple[str, str], ...]  # (key, label) of each quality column
    rows: tuple[FileRow, ...]
    chosen: str | None
    faster_than_float: bool
    note: str
    float_ms: float | None

    @property
    def verdict(self) -> str:
        """One plain sentence: which file was returned and how it compares with float, or that none beat it."""
        quantized = [row for row in self.rows if row.kind != "float"]
        fastest = min(quantized, key=lambda row: row.latency_ms, default=None)
        float_text = f"float's {self.float_ms:.4g} ms" if self.float_ms is not None else "float"
        if not self.faster_than_float:
            head = f"No plan beat float in {self.runtime}"
            if fastest is not None:
                head += f": the fastest quantized file ({fastest.name}) took {fastest.latency_ms:.4g} ms against " \
                        f"{float_text}"
            return head + (f"; the judge returned {self.chosen}." if self.chosen else ".")
        chosen = next((row for row in self.rows if row.chosen), None)
        if chosen is None:
            return f"A quantized file beat {float_text} in {self.runtime}; none was returned."
        ratio = f" ({chosen.vs_float:.3g}× float)" if chosen.vs_float is not None else ""
        return f"The judge returned {chosen.name}: {chosen.latency_ms:.4g} ms against {float_text}{ratio}."


def deployed_files(verified: VerifiedFileSet) -> DeployedFiles:
    """The table's rows from ``verified.json``: ratios to the float file, quality measured vs predicted."""
    float_ms = next((f.latency_ms for f in verified.files if f.kind == "float"), None)
    metrics = _metrics(verified.files)
    rows = tuple(_row(f, float_ms, metrics, verified.chosen) for f in verified.files)
    return DeployedFiles(verified.runtime, verified.threads, verified.rounds, verified.target,
                         tuple((key, QUALITY_COLUMNS.get(key, key)) for key in metrics), rows, verified.chosen,
                         verified.faster_than_float, verified.note, float_ms)


def _metrics(files: list[VerifiedFile]) -> tuple[str, ...]:
    """Every quality key some file has (measured or predicted): the known ones first, then the rest by name."""
    present = {key for f in files for key in (*f.quality, *f.predicted_quality)}
    return tuple(key for key in QUALITY_COLUMNS if key in present) + tuple(sorted(present - set(QUALITY_COLUMNS)))


def _row(record: VerifiedFile, float_ms: float | None, metrics: tuple[str, ...], chosen: str | None) -> FileRow:
    ratio = record.latency_ms / float_ms if float_ms else None
    cells = tuple(QualityCell(key, _value(record.quality.get(key)), _value(record.predicted_quality.get(key)))
                  for key in metrics)
    return FileRow(record.name, record.kind, record.file, record.latency_ms, record.predicted_latency_ms, ratio,
                   cells, record.meets_target, record.name == chosen)
