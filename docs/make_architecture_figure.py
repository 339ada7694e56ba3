"""Draw docs/architecture.png: mixq's data flow, each stage with the module (and registry) that owns it."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

#: (title, owner, registry or None): the stages in order, left to right, top row then bottom row.
STAGES = [
    ("model + unlabeled data", "nn.Module / .onnx, images", None),
    ("QuantGraph", "Backend.trace (mixq.backends)", "BACKENDS"),
    ("Prepared simulation", "mixq.prepared (calibrated once)", None),
    ("SensitivityTable", "strategy + metric (phase 1)", "STRATEGIES, METRICS"),
    ("AllocationProblem", "mixq.solvers.run + cost models", "COST_MODELS, HARDWARE"),
    ("curve + chosen point", "solver (phase 2)", "SOLVERS"),
    ("Plan (plan.json)", "mixq.plan: CostRecords, scheme", None),
    ("QDQ ONNX file", "Backend.export (mixq.export)", "BACKENDS"),
    ("measured quality, report", "run_as_given, mixq.report", None),
]


def main() -> None:
    fig, ax = plt.subplots(figsize=(13, 4.2))
    ax.set_xlim(0, 5)
    ax.set_ylim(0, 2)
    ax.axis("off")
    positions = [(0.5 + i, 1.5) for i in range(5)] + [(4.5 - i, 0.5) for i in range(4)]
    framework = {0, 1, 7}  # stages that cross into a framework (torch / ONNX Runtime)
    for index, ((title, owner, registry), (x, y)) in enumerate(zip(STAGES, positions)):
        colour = "#fde2c8" if index in framework else "#dbe9f7"
        ax.add_patch(FancyBboxPatch((x - 0.44, y - 0.3), 0.88, 0.6, boxstyle="round,pad=0.02", fc=colour, ec="#333"))
        ax.text(x, y + 0.12, title, ha="center", va="center", fontsize=9.5, weight="bold")
        ax.text(x, y - 0.05, owner, ha="center", va="center", fontsize=7.5)
        if registry:
            ax.text(x, y - 0.19, registry, ha="center", va="center", fontsize=7.5, style="italic", color="#205080")
    for (x0, y0), (x1, y1) in zip(positions, positions[1:]):
        if y0 == y1:
            start, end = (x0 + (0.45 if x1 > x0 else -0.45), y0), (x1 + (-0.45 if x1 > x0 else 0.45), y1)
        else:
            start, end = (x0, y0 - 0.31), (x1, y1 + 0.31)
        ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "color": "#333"})
    ax.text(0.05, 0.02, "orange: crosses into a framework (backends only); blue: framework-free, backend-neutral; "
            "italic: the registries that choose the plug-in", fontsize=8, color="#555")
    fig.tight_layout()
    out = Path(__file__).with_name("architecture.png")
    fig.savefig(out, dpi=110)
    print(out)


if __name__ == "__main__":
    main()
