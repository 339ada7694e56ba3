"""The report's "Deployed files" section and the integer/float timeline, from verified.json and latency_model.json.

The run directory is a real search over ResidualNet (conv1 -> conv2 -> conv3 -> head.fc, candidates w8a8 and
fp32) whose plan.json is replaced by a known plan, plus synthetic verified.json and latency_model.json as
the judge step and the deployed-latency measurement will write them.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from mixq import api
from mixq.backends.torch.testing import ResidualNet, random_images
from mixq.config import SearchConfig
from mixq.core.precision import Precision
from mixq.cost.deployed import DeployedLatency
from mixq.errors import RunDirectoryError
from mixq.report import analyze, load_run, write_report
from mixq.report.figures import all_figures

#: conv1 float, conv2 integer, conv3 and the head float: two runs of float groups along graph order.
KNOWN_PLAN = {"conv1": "fp32", "conv2": "w8a8", "conv3": "fp32", "head.fc": "fp32"}
#: The chain plus a skip from conv1 to the head: through it every float group is one connected region.
EDGES = (("conv1", "conv2"), ("conv2", "conv3"), ("conv3", "head.fc"), ("conv1", "head.fc"))
UNARY_MS = {"w8a8": 0.25, "fp32": 0.5}
SWITCH_MS = 0.125  # what an edge between an integer and a float group costs; same-kind edges are free


@pytest.fixture(scope="module")
def float_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deployed") / "run"
    config = SearchConfig(candidates="w8a8,fp32", budgets=("bops<=1.2",), num_samples=8)
    api.search(ResidualNet().eval(), random_images(16), config, out=out)
    return out


def latency_records(groups: list[str]) -> dict[str, Any]:
    """latency_model.json as DeployedLatency.to_records writes it."""
    unary = {(g, Precision.parse(p)): ms for g in groups for p, ms in UNARY_MS.items()}
    precisions = [Precision.parse(p) for p in UNARY_MS]
    pairs = {edge: {(a, b): (SWITCH_MS if a.is_float != b.is_float else 0.0) for a in precisions for b in precisions}
             for edge in EDGES}
    model = DeployedLatency(unary, pairs, fixed_ms=0.0625, reference_ms=2.0, runtime="onnxruntime",
                            key={"threads": 1}, probes=6)
    return model.to_records()


def verified_records(faster: bool = True) -> dict[str, Any]:
    files = [
        {"name": "float", "kind": "float", "file": "verified/float.onnx", "latency_ms": 2.0,
         "quality": {"agreement": 1.0}, "predicted_quality": {"agreement": 1.0}},
        {"name": "uniform w8a8", "kind": "uniform", "file": "verified/uniform.onnx", "latency_ms": 1.5,
         "predicted_latency_ms": 1.25, "quality": {"agreement": 0.8125, "sqnr_db": 18.5},
         "predicted_quality": {"agreement": 0.875, "sqnr_db": 19.25}, "meets_target": False},
        {"name": "plan 0", "kind": "plan", "file": "verified/plan0.onnx", "latency_ms": 1.75 if faster else 2.25,
         "predicted_latency_ms": 1.6875, "quality": {"agreement": 0.9375, "sqnr_db": 27.5},
         "predicted_quality": {"agreement": 0.96875, "sqnr_db": 28.0}, "meets_target": True,
         "assignment": KNOWN_PLAN},
    ]
    return {"runtime": "onnxruntime", "threads": 1, "rounds": 7, "target": "agreement>=0.9", "files": files,
            "chosen": "plan 0", "faster_than_float": faster,
            "note": "plan 0 is the fastest file that meets agreement>=0.9"}


def _write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2))


@pytest.fixture
def deployed_run(float_run: Path, tmp_path: Path) -> Path:
    """The search's run with the known plan, verified.json and latency_model.json."""
    run = tmp_path / "run"
    shutil.copytree(float_run, run, ignore=shutil.ignore_patterns("report.html", "plots"))
    plan = json.loads((run / "plan.json").read_text())
    assert set(plan["assignment"]) == set(KNOWN_PLAN), "ResidualNet's groups changed: update KNOWN_PLAN"
    _write(run / "plan.json", {**plan, "assignment": KNOWN_PLAN, "precision_counts": {"fp32": 3, "w8a8": 1}})
    _write(run / "verified.json", verified_records())
    _write(run / "latency_model.json", latency_records(list(KNOWN_PLAN)))
    return run


