"""Measured latency as a cost: the table as a cost model, its cache, budgets in ms, BOPs vs latency, wiring."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mixq.core.budget import CostBudget, CostUnit, parse_budget
from mixq.core.graph import OpKind, QuantGraph, QuantizerGroup, QuantOp
from mixq.core.precision import Precision, parse_candidates
from mixq.core.tables import SensitivityTable
from mixq.cost.kernel_latency import KernelLatency
from mixq.cost.measured_latency import (
    CACHE_ENV,
    LatencyEntry,
    LatencyTable,
    MeasuredLatency,
    bops_vs_latency,
    cache_dir,
    cache_path,
    fill_table,
    measure_for,
    table_report,
)
from mixq.errors import CapabilityError, ConfigError
from mixq.solvers.ilp import IlpSolver
from mixq.solvers.run import build_problem

FP32, W8A8, W4A8 = (Precision.parse(t) for t in ("fp32", "w8a8", "w4a8"))
CANDIDATES = (FP32, W8A8, W4A8)


@pytest.fixture(autouse=True)
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def graph() -> QuantGraph:
    """Two conv groups: ``a`` (1000 MACs) and ``b`` (3000 MACs)."""
    groups = [QuantizerGroup(name, (QuantOp(name, OpKind.CONV, macs, 10, 1, (f"{name}:x",), f"{name}:w"),), CANDIDATES)
              for name, macs in (("a", 1000), ("b", 3000))]
    return QuantGraph({g.id: g for g in groups}, float_params=20)


#: ms per (group, precision): fp32 slowest, w8a8 fastest (fused), w4a8 in between (not fused).
MS = {("a", FP32): 2.0, ("a", W8A8): 0.5, ("a", W4A8): 1.5, ("b", FP32): 6.0, ("b", W8A8): 1.0, ("b", W4A8): 4.0}


def table() -> LatencyTable:
    kernel = {FP32: "Conv", W8A8: "QLinearConv", W4A8: "Conv"}
    return LatencyTable({k: LatencyEntry(v, kernel[k[1]]) for k, v in MS.items()}, {"model": "m"})


def noiseless(g: QuantGraph) -> SensitivityTable:
    return SensitivityTable({(x.id, p): (60.0 if p == W8A8 else 40.0) for x in g for p in x.candidates
                             if not p.keeps_float32})


def test_cost_reference_and_fixed_read_the_table() -> None:
    g, model = graph(), MeasuredLatency(table())
    assert (model.name, model.unit) == ("latency", "ms")
    assert model.cost(g["a"], W8A8) == 0.5
    assert model.reference(g) == 2.0 + 6.0  # every group at its slowest candidate
    assert model.fixed(g) == 0.0
    assert table().kernels() == {"fp32": {"Conv": 2}, "w8a8": {"QLinearConv": 2}, "w4a8": {"Conv": 2}}


def test_a_missing_entry_is_a_config_error_naming_the_group() -> None:
    partial = LatencyTable({("a", FP32): LatencyEntry(1.0, "Conv")}, {})
    with pytest.raises(ConfigError, match="'b'"):
        MeasuredLatency(partial).reference(graph())
    with pytest.raises(ConfigError, match="w8a8"):
        MeasuredLatency(partial).cost(graph()["a"], W8A8)


def test_budgets_in_ms_and_as_a_fraction() -> None:
    assert parse_budget("latency<=5ms") == CostBudget("latency", 5.0, CostUnit.ABSOLUTE)
    assert str(parse_budget("latency<=5ms")) == "latency<=5ms"
    assert parse_budget("latency<=60%") == CostBudget("latency", 0.6, CostUnit.RATIO)
    assert parse_budget("latency<=0.6") == CostBudget("latency", 0.6, CostUnit.RATIO)
    with pytest.raises(ConfigError, match="only latency takes milliseconds"):
        parse_budget("bops<=5ms")


def test_the_measured_table_is_a_cost_the_solvers_budget() -> None:
    g = graph()
    problem = build_problem(g, noiseless(g), cost="latency", extra_costs={"latency": MeasuredLatency(table())})
    assert problem.reference("latency") == 8.0
    # 25% of 8 ms = 2 ms: only a=w8a8 (0.5) + b=w8a8 (1.0) fits; a=w4a8 + b=w8a8 is 2.5
    point = IlpSolver().solve(problem, [parse_budget("latency<=0.25")])
    assert {k: str(v) for k, v in point.assignment.items()} == {"a": "w8a8", "b": "w8a8"}
    assert point.costs["latency"] == pytest.approx(1.5)
    absolute = IlpSolver().solve(problem, [parse_budget("latency<=3ms")])
    assert absolute.costs["latency"] <= 3.0
    # BOPs would call w4a8 the cheapest; the measured table does not
    assert problem.min_cost("latency") == pytest.approx(1.5)


def test_a_hardware_latency_table_takes_precedence(tmp_path: Path) -> None:
    path = tmp_path / "hw.yaml"
    path.write_text("name: t\ncost:\n  latency:\n    default: {fp32: 4.0, w8a8: 1.0, w4a8: 0.5}\n")
    g = graph()
    problem = build_problem(g, noiseless(g), cost="latency", hardware=str(path),
                            extra_costs={"latency": MeasuredLatency(table())})
    assert isinstance(problem.model("latency"), KernelLatency)
    with pytest.raises(ConfigError, match="ONNX model"):
        build_problem(g, noiseless(g), cost="latency")


def test_fill_table_measures_once_and_reuses_the_cache(cache_root: Path) -> None:
    calls: list[tuple[str, Precision]] = []

    def measure(group: str, precision: Precision) -> LatencyEntry:
        calls.append((group, precision))
        return LatencyEntry(MS[(group, precision)], "Conv")

    key = {"model": "abc", "machine": {"cpu": "x"}}
    progress: list[tuple[str, int, int]] = []
    first = fill_table([("a", FP32), ("a", W8A8)], key, measure, lambda *a: progress.append(a))
    assert (first.measured, len(calls)) == (2, 2)
    assert progress[-1][1:] == (2, 2) and progress[0][1:] == (0, 2)
    assert cache_dir() == cache_root / "latency" and cache_path(key).is_file()
    again = fill_table([("a", FP32), ("a", W8A8), ("b", W4A8)], key, measure)
    assert again.measured == 1 and calls[-1] == ("b", W4A8)  # only the new entry
    assert again.ms("a", W8A8) == 0.5 and list(again.entries) == [("a", FP32), ("a", W8A8), ("b", W4A8)]
    third = fill_table([("a", FP32), ("b", W4A8)], key, measure)
    assert third.measured == 0 and len(calls) == 3
    other_machine = fill_table([("a", FP32)], {**key, "machine": {"cpu": "y"}}, measure)
    assert other_machine.measured == 1


def test_an_unreadable_cache_file_is_measured_again() -> None:
    key = {"model": "abc"}
    cache_path(key).parent.mkdir(parents=True)
    cache_path(key).write_text("{not json")
    result = fill_table([("a", FP32)], key, lambda g, p: LatencyEntry(2.0, "Conv"))
    assert result.measured == 1
    assert json.loads(cache_path(key).read_text())["entries"][0]["ms"] == 2.0


def test_table_round_trips_through_json() -> None:
    original = table()
    restored = LatencyTable.from_dict(json.loads(json.dumps(original.to_dict())))
    assert restored.entries == original.entries and restored.key == original.key


def test_bops_vs_latency_known_answers() -> None:
    g = graph()
    proportional = LatencyTable({(x.id, p): LatencyEntry(x.macs * p.bits_per_mac / 1e6, "k") for x in g
                                 for p in CANDIDATES}, {})
    stats = bops_vs_latency(g, proportional)
    assert stats["entries"]["n"] == 6
    assert stats["entries"]["spearman"] == pytest.approx(1.0)
    assert stats["entries"]["pearson"] == pytest.approx(1.0)
    assert stats["within_group"] == {"groups": 2, "mean_spearman": pytest.approx(1.0)}
    assert [p["precision"] for p in stats["uniform_models"]["points"]] == ["w4a8", "w8a8", "fp32"]
    assert stats["uniform_models"]["spearman"] == pytest.approx(1.0)

    measured = bops_vs_latency(g, table())
    # within a group BOPs order w4a8 < w8a8 < fp32, the table w8a8 < w4a8 < fp32: Spearman 0.5
    assert measured["within_group"]["mean_spearman"] == pytest.approx(0.5)
    uniform = {p["precision"]: p["ms"] for p in measured["uniform_models"]["points"]}
    assert uniform == {"w4a8": 5.5, "w8a8": 1.5, "fp32": 8.0}
    assert measured["uniform_models"]["spearman"] == pytest.approx(0.5)
    expected = float(np.corrcoef([1000 * 32, 1000 * 64, 1000 * 1024, 3000 * 32, 3000 * 64, 3000 * 1024],
                                 [1.5, 0.5, 2.0, 4.0, 1.0, 6.0])[0, 1])
    assert measured["entries"]["pearson"] == pytest.approx(expected)
    assert "Spearman" in measured["summary"]
    assert "bops_vs_latency" in table_report(g, table())


def test_correlation_is_none_when_undefined() -> None:
    g = graph()
    flat = LatencyTable({(x.id, p): LatencyEntry(1.0, "k") for x in g for p in CANDIDATES}, {})
    stats = bops_vs_latency(g, flat)
    assert stats["entries"]["spearman"] is None and stats["entries"]["pearson"] is None
    assert "n/a" in stats["summary"]
    assert not math.isnan(bops_vs_latency(g, table())["entries"]["spearman"])


def test_a_torch_model_cannot_be_measured() -> None:
    pytest.importorskip("torch")
    from mixq.backends import get_backend

    with pytest.raises(CapabilityError, match="needs an ONNX model.*export it to ONNX first"):
        measure_for(get_backend("torch"), object())


def test_search_refuses_measured_latency_for_a_torch_model(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from mixq.api import search
    from mixq.config import SearchConfig
    from mixq.backends.torch.testing import TinyConvNet, random_images

    config = SearchConfig(candidates=parse_candidates("w8a8,w8a16"), budgets=("latency<=0.6",), cost="latency",
                          num_samples=2)
    with pytest.raises(CapabilityError, match="needs an ONNX model"):
        search(TinyConvNet(), random_images(2), config, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before any work


def test_milliseconds_with_a_relative_hardware_table_are_refused(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from mixq.api import search
    from mixq.config import SearchConfig
    from mixq.backends.torch.testing import TinyConvNet, random_images

    path = tmp_path / "hw.yaml"
    path.write_text("name: t\ncost:\n  latency:\n    default: {w8a8: 1.0, w8a16: 2.0}\n")
    config = SearchConfig(candidates=parse_candidates("w8a8,w8a16"), budgets=("latency<=5ms",), cost="latency",
                          hardware=str(path), num_samples=2)
    with pytest.raises(ConfigError, match="relative time per MAC"):
        search(TinyConvNet(), random_images(2), config)


def test_the_report_shows_one_line(tmp_path: Path) -> None:
    pytest.importorskip("jinja2")
    from mixq.cost.totals import CostRecord
    from mixq.report.html import latency_note

    assert latency_note(tmp_path, {}) is None  # not a latency search
    (tmp_path / "latency_table.json").write_text(json.dumps(table_report(graph(), table())))
    line = latency_note(tmp_path, {"latency": CostRecord(1.5, "ms", 0.1875)})
    assert line.startswith("Measured latency of the quantized ops: 1.5 ms (18.8% of every group")
    assert "mean within-group Spearman +0.50" in line
