"""What the CLI prints after a command: short rich tables, the numbers a person decides on."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from mixq.api import SearchResult


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def print_search(console: Console, result: SearchResult) -> None:
    plan = result.plan
    table = Table(title="mixq search: chosen configuration", show_header=False)
    table.add_row("budgets", ", ".join(plan.budgets))
    table.add_row("precisions", ", ".join(f"{k}: {v}" for k, v in sorted(plan.assignment.counts().items())))
    table.add_row("BOPs ratio (to all-W8A16)", _fmt(plan.ratio("bops")))
    size = plan.costs.get("size")
    if size is not None:
        table.add_row("weight size", f"{size.value / 1e6:.3f} MB ({100 * size.ratio:.1f}% of float)")
    table.add_row("predicted SQNR (phase 1 sum)", f"{plan.predicted_sqnr_db:.2f} dB")
    quality = plan.quality
    for key, label in (("sqnr_db", "measured SQNR (dB)"), ("agreement", "top-1 agreement with float"),
                       ("top1", "top-1"), ("top5", "top-5"), ("n_samples", "evaluation samples"),
                       ("evaluations", "real evaluations made")):
        if key in quality:
            table.add_row(label, _fmt(quality[key]))
    latency = plan.costs.get("latency")
    if latency is not None:
        table.add_row("predicted latency", f"{latency.value:.3g} ms ({latency.ratio:.2f} x float)")
    measured = quality.get("file")
    if isinstance(measured, dict) and "latency_ms" in measured:
        float_ms = measured.get("float_latency_ms") or float("nan")
        parts = [f"{measured['latency_ms']:.3g} ms ({measured['latency_ms'] / float_ms:.2f} x float {float_ms:.3g} ms)"]
        parts += [f"{label} {_fmt(measured[key])}" for key, label in (("agreement", "agreement"), ("top1", "top-1"),
                                                                     ("sqnr_db", "SQNR dB")) if key in measured]
        table.add_row("exported file, measured", ", ".join(parts))
    verified = plan.provenance.solver_details.get("verified")
    timings = result.timings
    tuned = result.tuned
    if tuned is not None:
        details = tuned.details
        table.add_row(f"tuned ({tuned.method})",
                      f"{details.get('steps', '?')} steps, {_fmt(details.get('seconds'))} s; top-1 agreement on the "
                      f"calibration samples {_fmt(details.get('agreement_before'))} -> "
                      f"{_fmt(details.get('agreement_after'))}" + (" (RUN/tuned.npz)" if plan.tuned else ""))
    table.add_row("time", ", ".join(f"{k.removesuffix('_s')} {v:.1f}s" for k, v in timings.items()
                                    if k in ("calibration_s", "phase1_s", "phase2_s", "tuning_s", "evaluation_s",
                                             "verify_s", "total_s")))
    console.print(table)
    if isinstance(verified, dict) and verified.get("note"):
        console.print(f"judged as files: {verified['note']} (RUN/verified.json)", highlight=False, soft_wrap=True)
    top = result.graph.ids
    highest = [g for g in top if plan.assignment[g] == max(result.graph[g].candidates, key=lambda p: p.bits_per_mac)]
    if highest and len(highest) < len(top):
        shown = ", ".join(highest[:12]) + (f" (+{len(highest) - 12} more)" if len(highest) > 12 else "")
        console.print(f"kept at the highest precision: {shown}")
    if result.run_dir is not None:
        console.print(f"run directory: {result.run_dir} (plan.json, sensitivity.json, curve.json, config.json)")


def print_inspect(console: Console, report: dict[str, Any]) -> None:
    table = Table(title=f"{len(report['groups'])} quantizer groups, {report['quantized_ops']} ops, "
                        f"{report['total_macs'] / 1e6:.1f} M MACs per sample, {report['float_params'] / 1e6:.2f} M params")
    for column in ("#", "group", "kinds", "ops", "MACs", "weights", "candidates"):
        table.add_column(column)
    for index, group in enumerate(report["groups"]):
        table.add_row(str(index), group["id"], ",".join(group["kinds"]), str(len(group["ops"])),
                      f"{group['macs']:,}", f"{group['weight_params']:,}", ",".join(group["candidates"]))
    console.print(table)
    for reason in report["kept_in_float"]:
        console.print(f"kept in float: {reason}")


def print_comparison(console: Console, comparison: Any) -> None:
    """One row per solver; the winner is marked (best measured quality within the budgets)."""
    metric = comparison.metric
    table = Table(title=f"solvers on this model (winner by measured {metric})")
    for column in ("solver", "BOPs ratio", "size ratio", metric, "agreement", "real evaluations", "time (s)"):
        table.add_column(column)
    for row in comparison.rows():
        mark = " *" if row["winner"] else ""
        table.add_row(row["solver"] + mark, _fmt(row.get("bops_ratio")), _fmt(row.get("size_ratio")),
                      _fmt(row.get(metric)), _fmt(row.get("agreement")), _fmt(row.get("evaluations")),
                      f"{row['seconds']:.1f}")
    console.print(table)
    for name, why in comparison.skipped.items():
        console.print(f"{name} not run: {why}", highlight=False, soft_wrap=True)
    console.print(f"winner: {comparison.winner} (its plan is in plan.json)")
