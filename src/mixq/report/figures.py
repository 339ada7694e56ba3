"""The interactive figures (plotly): sensitivity along depth, the Pareto curve, the bit-width map, the timeline."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from mixq.errors import BackendUnavailableError
from mixq.report import style
from mixq.report.analysis import ReportData
from mixq.report.timeline import precision_order

try:
    import plotly.graph_objects as go
except ImportError:  # pragma: no cover - exercised only without the extra
    go = None


def _require() -> Any:
    if go is None:
        raise BackendUnavailableError("the HTML report needs plotly: pip install 'mixq[report]'")
    return go


def _finite(values: Iterable[float | None]) -> list[float | None]:
    """Plotly draws gaps for None; infinities (no noise at all) would break its JSON."""
    return [v if v is not None and math.isfinite(v) else None for v in values]


def _depth_axis(fig: Any, data: ReportData) -> None:
    ids = [row.group.id for row in data.rows]
    if len(ids) <= style.MAX_NAMED_TICKS:
        fig.update_xaxes(tickmode="array", tickvals=list(range(len(ids))), ticktext=ids, tickangle=-45)
    fig.update_xaxes(title_text="quantizer group (network depth →)")


def _layout(fig: Any, title: str, height: int = 440) -> Any:
    fig.update_layout(title=title, template="plotly_white", height=height, margin={"l": 60, "r": 20, "t": 60, "b": 40},
                      legend={"orientation": "h", "y": -0.25})
    return fig


def sensitivity_figure(data: ReportData) -> Any:
    """Pandey et al. Fig. 1(c), per group: output SQNR with only that group quantized, one line per candidate."""
    go = _require()
    fig = go.Figure()
    x = [row.group.index for row in data.rows]
    names = [row.group.id for row in data.rows]
    for number, candidate in enumerate(data.candidates):
        y = _finite(row.sqnr_db.get(candidate) for row in data.rows)
        if all(v is None for v in y):
            continue
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=candidate, customdata=names,
                                 line={"color": style.color(number)},
                                 hovertemplate="%{customdata}<br>" + candidate + ": %{y:.2f} dB<extra></extra>"))
    chosen = _finite(row.sqnr_db.get(str(row.chosen)) for row in data.rows)
    fig.add_trace(go.Scatter(x=x, y=chosen, mode="markers", name="chosen precision", customdata=names,
                             text=[str(row.chosen) for row in data.rows],
                             marker={"symbol": "circle-open", "size": 14, "color": style.CHOSEN_COLOR,
                                     "line": {"width": 2}},
                             hovertemplate="%{customdata}<br>chosen %{text}: %{y:.2f} dB<extra></extra>"))
    _depth_axis(fig, data)
    fig.update_yaxes(title_text="output SQNR (dB), higher = less sensitive")
    return _layout(fig, style.SENSITIVITY_TITLE, 480)


def pareto_figure(data: ReportData) -> Any:
    """Pandey et al. Fig. 1(a): the phase-2 trade-off, with uniform baselines, measured points and the choice."""
    go = _require()
    fig = go.Figure()
    curve = data.curve
    fig.add_trace(go.Scatter(
        x=[p.bops_ratio for p in curve], y=_finite(p.predicted_sqnr_db for p in curve), mode="lines+markers",
        name="mixed precision (predicted)", line={"color": style.CURVE_COLOR}, marker={"size": 5},
        customdata=[[p.index, _counts(p.counts)] for p in curve],
        hovertemplate="point %{customdata[0]}<br>BOPs ratio %{x:.4f}<br>predicted %{y:.2f} dB"
                      "<br>%{customdata[1]}<extra></extra>"))
    measured = [m for m in data.measured if m.sqnr_db is not None]
    if measured:
        fig.add_trace(go.Scatter(
            x=[m.bops_ratio for m in measured], y=_finite(m.sqnr_db for m in measured), mode="markers",
            name="mixed precision (measured)", marker={"size": 10, "color": style.MEASURED_COLOR, "symbol": "square"},
            customdata=[[m.index, _fmt(m.agreement)] for m in measured],
            hovertemplate="point %{customdata[0]} measured<br>BOPs ratio %{x:.4f}<br>SQNR %{y:.2f} dB"
                          "<br>agreement %{customdata[1]}<extra></extra>"))
    baselines = [b for b in data.baselines if math.isfinite(b.predicted_sqnr_db)]
    if baselines:
        fig.add_trace(go.Scatter(
            x=[b.bops_ratio for b in baselines], y=[b.predicted_sqnr_db for b in baselines], mode="markers+text",
            name="uniform (predicted)", text=[b.precision for b in baselines], textposition="bottom center",
            marker={"size": 11, "color": style.BASELINE_COLOR, "symbol": "diamond"},
            hovertemplate="uniform %{text}<br>BOPs ratio %{x:.4f}<br>predicted %{y:.2f} dB<extra></extra>"))
    if math.isfinite(data.chosen_predicted_sqnr_db):
        fig.add_trace(go.Scatter(
            x=[data.chosen_bops_ratio], y=[data.chosen_predicted_sqnr_db], mode="markers", name="chosen",
            marker={"size": 18, "color": style.CHOSEN_COLOR, "symbol": "star"},
            hovertemplate="chosen<br>BOPs ratio %{x:.4f}<br>predicted %{y:.2f} dB<extra></extra>"))
    for limit in data.bops_limits:
        fig.add_vline(x=limit, line_dash="dash", line_color=style.CHOSEN_COLOR, annotation_text=f"bops<={limit:g}")
    for target in data.sqnr_targets:
        fig.add_hline(y=target, line_dash="dash", line_color=style.MEASURED_COLOR, annotation_text=f"sqnr>={target:g}")
    fig.update_xaxes(title_text="BOPs ratio (to all-W8A16)")
    fig.update_yaxes(title_text="output SQNR (dB)")
    return _layout(fig, style.PARETO_TITLE, 480)


def bits_figure(data: ReportData) -> Any:
    """Weight and activation bits of the chosen configuration, group by group."""
    go = _require()
    fig = go.Figure()
    x = [row.group.index for row in data.rows]
    names = [row.group.id for row in data.rows]
    for label, color, bits in (("weight bits", style.WEIGHT_COLOR, [r.chosen.weight_bits for r in data.rows]),
                               ("activation bits", style.ACT_COLOR, [r.chosen.act_bits for r in data.rows])):
        fig.add_trace(go.Bar(x=x, y=bits, name=label, marker_color=color, customdata=names,
                             hovertemplate="%{customdata}<br>" + label + ": %{y}<extra></extra>"))
    fig.update_layout(barmode="group", bargap=0.15)
    _depth_axis(fig, data)
    ticks = sorted({b for r in data.rows for b in (r.chosen.weight_bits, r.chosen.act_bits)})
    fig.update_yaxes(title_text="bits", tickvals=ticks, range=[0, max(ticks, default=8) * 1.12])
    return _layout(fig, style.BITS_TITLE, 380)


def timeline_figure(data: ReportData) -> Any:
    """The plan in graph order: one bar per group colored by precision (float hatched, float runs shaded);
    with the measured latency model the bars are the groups' predicted ms and diamonds mark paid edges."""
    go = _require()
    fig = go.Figure()
    line = data.timeline
    timed = line.fixed_ms is not None
    names = list(data.candidates)
    for candidate in precision_order(line, names):
        number = names.index(candidate) if candidate in names else len(names)
        groups = [g for g in line.groups if str(g.precision) == candidate]
        is_float = groups[0].precision.is_float
        fig.add_trace(go.Bar(
            x=[g.index for g in groups], y=[(g.ms or 0.0) if timed else 1.0 for g in groups], width=0.9,
            name=f"{candidate} ({'float' if is_float else 'integer'})",
            marker={"color": style.color(number), "pattern": {"shape": "/" if is_float else ""}},
            customdata=[[g.id, f"{g.macs:,}", _fmt(g.ms)] for g in groups],
            hovertemplate="%{customdata[0]}<br>" + candidate + "<br>MACs %{customdata[1]}"
                          + ("<br>predicted %{customdata[2]} ms" if timed else "") + "<extra></extra>"))
    for first, last in line.bands:
        fig.add_vrect(x0=first - 0.5, x1=last + 0.5, fillcolor=style.FLOAT_BAND_COLOR, opacity=0.25, layer="below",
                      line_width=0)
    paid = [t for t in line.transitions if t.ms is not None]
    if paid:
        fig.add_trace(go.Scatter(
            x=[t.consumer_index - 0.5 for t in paid], y=[t.ms for t in paid], mode="markers",
            name="transition paid (edge ms)", marker={"symbol": "diamond", "size": 9, "color": style.TRANSITION_COLOR},
            customdata=[[t.producer, t.consumer, f"{t.precisions[0]}→{t.precisions[1]}"] for t in paid],
            hovertemplate="%{customdata[0]} → %{customdata[1]}<br>%{customdata[2]}: %{y:.4g} ms<extra></extra>"))
    _depth_axis(fig, data)
    if timed:
        fig.update_yaxes(title_text="predicted ms at the chosen precision")
    else:
        fig.update_yaxes(visible=False, range=[0, 1.2])
    fig.update_layout(barmode="overlay", bargap=0.1)
    return _layout(fig, f"{style.TIMELINE_TITLE}: {line.summary}", 420 if timed else 300)


def all_figures(data: ReportData) -> list[tuple[str, Any]]:
    """``(div id, figure)`` in the order the report shows them."""
    return [("sensitivity", sensitivity_figure(data)), ("pareto", pareto_figure(data)), ("bits", bits_figure(data)),
            ("timeline", timeline_figure(data))]


def _counts(counts: Any) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def plotly_js() -> str:
    """The plotly.js bundle, to inline once so the report opens with no network."""
    _require()
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


def figure_divs(figures: Sequence[tuple[str, Any]]) -> dict[str, str]:
    """Each figure as a ``<div>`` plus the script that draws it (plotly.js itself not included)."""
    config = {"displaylogo": False, "responsive": True}
    return {name: fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{name}", config=config)
            for name, fig in figures}
