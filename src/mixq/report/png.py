"""Static PNG versions of the report's figures (matplotlib), for papers, slides and pull requests."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mixq.atomic import write_atomic
from mixq.errors import BackendUnavailableError, RunDirectoryError
from mixq.report import style
from mixq.report.analysis import ReportData
from mixq.report.timeline import precision_order

DPI = 120


def _new_figure(width: float, height: float) -> Any:
    """A figure not tied to pyplot: no global backend state, safe in threads and headless."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise BackendUnavailableError("the PNG plots need matplotlib: pip install 'mixq[report]'") from None
    return Figure(figsize=(width, height), layout="constrained")


def _finite(values: Any) -> list[float]:
    return [v if v is not None and math.isfinite(v) else math.nan for v in values]


def _depth_ticks(ax: Any, data: ReportData) -> None:
    ids = [row.group.id for row in data.rows]
    if len(ids) <= style.MAX_NAMED_TICKS:
        ax.set_xticks(range(len(ids)), ids, rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("quantizer group (network depth →)")


def sensitivity_png(data: ReportData, path: Path) -> Path:
    fig = _new_figure(11, 4.5)
    ax = fig.add_subplot()
    x = [row.group.index for row in data.rows]
    for number, candidate in enumerate(data.candidates):
        y = _finite(row.sqnr_db.get(candidate) for row in data.rows)
        if all(math.isnan(v) for v in y):
            continue
        ax.plot(x, y, marker="o", markersize=3, color=style.color(number), label=candidate)
    ax.scatter(x, _finite(row.sqnr_db.get(str(row.chosen)) for row in data.rows), s=80, facecolors="none",
               edgecolors=style.CHOSEN_COLOR, label="chosen precision", zorder=3)
    _depth_ticks(ax, data)
    ax.set_ylabel("output SQNR (dB)")
    ax.set_title(style.SENSITIVITY_TITLE, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"))
    return path


def pareto_png(data: ReportData, path: Path) -> Path:
    fig = _new_figure(8, 5)
    ax = fig.add_subplot()
    ax.plot([p.bops_ratio for p in data.curve], _finite(p.predicted_sqnr_db for p in data.curve), marker="o",
            markersize=3, color=style.CURVE_COLOR, label="mixed precision (predicted)")
    measured = [m for m in data.measured if m.sqnr_db is not None]
    if measured:
        ax.scatter([m.bops_ratio for m in measured], _finite(m.sqnr_db for m in measured), marker="s", s=45,
                   color=style.MEASURED_COLOR, label="mixed precision (measured)", zorder=3)
    baselines = [b for b in data.baselines if math.isfinite(b.predicted_sqnr_db)]
    if baselines:
        ax.scatter([b.bops_ratio for b in baselines], [b.predicted_sqnr_db for b in baselines], marker="D", s=50,
                   color=style.BASELINE_COLOR, label="uniform (predicted)", zorder=3)
        for b in baselines:
            ax.annotate(b.precision, (b.bops_ratio, b.predicted_sqnr_db), textcoords="offset points", xytext=(0, -14),
                        ha="center", fontsize=8)
    if math.isfinite(data.chosen_predicted_sqnr_db):
        ax.scatter([data.chosen_bops_ratio], [data.chosen_predicted_sqnr_db], marker="*", s=260,
                   color=style.CHOSEN_COLOR, label="chosen", zorder=4)
    for limit in data.bops_limits:
        ax.axvline(limit, linestyle="--", color=style.CHOSEN_COLOR, alpha=0.6)
    for target in data.sqnr_targets:
        ax.axhline(target, linestyle="--", color=style.MEASURED_COLOR, alpha=0.6)
    ax.set_xlabel("BOPs ratio (to all-W8A16)")
    ax.set_ylabel("output SQNR (dB)")
    ax.set_title(style.PARETO_TITLE, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"))
    return path


def bits_png(data: ReportData, path: Path) -> Path:
    fig = _new_figure(11, 3.5)
    ax = fig.add_subplot()
    x = [row.group.index for row in data.rows]
    ax.bar([i - 0.2 for i in x], [r.chosen.weight_bits for r in data.rows], width=0.4, color=style.WEIGHT_COLOR,
           label="weight bits")
    ax.bar([i + 0.2 for i in x], [r.chosen.act_bits for r in data.rows], width=0.4, color=style.ACT_COLOR,
           label="activation bits")
    _depth_ticks(ax, data)
    ticks = sorted({b for r in data.rows for b in (r.chosen.weight_bits, r.chosen.act_bits)})
    ax.set_yticks(ticks)
    ax.set_ylim(0, max(ticks, default=8) * 1.35)  # headroom so the legend covers no bar
    ax.set_ylabel("bits")
    ax.set_title(style.BITS_TITLE, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"))
    return path


def timeline_png(data: ReportData, path: Path) -> Path:
    """The timeline of :func:`mixq.report.figures.timeline_figure`, float hatched and float runs shaded."""
    fig = _new_figure(11, 3.5)
    ax = fig.add_subplot()
    line = data.timeline
    timed = line.fixed_ms is not None
    names = list(data.candidates)
    for candidate in precision_order(line, names):
        groups = [g for g in line.groups if str(g.precision) == candidate]
        is_float = groups[0].precision.is_float
        color = style.color(names.index(candidate) if candidate in names else len(names))
        ax.bar([g.index for g in groups], [(g.ms or 0.0) if timed else 1.0 for g in groups], width=0.9, color=color,
               hatch=style.FLOAT_HATCH if is_float else None, edgecolor="white" if is_float else color,
               label=f"{candidate} ({'float' if is_float else 'integer'})")
    for first, last in line.bands:
        ax.axvspan(first - 0.5, last + 0.5, color=style.FLOAT_BAND_COLOR, alpha=0.3, zorder=0, linewidth=0)
    paid = [t for t in line.transitions if t.ms is not None]
    if paid:
        ax.scatter([t.consumer_index - 0.5 for t in paid], [t.ms for t in paid], marker="D", s=22,
                   color=style.TRANSITION_COLOR, label="transition paid (edge ms)", zorder=3)
    _depth_ticks(ax, data)
    if timed:
        top = max([g.ms or 0.0 for g in line.groups] + [t.ms or 0.0 for t in paid], default=0.0)
        ax.set_ylim(0, (top or 1.0) * 1.35)  # headroom so the legend covers no bar or marker
        ax.set_ylabel("predicted ms")
    else:
        ax.set_yticks([])
        ax.set_ylim(0, 1.5)
    ax.set_title(f"{style.TIMELINE_TITLE}: {line.summary}", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", ncol=4)
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"))
    return path


def write_pngs(data: ReportData, folder: Path) -> list[Path]:
    """``sensitivity.png``, ``pareto.png``, ``bits.png`` and ``timeline.png`` in ``folder`` (created)."""
    if folder.is_symlink():  # the plots would land wherever the link points
        raise RunDirectoryError(f"{folder} is a symbolic link, not a folder mixq made; remove it and run the report again")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirectoryError(f"cannot write {folder}: {exc.strerror or exc}") from None
    return [sensitivity_png(data, folder / "sensitivity.png"), pareto_png(data, folder / "pareto.png"),
            bits_png(data, folder / "bits.png"), timeline_png(data, folder / "timeline.png")]
