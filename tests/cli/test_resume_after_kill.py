"""A search killed (SIGKILL) during phase 1 or TuneQn resumes: same result, no measurement repeated or lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mixq.cli.main import main


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True) if path.exists() else []


DEEP_MODEL_FILE = """
import torch
from torch import nn


class DeepNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.convs = nn.ModuleList([nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1) for i in range(8)])
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        for conv in self.convs:
            x = torch.relu(conv(x))
        return self.fc(x.mean((2, 3)))


def build():
    return DeepNet().eval()
"""
KILLS = 10


def deep_setup(tmp_path: Path, samples: int, size: int) -> tuple[str, Path]:
    """A nine-group model (so TuneQn walks ten configurations) and ``samples`` images of ``size`` x ``size``."""
    (tmp_path / "deep.py").write_text(DEEP_MODEL_FILE)
    data = tmp_path / "data.npz"
    np.savez(data, x=np.random.default_rng(0).integers(0, 256, (samples, size, size, 3), dtype=np.uint8))
    return f"{tmp_path / 'deep.py'}:build", data


def kill_and_resume(argv: list[str], progress: Callable[[], int], targets: list[int], delays: list[float]) -> list[int]:
    """Run ``argv`` again and again, killing it (SIGKILL) once ``progress()`` reaches the next target plus a random
    delay, until a run finishes; returns the progress seen at each kill that landed before the end."""
    landed: list[int] = []
    for target, delay in zip(targets, delays):
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while progress() < target and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(delay)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            landed.append(progress())
        elif process.returncode == 0:
            return landed
        else:
            raise AssertionError(f"run exited {process.returncode}")
    subprocess.run(argv, check=True, capture_output=True)
    return landed


def test_phase1_killed_at_ten_random_points_resumes_to_the_same_plan(tmp_path: Path) -> None:
    model, data = deep_setup(tmp_path, 32, 16)
    argv = ["search", model, "--data", str(data), "--candidates", "w4a8,w8a8,w8a16", "--budget", "bops<=0.4",
            "--num-samples", "32", "--cache-mb", "0.4", "--threads", "1", "-q", "--no-report"]
    reference = tmp_path / "reference"
    assert main([*argv, "--out", str(reference)]) == 0
    expected = lines(reference / "measurements.jsonl")

    run = tmp_path / "run"
    log = run / "measurements.jsonl"
    rng = np.random.default_rng(11)
    targets = sorted(int(t) for t in rng.choice(np.arange(1, len(expected)), KILLS, replace=False))
    seen: list[list[str]] = [[]]

    def measured() -> int:
        kept = [line for line in lines(log) if line.endswith("\n")]  # a torn last line is the one in flight
        if len(kept) != len(seen[-1]):
            seen.append(kept)
        return len(kept)

    landed = kill_and_resume([sys.executable, "-m", "mixq", *argv, "--out", str(run)], measured, targets,
                             list(rng.uniform(0, 0.02, KILLS)))
    inside = [n for n in landed if n < len(expected)]
    assert len(inside) >= KILLS // 2, f"most kills must land inside phase 1: {landed} of {len(expected)} lines"

    final = lines(log)
    keys = [(r["chunk"], r["group"], r["precision"]) for r in map(json.loads, final)]
    assert len(set(keys)) == len(keys), "a measurement was repeated"
    assert sorted(final) == sorted(expected), "a measurement was lost or differs"  # bit for bit
    for kept in seen:  # every line seen finished stays, in place: nothing finished was lost or redone
        assert final[: len(kept)] == kept
    for name in ("sensitivity.json", "curve.json"):
        assert json.loads((run / name).read_text()) == json.loads((reference / name).read_text())
    assert (json.loads((run / "plan.json").read_text())["assignment"]
            == json.loads((reference / "plan.json").read_text())["assignment"])


def test_tuneqn_killed_at_ten_random_points_resumes_to_the_same_plan(tmp_path: Path) -> None:
    model, data = deep_setup(tmp_path, 256, 32)
    argv = ["search", model, "--data", str(data), "--strategy", "tuneqn", "--candidates", "w8a8,fp32",
            "--budget", "agreement>=0.9", "--num-samples", "256", "--threads", "1", "-q", "--no-report"]
    reference = tmp_path / "reference"
    assert main([*argv, "--out", str(reference)]) == 0
    expected = json.loads((reference / "tuneqn.json").read_text())["iterations"]

    run = tmp_path / "run"
    checkpoints: list[list[dict[str, object]]] = []

    def iterations() -> int:
        try:
            state = json.loads((run / "tuneqn.json").read_text())  # written atomically: whole or absent
        except FileNotFoundError:
            return 0
        if not checkpoints or state["iterations"] != checkpoints[-1]:
            checkpoints.append(state["iterations"])
        return len(state["iterations"])

    rng = np.random.default_rng(12)
    targets = sorted(int(t) for t in rng.integers(0, len(expected), KILLS))
    landed = kill_and_resume([sys.executable, "-m", "mixq", *argv, "--out", str(run)], iterations, targets,
                             list(rng.uniform(0, 0.2, KILLS)))
    inside = [n for n in landed if n < len(expected)]
    assert len(inside) >= KILLS // 2, f"most kills must land inside TuneQn: {landed} of {len(expected)} iterations"

    final = json.loads((run / "tuneqn.json").read_text())["iterations"]
    assert [i["k"] for i in final] == list(range(len(final))), "an iteration was repeated or lost"
    assert final == expected
    for checkpoint in checkpoints:  # every checkpoint seen is a prefix of the end: nothing redone differently
        assert final[: len(checkpoint)] == checkpoint
    assert (json.loads((run / "plan.json").read_text())["assignment"]
            == json.loads((reference / "plan.json").read_text())["assignment"])
