"""One real run directory per session (a ~2 s search on a tiny residual net), shared by the report tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mixq import api
from mixq.config import SearchConfig
from mixq.backends.torch.testing import ResidualNet, random_images

COMMAND = "mixq search model.py:build --data calib.npz --budget 'agreement>=0.9' --out run"

pytest.importorskip("plotly", reason="the report needs plotly: pip install 'mixq[report]'")
pytest.importorskip("matplotlib", reason="the PNG plots need matplotlib: pip install 'mixq[report]'")


@pytest.fixture(scope="session")
def run_command() -> str:
    return COMMAND


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished search with a quality target, so evaluations.json holds measured points."""
    out = tmp_path_factory.mktemp("report") / "run"
    config = SearchConfig(candidates="w4a8,w8a8,w8a16", budgets=("agreement>=0.9",), num_samples=16)
    api.search(ResidualNet().eval(), random_images(24), config, out=out, command=COMMAND)
    return out


@pytest.fixture(scope="session")
def report(run_dir: Path) -> Path:
    """report.html and plots/ written once for the read-only checks."""
    from mixq.report import write_report

    files = write_report(run_dir)
    return files.html


@pytest.fixture
def run_copy(run_dir: Path, tmp_path: Path) -> Path:
    """A copy to break or change without disturbing the shared run."""
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("report.html", "plots"))
    return copy
