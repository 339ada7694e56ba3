"""``mixq search MODEL --data synthetic``: end to end, recorded in the run directory and said in the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mixq.cli.main import main
from mixq.cli.parser import build_parser
from mixq.testing.bad_inputs import BATCHNORM_MODEL


def test_search_on_synthetic_data_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("plotly")
    (tmp_path / "model.py").write_text(BATCHNORM_MODEL)
    out = tmp_path / "run"
    code = main(["search", f"{tmp_path / 'model.py'}:build", "--data", "synthetic", "--preprocess", "crop=16",
                 "--num-samples", "8", "--synthetic-iterations", "10", "--candidates", "w4a8,w8a8",
                 "--budget", "agreement>=0.5", "--out", str(out), "-q"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    config = json.loads((out / "config.json").read_text())
    assert config["data"] == "synthetic" and config["synthetic"]["iterations"] == 10
    assert "--data synthetic" in config["command"]
    assert (out / "synthetic.npz").is_file()
    report = (out / "report.html").read_text()
    assert "synthetic data (ZeroQ)" in report and "not from real images" in report

    code = main(["eval", f"{tmp_path / 'model.py'}:build", "--data", "synthetic", "--uniform", "w8a8", "-q"])
    assert code == 2 and "RUN/synthetic.npz" in capsys.readouterr().err
    code = main(["eval", f"{tmp_path / 'model.py'}:build", "--data", str(out / "synthetic.npz"),
                 "--preprocess", "crop=16", "--uniform", "w8a8", "--json", "-q"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["n_samples"] == 8


def test_help_explains_synthetic_data() -> None:
    search = build_parser()._subparsers._group_actions[0].choices["search"]  # type: ignore[union-attr]
    text = " ".join(search.format_help().split())
    assert "synthetic: no images" in text and "ZeroQ" in text and "--synthetic-iterations" in text
