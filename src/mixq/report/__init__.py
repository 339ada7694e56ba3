"""The run report: what a search found, as one offline HTML page plus PNG plots, read from the run directory.

``write_report(RUN)`` needs only the files ``mixq.search`` wrote (no model, no torch), so a report can be
made on another machine or long after the search. Needs ``pip install 'mixq[report]'`` (plotly, matplotlib).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mixq.atomic import write_atomic
from mixq.errors import RunDirectoryError
from mixq.report.analysis import ReportData, analyze
from mixq.report.load import RunData, load_run

REPORT_FILE = "report.html"
PLOTS_DIR = "plots"

__all__ = ["PLOTS_DIR", "REPORT_FILE", "ReportData", "ReportFiles", "RunData", "analyze", "load_run", "write_report"]


@dataclass(frozen=True)
class ReportFiles:
    """Where the report went."""

    html: Path
    pngs: tuple[Path, ...] = ()


def write_report(run_dir: str | Path, png: bool = True) -> ReportFiles:
    """Write ``RUN/report.html`` and (with ``png``) ``RUN/plots/*.png`` from a finished run directory."""
    from mixq.report.html import render_html

    data = analyze(load_run(run_dir))
    html = render_html(data)
    path = data.run.path / REPORT_FILE
    try:
        write_atomic(path, html)
    except OSError as exc:
        raise RunDirectoryError(f"cannot write {path}: {exc.strerror or exc}") from None
    pngs: tuple[Path, ...] = ()
    if png:
        from mixq.report.png import write_pngs

        pngs = tuple(write_pngs(data, data.run.path / PLOTS_DIR))
    return ReportFiles(path, pngs)
