"""The report as a person sees it: headless Chromium runs the page offline and the plots must really draw.

Plotly adds ``svg.main-svg`` elements only when its JavaScript runs, so finding them in the dumped DOM
proves the inlined plotly.js loaded without network and drew every figure.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (apt-get install -y chromium; .ci/run does it)")

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    command = [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_plots_render_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    done = chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", report.resolve().as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    chunks = re.split(r'<div id="fig-', dom)[1:]
    names = [chunk.split('"', 1)[0] for chunk in chunks]
    assert names == ["sensitivity", "pareto", "bits", "timeline"], names
    for name, chunk in zip(names, chunks):
        figure = chunk.split("</section>", 1)[0]
        assert "js-plotly-plot" in figure and 'class="main-svg"' in figure, f"plotly did not draw {name}"
    assert dom.count('class="main-svg"') >= 6
    assert 'class="scatterlayer' in dom and 'class="barlayer' in dom, "the traces themselves were drawn"
    for table in ("quality-table", "kept-table", "timings-table", "baselines-table"):
        assert f'<table id="{table}">' in dom, table


def test_screenshot_is_not_blank(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    done = chromium(tmp_path, "--virtual-time-budget=5000", f"--screenshot={shot}", "--window-size=1200,1600",
                    "--hide-scrollbars", report.resolve().as_uri())
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (1200, 1600)
        colors = image.convert("RGB").getcolors(1 << 20) or []
    assert len(colors) > 200, "a page with drawn plots has many distinct colors"
