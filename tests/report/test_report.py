"""The run report: content read from a real run directory, self-contained HTML, PNGs, clear errors."""

from __future__ import annotations

import html
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from mixq.cli.main import main
from mixq.errors import RunDirectoryError
from mixq.plan import Plan
from mixq.report import analyze, load_run, write_report
from mixq.report.figures import all_figures
from mixq.report.load import REQUIRED_FILES


def test_report_is_one_self_contained_file(report: Path) -> None:
    text = report.read_text()
    assert not re.search(r"<script[^>]+src=", text), "plotly.js must be inlined, not fetched"
    assert not re.search(r"<link[^>]+href=", text)
    assert "Plotly.newPlot" in text and len(text) > 1_000_000, "the plotly.js bundle is inlined"


def test_report_has_the_four_plots_as_plotly_divs(report: Path) -> None:
    text = report.read_text()
    for name in ("sensitivity", "pareto", "bits", "timeline"):
        assert re.search(rf'<div id="fig-{name}" class="plotly-graph-div"', text), name
        assert re.search(rf'Plotly\.newPlot\(\s*"fig-{name}"', text), f"no script draws fig-{name}"


def test_report_tables_show_quality_timings_and_kept_groups(report: Path, run_dir: Path) -> None:
    text = report.read_text()
    for table in ("quality-table", "baselines-table", "evaluations-table", "kept-table", "groups-table",
                  "timings-table"):
        assert f'<table id="{table}">' in text, table
    plan = Plan.load(run_dir)
    assert f"{plan.quality['sqnr_db']:.4g}" in text, "measured SQNR of the chosen configuration"
    timings = json.loads((run_dir / "timings.json").read_text())
    assert all(name in text for name in timings)
    kept = re.search(r'<table id="kept-table">(.*?)</table>', text, re.DOTALL)
    assert kept is not None
    highest = [g for g, p in plan.assignment.items() if str(p) == "w8a16"]
    assert highest, "an agreement target this loose leaves the head at the highest precision"
    for group in highest:
        assert f"<td>{group}</td>" in kept.group(1)
    lowered = [g for g, p in plan.assignment.items() if str(p) != "w8a16"]
    assert all(f"<td>{group}</td>" not in kept.group(1) for group in lowered)


def test_report_shows_the_command_that_reproduces_the_run(report: Path, run_command: str) -> None:
    shown = re.search(r'<pre id="command"><code>(.*?)</code></pre>', report.read_text(), re.DOTALL)
    assert shown is not None and html.unescape(shown.group(1)) == run_command


def test_chosen_point_is_the_plans_point_on_the_curve(run_dir: Path) -> None:
    data = analyze(load_run(run_dir))
    plan = Plan.load(run_dir)
    assert data.chosen_index is not None
    chosen = data.run.curve[data.chosen_index]
    assert chosen.assignment.to_dict() == plan.assignment.to_dict()
    assert data.chosen_bops_ratio == pytest.approx(plan.costs["bops"].ratio)
    pareto = dict(all_figures(data))["pareto"]
    star = next(trace for trace in pareto.data if trace.name == "chosen")
    assert star.x[0] == pytest.approx(plan.costs["bops"].ratio) and star.y[0] == pytest.approx(plan.predicted_sqnr_db)
    measured = next(trace for trace in pareto.data if trace.name == "mixed precision (measured)")
    evaluations = json.loads((run_dir / "evaluations.json").read_text())
    assert sorted(measured.y) == pytest.approx(sorted(e["sqnr_db"] for e in evaluations))


def test_uniform_baselines_sit_where_the_curve_and_bops_convention_say(run_dir: Path) -> None:
    data = analyze(load_run(run_dir))
    baselines = {b.precision: b for b in data.baselines}
    assert {name: b.bops_ratio for name, b in baselines.items()} == pytest.approx(
        {"w4a8": 0.25, "w8a8": 0.5, "w8a16": 1.0})
    # the greedy walk starts at every group at its highest candidate: that is uniform w8a16
    assert baselines["w8a16"].predicted_sqnr_db == pytest.approx(data.curve[0].predicted_sqnr_db)
    assert baselines["w4a8"].predicted_sqnr_db < baselines["w8a8"].predicted_sqnr_db


def test_sensitivity_figure_has_one_line_per_candidate_along_depth(run_dir: Path) -> None:
    data = analyze(load_run(run_dir))
    figure = dict(all_figures(data))["sensitivity"]
    lines = {trace.name: trace for trace in figure.data if trace.mode == "lines+markers"}
    assert set(lines) == {"w4a8", "w8a8", "w8a16"}
    graph = json.loads((run_dir / "graph.json").read_text())
    sensitivity = {(r["group"], r["precision"]): r["sqnr_db"] for r in json.loads((run_dir / "sensitivity.json").read_text())}
    assert list(lines["w4a8"].y) == pytest.approx([sensitivity[(g["id"], "w4a8")] for g in graph])