def _table(text: str, name: str) -> str:
    found = re.search(rf'<table id="{name}">(.*?)</table>', text, re.DOTALL)
    assert found is not None, f"no {name}"
    return found.group(1)


def test_deployed_files_section_shows_measured_next_to_predicted(deployed_run: Path) -> None:
    text = write_report(deployed_run, png=False).html.read_text()
    table = _table(text, "deployed-table")
    rows = re.findall(r"<tr([^>]*)>(.*?)</tr>", table, re.DOTALL)
    files = {re.search(r'data-file="([^"]+)"', attrs).group(1): (attrs, cells)  # type: ignore[union-attr]
             for attrs, cells in rows if "data-file" in attrs}
    assert list(files) == ["float", "uniform w8a8", "plan 0"]
    chosen = [name for name, (attrs, _) in files.items() if 'class="chosen"' in attrs]
    assert chosen == ["plan 0"] and "★ chosen" in files["plan 0"][1]
    plan0 = files["plan 0"][1]
    for shown in ("1.75", "1.688", "0.875×", "0.9375", "0.9688", "-0.0312", "27.5", "28", "-0.5", "yes"):
        assert f">{shown}<" in plan0, shown
    assert ">no<" in files["uniform w8a8"][1] and ">0.75×<" in files["uniform w8a8"][1]
    assert "agreement" in table and "SQNR (dB)" in table, "a column per metric present in any file"
    assert "7 rounds of interleaved timing" in text and "1 thread" in text
    assert "plan 0 is the fastest file that meets agreement&gt;=0.9" in text
    verdict = re.search(r'<p id="deployed-verdict"([^>]*)>(.*?)</p>', text, re.DOTALL)
    assert verdict is not None and "warning" not in verdict.group(1) and "returned plan 0" in verdict.group(2)


def test_no_plan_faster_than_float_is_said_plainly(deployed_run: Path) -> None:
    _write(deployed_run / "verified.json", verified_records(faster=False))
    text = write_report(deployed_run, png=False).html.read_text()
    verdict = re.search(r'<p id="deployed-verdict" class="warning"><b>(.*?)</b></p>', text, re.DOTALL)
    assert verdict is not None
    assert verdict.group(1).startswith("No plan beat float in onnxruntime")
    assert "uniform w8a8" in verdict.group(1) and "1.5 ms" in verdict.group(1) and "2 ms" in verdict.group(1)


def test_timeline_counts_regions_on_the_models_edges(deployed_run: Path) -> None:
    data = analyze(load_run(deployed_run))
    line = data.timeline
    assert line.from_edges and line.summary == "1 float region, 2 transitions"
    assert line.float_regions == ((0, 2, 3),), "the skip conv1 -> head.fc joins the float groups"
    assert line.bands == ((0, 0), (2, 3)), "shaded as two runs along graph order"
    assert [(t.producer, t.consumer, t.ms) for t in line.transitions] == [
        ("conv1", "conv2", SWITCH_MS), ("conv2", "conv3", SWITCH_MS)]
    assert line.predicted_ms == pytest.approx(0.0625 + 3 * 0.5 + 0.25 + 2 * SWITCH_MS)
    figure = dict(all_figures(data))["timeline"]
    bars = {trace.name: trace for trace in figure.data if trace.type == "bar"}
    assert set(bars) == {"w8a8 (integer)", "fp32 (float)"}
    assert list(bars["fp32 (float)"].x) == [0, 2, 3] and list(bars["fp32 (float)"].y) == [0.5, 0.5, 0.5]
    assert bars["fp32 (float)"].marker.pattern.shape == "/" and not bars["w8a8 (integer)"].marker.pattern.shape
    marks = next(trace for trace in figure.data if trace.name == "transition paid (edge ms)")
    assert list(marks.x) == [0.5, 1.5] and list(marks.y) == [SWITCH_MS, SWITCH_MS]
    assert len(figure.layout.shapes) == 2, "one shaded band per run of float groups"
    assert "1 float region, 2 transitions" in figure.layout.title.text
    text = write_report(deployed_run).html.read_text()
    assert re.search(r'<div id="fig-timeline" class="plotly-graph-div"', text)
    assert "<b>1 float region, 2 transitions</b>" in text
    assert re.search(r"Predicted latency of the plan in onnxruntime: <b>2.062 ms</b>", text)
    assert "<td>conv1 → conv2</td>" not in text and "<td>fp32 → w8a8</td>" in _table(text, "transitions-table")
    assert (deployed_run / "plots" / "timeline.png").is_file()


