"""Colors and labels shared by the interactive (plotly) and static (matplotlib) figures, so both read alike."""

from __future__ import annotations

#: One color per candidate, in the order the candidates were given (tab10, readable on white).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
CURVE_COLOR = "#1f77b4"
MEASURED_COLOR = "#2ca02c"
BASELINE_COLOR = "#7f7f7f"
CHOSEN_COLOR = "#d62728"
WEIGHT_COLOR = "#1f77b4"
ACT_COLOR = "#ff7f0e"
#: The shading behind a run of float groups on the timeline, and the markers of paid transitions.
FLOAT_BAND_COLOR = "#bbbbbb"
TRANSITION_COLOR = "#000000"
#: Float candidates are hatched on the timeline, so integer and float read apart whatever their colors.
FLOAT_HATCH = "//"

#: Above this many groups, depth axes show indices instead of group names.
MAX_NAMED_TICKS = 40

SENSITIVITY_TITLE = "Per-group sensitivity along depth (only that group quantized, the rest float)"
PARETO_TITLE = "Pareto curve: BOPs vs predicted output SQNR"
BITS_TITLE = "Chosen bit-widths along depth"
TIMELINE_TITLE = "Integer and float regions along the network"


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]