def test_png_plots_are_written(report: Path) -> None:
    plots = report.parent / "plots"
    for name in ("sensitivity", "pareto", "bits", "timeline"):
        with Image.open(plots / f"{name}.png") as image:
            assert image.format == "PNG" and image.width > 400 and image.height > 200
            assert len(image.convert("L").getcolors(1 << 16) or ()) > 10, f"{name}.png is blank"


def test_report_does_not_import_torch(run_copy: Path) -> None:
    code = ("import sys; from mixq.report import write_report; write_report(sys.argv[1], png=False); "
            "assert 'torch' not in sys.modules, 'the report imported torch'")
    done = subprocess.run([sys.executable, "-c", code, str(run_copy)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert (run_copy / "report.html").is_file() and not (run_copy / "plots").exists()


@pytest.mark.parametrize("name", REQUIRED_FILES)
def test_missing_file_is_named(run_copy: Path, name: str) -> None:
    (run_copy / name).unlink()
    with pytest.raises(RunDirectoryError, match=re.escape(name)):
        write_report(run_copy)
    assert not (run_copy / "report.html").exists()


def test_truncated_file_is_named(run_copy: Path) -> None:
    path = run_copy / "curve.json"
    path.write_text(path.read_text()[:100])
    with pytest.raises(RunDirectoryError, match="curve.json"):
        write_report(run_copy)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(RunDirectoryError, match="does not exist"):
        write_report(tmp_path / "nowhere")


def test_run_made_through_the_api_says_the_command_was_not_recorded(run_copy: Path) -> None:
    config = json.loads((run_copy / "config.json").read_text())
    (run_copy / "config.json").write_text(json.dumps({**config, "command": None}))
    text = write_report(run_copy, png=False).html.read_text()
    assert "Not recorded" in text and "mixq.search" in text


def test_cli_report_command(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(run_copy), "--no-png", "-q"]) == 0
    out = capsys.readouterr().out
    assert str(run_copy / "report.html") in out and (run_copy / "report.html").is_file()
    (run_copy / "plan.json").unlink()
    assert main(["report", str(run_copy), "-q"]) == 2
    err = capsys.readouterr().err
    assert "plan.json" in err and "Traceback" not in err


def test_cli_search_writes_the_report_and_says_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "model.py").write_text("from mixq.backends.torch.testing import ResidualNet\n\n"
                                       "def build():\n    return ResidualNet().eval()\n")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.integers(0, 256, (16, 16, 16, 3), dtype=np.uint8))
    out = tmp_path / "run"
    argv = ["search", f"{tmp_path / 'model.py'}:build", "--data", str(tmp_path / "data.npz"), "--candidates",
            "w4a8,w8a8", "--budget", "bops<=0.3", "--num-samples", "8", "--out", str(out), "-q"]
    assert main(argv) == 0
    assert f"report: {out / 'report.html'}" in capsys.readouterr().out
    assert (out / "report.html").is_file() and (out / "plots" / "pareto.png").is_file()
    shown = re.search(r'<pre id="command"><code>(.*?)</code></pre>', (out / "report.html").read_text(), re.DOTALL)
    assert shown is not None and shlex.split(html.unescape(shown.group(1))) == ["mixq", *argv]


def test_groups_kept_in_float_are_listed(tmp_path: Path) -> None:
    from mixq import api
    from mixq.config import SearchConfig
    from mixq.backends.torch.testing import ResidualNet, random_images

    config = SearchConfig(candidates="w8a8,fp16", budgets=("bops<=1.2",), num_samples=8)
    result = api.search(ResidualNet().eval(), random_images(16), config, out=tmp_path / "run")
    data = analyze(load_run(tmp_path / "run"))
    floated = {g for g, p in result.plan.assignment.items() if p.is_float}
    assert floated and {row.group.id for row in data.kept} == floated
    assert {b.precision: b.bops_ratio for b in data.baselines} == pytest.approx({"w8a8": 0.5, "fp16": 2.0})
    text = write_report(tmp_path / "run", png=False).html.read_text()
    kept = re.search(r'<table id="kept-table">(.*?)</table>', text, re.DOTALL)
    assert kept is not None and all(f"<td>{group}</td>" in kept.group(1) for group in floated)


def test_without_plotly_the_error_says_what_to_install(run_copy: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from mixq.cli.main import _write_report
    from mixq.report import figures

    monkeypatch.setattr(figures, "go", None)
    assert main(["report", str(run_copy), "-q"]) == 2
    assert "pip install 'mixq[report]'" in capsys.readouterr().err
    _write_report(run_copy, Console(stderr=True), Console())  # after a search it is a note, not a failure
    assert "no report" in capsys.readouterr().err and not (run_copy / "report.html").exists()