def test_timeline_without_the_model_counts_along_graph_order(deployed_run: Path) -> None:
    (deployed_run / "latency_model.json").unlink()
    data = analyze(load_run(deployed_run))
    assert not data.timeline.from_edges and data.timeline.summary == "2 float regions, 2 transitions"
    assert data.timeline.float_regions == ((0,), (2, 3)) and data.timeline.predicted_ms is None
    figure = dict(all_figures(data))["timeline"]
    assert all(trace.name != "transition paid (edge ms)" for trace in figure.data)
    assert data.deployed is not None, "verified.json alone is still shown"


def test_run_without_the_new_files_renders_as_before(run_copy: Path) -> None:
    run = load_run(run_copy)
    assert run.verified is None and run.latency_model is None
    data = analyze(run)
    assert data.deployed is None and not data.timeline.float_regions
    assert data.timeline.summary == "0 float regions, 0 transitions"
    text = write_report(run_copy, png=False).html.read_text()
    assert 'id="deployed-section"' not in text and 'id="timeline-latency"' not in text
    assert '<div id="fig-timeline"' in text and "verified.json" not in text


@pytest.mark.parametrize("name, content, message", [
    ("verified.json", "{", r"verified.json is not valid JSON"),
    ("verified.json", json.dumps({**verified_records(), "files": [{"name": "float"}]}),
     r"verified.json has invalid fields: files.0.kind"),
    ("verified.json", json.dumps({**verified_records(), "rounds": "seven"}), r"verified.json has invalid fields: rounds"),
    ("latency_model.json", json.dumps({**latency_records(["conv1"]), "unary": [{"group": "conv1",
                                       "precision": "w8a8", "ms": -1.0}]}),
     r"latency_model.json has invalid fields: unary.0.ms"),
    ("latency_model.json", json.dumps({**latency_records(["conv1"]), "pairs": [
        {"producer": "conv1", "consumer": "conv2", "precisions": ["w8a8"], "ms": 1.0}]}),
     r"latency_model.json has invalid fields: pairs.0.precisions"),
])
def test_a_malformed_optional_file_is_a_clear_error_naming_it(deployed_run: Path, name: str, content: str,
                                                             message: str) -> None:
    (deployed_run / name).write_text(content)
    with pytest.raises(RunDirectoryError, match=message):
        write_report(deployed_run, png=False)
    assert not (deployed_run / "report.html").exists()


def test_latency_model_round_trips_through_the_schema(deployed_run: Path) -> None:
    records = json.loads((deployed_run / "latency_model.json").read_text())
    loaded = load_run(deployed_run).latency_model
    assert loaded is not None and loaded.to_records() == DeployedLatency.from_records(records).to_records()


def test_negative_edge_terms_and_fixed_part_load(deployed_run: Path) -> None:
    """A fitted model's edges carry how a consumer shifts its producer's kernel from the mean, so they (and the
    fixed part, wall minus profiled node time) can be negative: the report reads them."""
    records = latency_records(["conv1"])
    records["fixed_ms"] = -0.4
    records["pairs"][0]["ms"] = -0.05
    (deployed_run / "latency_model.json").write_text(json.dumps(records))
    run = load_run(deployed_run)
    assert run.latency_model is not None and run.latency_model.fixed_ms == -0.4


def test_the_timeline_total_is_the_plans_predicted_latency(deployed_run: Path) -> None:
    """fixed + groups + transitions + edges inside regions = the model's total for the plan (total_cost)."""
    from mixq.cost.base import total_cost
    from mixq.report.timeline import timeline

    run = load_run(deployed_run)
    line = timeline(run)
    assert run.latency_model is not None and line.predicted_ms is not None
    assert line.predicted_ms == pytest.approx(total_cost(run.latency_model, run.graph, run.plan.assignment))
    assert all(t.precisions[0].is_float != t.precisions[1].is_float for t in line.transitions)
