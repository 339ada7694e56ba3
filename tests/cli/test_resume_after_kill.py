"""A search killed (SIGKILL) during phase 1 resumes: same result, no measurement repeated or lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MODEL_FILE = """
from mixq.backends.torch.testing import ResidualNet

def build():
    return ResidualNet().eval()
"""


def command(model: str, data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "mixq", "search", model, "--data", str(data), "--candidates", "w4a8,w8a8,w8a16",
            "--budget", "bops<=0.4", "--num-samples", "256", "--threads", "1", "--out", str(out), "-q"]


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True) if path.exists() else []


def test_killed_search_resumes_without_repeating_measurements(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_text(MODEL_FILE)
    model = f"{tmp_path / 'model.py'}:build"
    data = tmp_path / "data.npz"
    np.savez(data, x=np.random.default_rng(0).integers(0, 256, (256, 96, 96, 3), dtype=np.uint8))

    reference = tmp_path / "reference"
    subprocess.run(command(model, data, reference), check=True, capture_output=True)
    expected = lines(reference / "measurements.jsonl")

    run = tmp_path / "run"
    log = run / "measurements.jsonl"
    process = subprocess.Popen(command(model, data, run), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(lines(log)) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    kept = [line for line in lines(log) if line.endswith("\n")]  # a torn last line is the one in flight
    assert 3 <= len(kept) < len(expected), "the kill must land inside phase 1"
    assert not (run / "plan.json").exists()

    subprocess.run(command(model, data, run), check=True, capture_output=True)
    final = lines(log)
    assert final[: len(kept)] == kept  # nothing finished was lost or redone
    assert len(final) == len(expected)  # nothing measured twice
    keys = [(r["chunk"], r["group"], r["precision"]) for r in map(json.loads, final)]
    assert len(set(keys)) == len(keys)
    assert sorted(final) == sorted(expected)  # the same measurements, bit for bit
    for name in ("sensitivity.json", "curve.json"):
        assert json.loads((run / name).read_text()) == json.loads((reference / name).read_text())
    assert (json.loads((run / "plan.json").read_text())["assignment"]
            == json.loads((reference / "plan.json").read_text())["assignment"])
