"""Which solver wins on this model: several phase-2 solvers on one phase-1 table, measured alike."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mixq.api import SearchResult, search
from mixq.backends.base import Progress
from mixq.config import SearchConfig
from mixq.core.synthetic import SyntheticData
from mixq.core.tuned import TUNED_FILE
from mixq.data.dataset import Dataset
from mixq.errors import ConfigError
from mixq.rundir import RunDirectory
from mixq.solvers import COMPARED, SOLVERS


@dataclass(frozen=True)
class SolverComparison:
    """Every solver's plan on one sensitivity table, measured on the same evaluation data."""

    results: Mapping[str, SearchResult]
    winner: str
    metric: str
    skipped: Mapping[str, str] = field(default_factory=dict)  # solver -> why it does not apply here

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per solver: cost totals and ratios (``bops``, ``bops_ratio``...), quality, time."""
        rows = []
        for name, result in self.results.items():
            costs = {key: value for cost, record in result.plan.costs.items()
                     for key, value in ((cost, record.value), (f"{cost}_ratio", record.ratio))}
            rows.append({"solver": name, "winner": name == self.winner, **costs, **result.plan.quality,
                         "seconds": result.timings.get("total_s", 0.0)})
        return rows


def compare_solvers(model: object, data: Dataset | np.ndarray | SyntheticData, config: SearchConfig, out: str | Path,
                    solvers: tuple[str, ...] | None = None, progress: Progress | None = None,
                    eval_data: Dataset | None = None, command: str | None = None) -> SolverComparison:
    """Each solver searches in turn (phase 1 runs once; the others resume from ``out``); the winner has the
    best measured quality among the plans that meet the budgets (top-1 with labels, else output SQNR), ties
    to the cheaper plan. ``out/plan.json`` is the winner's. ``solvers`` default: the registry's solvers
    tagged ``compared`` (exhaustive is left out: it only fits tiny models)."""
    solvers = tuple(SOLVERS.names(tag=COMPARED)) if solvers is None else solvers
    if not solvers:
        raise ConfigError("give at least one solver to compare")
    results: dict[str, SearchResult] = {}
    skipped: dict[str, str] = {}
    for name in solvers:
        try:
            results[name] = search(model, data, replace(config, solver=name), out=out, progress=progress,
                                   eval_data=eval_data, command=command)
        except ConfigError as exc:  # e.g. fallback without a quality target
            skipped[name] = str(exc)
    if not results:
        raise ConfigError("no solver applies to these budgets: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    metric = "top1" if all("top1" in r.plan.quality for r in results.values()) else "sqnr_db"
    winner = max(results, key=lambda n: (results[n].plan.quality.get(metric, -math.inf),
                                         -(results[n].plan.ratio(config.cost) or 0.0)))
    comparison = SolverComparison(results, winner, metric, skipped)
    with RunDirectory(out, command) as run:
        run.mark()
        tuned = results[winner].tuned
        if tuned is not None:  # every solver's search tuned its own plan into RUN/tuned.npz: keep the winner's
            tuned.save(run.path / TUNED_FILE)
        run.write_json("plan.json", results[winner].plan.to_dict())
        run.write_json("solvers.json", {"winner": winner, "metric": metric, "rows": comparison.rows(),
                                        "skipped": skipped})
    return comparison
