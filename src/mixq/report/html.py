"""The report as one self-contained HTML file: plotly.js inlined, so it opens offline and can be mailed."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import jinja2

from mixq.cost.totals import CostRecord
from mixq.report.analysis import ReportData
from mixq.report.figures import all_figures, figure_divs, plotly_js
from mixq.version import __version__

TEMPLATE = "report.html.j2"


def num(value: Any, digits: int = 4) -> str:
    """Numbers as a person reads them: 4 significant digits, ``-`` for missing, ``∞`` for no noise."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        return f"{value:.{digits}g}"
    return str(value)


def nbytes(value: Any) -> str:
    """Bytes in the unit that keeps 3-4 digits (tiny test models and real ones read alike)."""
    if not isinstance(value, (int, float)) or math.isnan(value):
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f} B"


def pct(value: Any) -> str:
    return "-" if not isinstance(value, (int, float)) or math.isnan(value) else f"{100 * value:.1f}%"


def signed(value: Any, digits: int = 3) -> str:
    """A difference with its sign (``+0.012``, ``-1.3``); ``-`` when either side was missing."""
    return "-" if not isinstance(value, (int, float)) or not math.isfinite(value) else f"{value:+.{digits}g}"


def yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("mixq.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)
    env.globals.update(num=num, pct=pct, nbytes=nbytes, signed=signed, yes_no=yes_no)
    return env


def latency_note(run_path: Any, costs: Mapping[str, CostRecord]) -> str | None:
    """One line from RUN/latency_table.json (a search by measured latency): the plan's ms and how BOPs compared."""
    try:
        table = json.loads((run_path / "latency_table.json").read_text())
    except (OSError, ValueError):
        return None
    summary = (table.get("bops_vs_latency") or {}).get("summary", "")
    latency = costs.get("latency")
    head = f"Measured latency of the quantized ops: {latency.value:.4g} ms ({pct(latency.ratio)} of every group " \
           "at its slowest candidate). " if latency is not None and latency.unit == "ms" else ""
    return (head + summary + ".").strip() or None


def render_html(data: ReportData) -> str:
    """The whole report page as a string."""
    run = data.run
    plan = run.plan
    return _environment().get_template(TEMPLATE).render(
        version=__version__,
        run_name=run.path.resolve().name,
        run_path=str(run.path),
        data=data,
        plan=plan,
        config=run.config,
        counts=sorted(plan.assignment.counts().items()),
        command=run.command,
        timings=list(run.timings.items()),
        latency_note=latency_note(run.path, plan.costs),
        config_json=json.dumps(run.config, indent=2),
        provenance_json=json.dumps(plan.provenance.to_dict(), indent=2),
        divs=figure_divs(all_figures(data)),
        plotly_js=plotly_js(),
    )
