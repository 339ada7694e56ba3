"""The exported file as the judge: plans exported, timed interleaved, scored as files; the decision rules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from mixq.api import search  # noqa: E402
from mixq.config import SearchConfig  # noqa: E402
from mixq.core.assignment import Assignment, uniform  # noqa: E402
from mixq.core.graph import OpKind, QuantGraph, QuantOp, QuantizerGroup  # noqa: E402
from mixq.core.precision import Precision, parse_candidates  # noqa: E402
from mixq.core.quality import Quality  # noqa: E402
from mixq.core.tables import SensitivityTable  # noqa: E402
from mixq.cost import default_cost_models  # noqa: E402
from mixq.solvers.base import AllocationProblem  # noqa: E402
from mixq.core.budget import parse_budget  # noqa: E402
from mixq.verify import FP32, Judged, JudgeSettings, _decide  # noqa: E402

W8 = Precision.parse("w8a8")


def _problem(candidates: str = "w8a8,fp32") -> AllocationProblem:
    cands = parse_candidates(candidates)
    groups = {name: QuantizerGroup(name, (QuantOp(name, OpKind.CONV, 100, 10, 2, inputs=(f"{name}_in",)),), cands)
              for name in ("a", "b")}
    table = SensitivityTable({(g, p): 30.0 for g in groups for p in cands if not p.keeps_float32})
    return AllocationProblem(QuantGraph(groups, float_params=20), table, default_cost_models(), "bops")


def _file(name: str, kind: str, assignment: Assignment | None, ms: float, agreement: float) -> Judged:
    judged = Judged(name, kind, assignment, Path(f"{name}.onnx"), samples_ms=[ms])
    judged.quality = Quality(100, agreement=agreement)
    return judged


def test_fastest_file_meeting_the_target_wins_not_the_fastest_prediction() -> None:
    problem = _problem()
    target = parse_budget("agreement>=0.99")
    mixed = Assignment({"a": W8, "b": FP32})
    files = [_file("float", "float", None, 5.0, 1.0),
             _file("uniform w8a8", "uniform", uniform(problem.graph, W8), 2.0, 0.97),
             _file("plan 0", "plan", mixed, 3.0, 0.995)]
    files[1].meets_target, files[2].meets_target = False, True
    verdict = _decide(files, problem, target, (), JudgeSettings())
    assert verdict.chosen is not None and verdict.chosen.name == "plan 0"
    assert verdict.faster_than_float


def test_a_target_met_in_simulation_but_missed_in_the_file_is_caught() -> None:
    problem = _problem()
    target = parse_budget("agreement>=0.99")
    mixed = Assignment({"a": W8, "b": FP32})
    plan = _file("plan 0", "plan", mixed, 2.0, 0.95)
    plan.predicted_quality = Quality(100, agreement=0.999)  # the simulation said yes
    plan.meets_target = False  # the file says no
    verdict = _decide([_file("float", "float", None, 5.0, 1.0), plan], problem, target, (), JudgeSettings())
    assert verdict.chosen is not None and verdict.chosen.kind == "float"
    assert not verdict.faster_than_float
    assert "not faster than float" in verdict.note


def test_never_a_plan_slower_than_float_when_float_is_allowed() -> None:
    problem = _problem()
    files = [_file("float", "float", None, 2.0, 1.0), _file("plan 0", "plan", uniform(problem.graph, W8), 3.0, 1.0)]
    files[1].meets_target = True
    verdict = _decide(files, problem, parse_budget("agreement>=0.9"), (), JudgeSettings())
    assert verdict.chosen is not None and verdict.chosen.kind == "float"


def test_without_fp32_among_candidates_the_best_found_is_returned_marked() -> None:
    problem = _problem("w4a8,w8a8")
    files = [_file("float", "float", None, 2.0, 1.0), _file("plan 0", "plan", uniform(problem.graph, W8), 3.0, 1.0)]
    files[1].meets_target = True
    verdict = _decide(files, problem, parse_budget("agreement>=0.9"), (), JudgeSettings())
    assert verdict.chosen is not None and verdict.chosen.name == "plan 0"
    assert not verdict.faster_than_float and "marked as not faster" in verdict.note


def test_a_latency_budget_is_checked_on_the_measured_file() -> None:
    problem = _problem()
    budget = parse_budget("latency<=0.5")
    files = [_file("float", "float", None, 4.0, 1.0), _file("plan 0", "plan", uniform(problem.graph, W8), 2.5, 1.0)]
    verdict = _decide(files, problem, None, (budget,), JudgeSettings())  # type: ignore[arg-type]
    assert verdict.chosen is None and "marked unverified" in verdict.note  # 2.5 > 0.5 x 4.0


@pytest.fixture(scope="module")
def residual_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    import onnx

    from mixq.backends.onnx.testing import residual

    root = tmp_path_factory.mktemp("judge")
    path = root / "residual.onnx"
    onnx.save(residual(16, 10), str(path))
    data = np.random.default_rng(0).standard_normal((32, 3, 16, 16)).astype(np.float32)
    return path, data


def test_search_judges_its_plans_as_files(residual_onnx: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, data = residual_onnx
    config = SearchConfig(candidates=parse_candidates("w8a8,fp32"), budgets=("agreement>=0.9",), num_samples=8,
                          cost="latency", latency_model="kernels", threads=1, verify=2)
    result = search(str(path), data, config, out=tmp_path / "run")
    verified = json.loads((tmp_path / "run" / "verified.json").read_text())
    names = [f["name"] for f in verified["files"]]
    assert names[0] == "float" and ("uniform w8a8" in names or any(n.startswith("plan") for n in names))
    assert all(f["latency_ms"] > 0 for f in verified["files"])
    for judged in verified["files"]:
        assert (tmp_path / "run" / judged["file"]).is_file()
        if judged["kind"] != "float":
            # the file's quality is measured on the evaluation data, next to the simulation's
            assert judged["quality"]["n_samples"] == len(data) and "agreement" in judged["predicted_quality"]
    chosen = next(f for f in verified["files"] if f["name"] == verified["chosen"])
    assert result.plan.assignment.to_dict() == chosen["assignment"]
    assert result.plan.quality["file"]["latency_ms"] == pytest.approx(chosen["latency_ms"])
    assert verified["chosen"] is not None and chosen["latency_ms"] == min(
        f["latency_ms"] for f in verified["files"] if f["meets_target"] or f["kind"] == "float")


def test_search_catches_a_file_that_misses_the_target(residual_onnx: tuple[Path, np.ndarray], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """If the written file computes something else than the simulation (here: every integer group written at
    4 bits), the judge measures the file and does not return the plan the simulation liked."""
    from mixq.backends.onnx.backend import OnnxBackend

    original = OnnxBackend.export

    def worse(self, model, assignment, calibration, path, settings, progress=None):  # type: ignore[no-untyped-def]
        degraded = Assignment({g: (Precision.parse("w2a8") if not p.is_float else p) for g, p in assignment.items()})
        return original(self, model, degraded, calibration, path, settings, progress)

    monkeypatch.setattr(OnnxBackend, "export", worse)
    path, data = residual_onnx
    config = SearchConfig(candidates=parse_candidates("w8a8,fp32"), budgets=("sqnr>=25",), num_samples=8,
                          cost="latency", latency_model="kernels", threads=1, verify=2)
    result = search(str(path), data, config, out=tmp_path / "run")
    verified = json.loads((tmp_path / "run" / "verified.json").read_text())
    quantized = [f for f in verified["files"] if f["kind"] != "float"]
    assert quantized and all(f["predicted_quality"]["sqnr_db"] >= 25 for f in quantized if f["kind"] == "plan")
    assert all(f["meets_target"] is False for f in quantized)
    assert verified["chosen"] == "float"
    assert all(p.keeps_float32 for _, p in result.plan.assignment.items())


def test_the_one_command_job_with_the_deployed_latency_model(residual_onnx: tuple[Path, np.ndarray],
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--cost latency`` on an ONNX model: the deployed-graph model is measured (probes profiled in ORT), the
    solver sees its edges, the judge exports and times the files; the run directory has all of it."""
    monkeypatch.setenv("MIXQ_CACHE_DIR", str(tmp_path / "cache"))
    path, data = residual_onnx
    config = SearchConfig(candidates=parse_candidates("w8a8,fp32"), budgets=("agreement>=0.9",), num_samples=8,
                          cost="latency", threads=1, solver="ilp")
    result = search(str(path), data, config, out=tmp_path / "run")
    model = json.loads((tmp_path / "run" / "latency_model.json").read_text())
    assert model["runtime"] == "onnxruntime" and model["probes"] >= 2 and model["pairs"]
    verified = json.loads((tmp_path / "run" / "verified.json").read_text())
    assert verified["chosen"] is not None and len(verified["files"]) >= 2
    assert result.plan.costs["latency"].unit == "ms" and "file" in result.plan.quality
    assert "latency_model_s" in result.timings and "verify_s" in result.timings


def test_without_a_run_directory_the_judged_files_are_temporary(residual_onnx: tuple[Path, np.ndarray],
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where TemporaryDirectory puts the judge's files
    path, data = residual_onnx
    config = SearchConfig(candidates=parse_candidates("w8a8,fp32"), budgets=("agreement>=0.9",), num_samples=8,
                          cost="latency", latency_model="kernels", threads=1, verify=1)
    result = search(str(path), data, config)
    assert result.run_dir is None and result.plan.quality["file"]["latency_ms"] > 0
    assert not list(tmp_path.glob("mixq-verified-*"))
