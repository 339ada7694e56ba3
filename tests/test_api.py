"""The search pipeline end to end on small synthetic models with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mixq import api
from mixq.config import SearchConfig
from mixq.core.precision import Precision
from mixq.errors import ConfigError, InfeasibleBudgetError, MixqError, RunDirectoryError
from mixq.plan import Plan
from mixq.backends.torch.testing import ResidualNet, SharedInputNet, TinyConvNet, outlier_net, random_images

CANDIDATES = "w4a8,w8a8,w8a16"


def config(*budgets: str, candidates: str = CANDIDATES, **kwargs) -> SearchConfig:
    return SearchConfig(candidates=candidates, budgets=budgets, num_samples=kwargs.pop("num_samples", 16), **kwargs)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return random_images(24, seed=3)


@pytest.mark.parametrize("index", [0, 2, 3])
def test_weight_outlier_layer_ends_at_the_highest_precision(index: int, images: np.ndarray) -> None:
    model = outlier_net(index, "weights")
    # 0.375 is halfway between all-w4a8 and all-w8a8: room for the outlier layer (at most 41% of
    # the MACs) at 8 bits, not for every layer
    result = api.search(model, images, config("bops<=0.375", candidates="w4a8,w8a8"))
    assignment = result.plan.assignment
    group = next(g.id for g in result.graph if model.outlier_layer in [op.name for op in g.ops])
    assert assignment[group] == Precision.parse("w8a8")
    assert result.plan.costs["bops"].ratio <= 0.375 + 1e-9
    others = [p for g, p in assignment.items() if g != group]
    assert any(p.weight_bits == 4 for p in others), "the budget must have lowered other groups"


@pytest.mark.parametrize("index", [1, 2])
def test_activation_outlier_layer_keeps_16_bit_activations(index: int, images: np.ndarray) -> None:
    model = outlier_net(index, "activations")
    result = api.search(model, images, config("bops<=0.75", candidates="w8a8,w8a16"))
    group = next(g.id for g in result.graph if model.outlier_layer in [op.name for op in g.ops])
    assert result.plan.assignment[group].act_bits == 16
    assert result.plan.assignment.counts().get("w8a8", 0) >= 2


def test_phase1_ranks_the_outlier_group_as_the_most_sensitive(images: np.ndarray) -> None:
    model = outlier_net(1, "weights")
    result = api.search(model, images, config("bops<=0.5"))
    w4a8 = Precision.parse("w4a8")
    worst = min(result.graph.ids, key=lambda g: result.sensitivity.sqnr_db[(g, w4a8)])
    assert "conv1" in [op.name for op in result.graph[worst].ops]


def test_ops_sharing_an_input_share_one_precision(images: np.ndarray) -> None:
    model = SharedInputNet().eval()
    result = api.search(model, images, config("bops<=0.4"))
    by_input: dict[str, set[str]] = {}
    for group in result.graph:
        for op in group.ops:
            for tensor in op.inputs:
                by_input.setdefault(tensor, set()).add(str(result.plan.assignment[group.id]))
    assert by_input and all(len(precisions) == 1 for precisions in by_input.values())
    assert any(len(g.ops) > 1 for g in result.graph), "the branches must have been grouped"


def test_uniform_bops_ratios_follow_the_papers_convention(images: np.ndarray) -> None:
    model = TinyConvNet().eval()
    ratios = {p: api.evaluate(model, images, p, num_samples=8)["bops_ratio"] for p in ("w8a16", "w8a8", "w4a8")}
    assert ratios == pytest.approx({"w8a16": 1.0, "w8a8": 0.5, "w4a8": 0.25})


def test_curve_is_monotone_and_starts_at_the_top(images: np.ndarray) -> None:
    result = api.search(ResidualNet().eval(), images, config("bops<=0.3"))
    costs = [p.costs["bops"] for p in result.curve.points]
    predicted = [p.predicted_sqnr_db for p in result.curve.points]
    assert costs == sorted(costs, reverse=True) and len(set(costs)) == len(costs)
    assert all(a >= b - 1e-9 for a, b in zip(predicted, predicted[1:]))
    assert set(result.curve.points[0].assignment.counts()) == {"w8a16"}
    assert set(result.curve.points[-1].assignment.counts()) == {"w4a8"}


def test_mixed_precision_beats_uniform_at_the_same_cost(images: np.ndarray) -> None:
    model = outlier_net(2, "weights")
    result = api.search(model, images, config("bops<=0.375"))
    uniform = api.evaluate(model, images, "w6a8", calibration=images, num_samples=16)
    mixed = api.evaluate(model, images, result.plan, calibration=images, num_samples=16)
    assert mixed["bops_ratio"] <= uniform["bops_ratio"]
    assert mixed["sqnr_db"] > uniform["sqnr_db"] + 3


def test_agreement_target_is_met_by_a_measured_configuration(images: np.ndarray) -> None:
    model = ResidualNet().eval()
    result = api.search(model, images, config("agreement>=0.9"))
    assert result.plan.quality["agreement"] >= 0.9
    assert result.evaluations and all("agreement" in e for e in result.evaluations)
    assert result.plan.quality["evaluations"] <= 2 + int(np.ceil(np.log2(len(result.curve.points)))) + 1


def test_drop_target_uses_the_users_score(images: np.ndarray) -> None:
    model = ResidualNet().eval()
    labels = model(torch.from_numpy(images)).argmax(1).numpy()  # the float model is 100% right by construction
    calls: list[object] = []

    def score(module: object) -> float:
        calls.append(module)
        with torch.no_grad():
            predicted = module(torch.from_numpy(images)).argmax(1).numpy()  # type: ignore[operator]
        return float(np.mean(predicted == labels))

    result = api.search(model, images, config("drop<=5"), score=score)
    assert result.plan.quality["top1"] >= 0.95
    assert len(calls) >= 2  # the float model and at least one configuration


def test_drop_target_without_labels_or_score_says_what_is_missing(images: np.ndarray) -> None:
    with pytest.raises(ConfigError, match="labels"):
        api.search(ResidualNet().eval(), images, config("drop<=1"))


def test_budget_below_the_cheapest_configuration_names_the_minimum(tmp_path: Path, images: np.ndarray) -> None:
    with pytest.raises(InfeasibleBudgetError, match=r"0\.25") as caught:
        api.search(TinyConvNet().eval(), images, config("bops<=0.1"), out=tmp_path / "run")
    assert caught.value.reachable == pytest.approx(0.25)
    assert not (tmp_path / "run").exists()  # refused before phase 1, nothing written


def test_unusable_output_directory_is_refused_before_any_work(tmp_path: Path, images: np.ndarray) -> None:
    (tmp_path / "file.txt").write_text("not a directory")
    for out in (tmp_path / "file.txt", tmp_path / "file.txt" / "run"):
        with pytest.raises(RunDirectoryError, match="choose another --out"):
            api.search(TinyConvNet().eval(), images, config("bops<=0.5"), out=out)


def test_model_that_cannot_run_on_the_data_leaves_no_run_directory(tmp_path: Path) -> None:
    wrong = random_images(4, (3, 8, 8))[:, :1]  # one channel where the first conv expects three
    with pytest.raises(MixqError):
        api.search(TinyConvNet().eval(), wrong, config("bops<=0.5"), out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_no_budget_is_a_config_error(images: np.ndarray) -> None:
    with pytest.raises(ConfigError, match="budget"):
        api.search(TinyConvNet().eval(), images, config())


def test_search_is_deterministic(images: np.ndarray) -> None:
    first = api.search(ResidualNet().eval(), images, config("bops<=0.35"))
    second = api.search(ResidualNet().eval(), images, config("bops<=0.35"))
    assert first.plan.assignment == second.plan.assignment
    assert first.sensitivity.sqnr_db == second.sensitivity.sqnr_db


def test_run_directory_holds_everything_and_resumes(tmp_path: Path, images: np.ndarray) -> None:
    run = tmp_path / "run"
    first = api.search(ResidualNet().eval(), images, config("bops<=0.35"), out=run)
    for name in ("config.json", "graph.json", "measurements.jsonl", "sensitivity.json", "curve.json", "plan.json",
                 "timings.json"):
        assert (run / name).is_file(), name
    lines = (run / "measurements.jsonl").read_text().splitlines()
    assert len(lines) == len(first.sensitivity.sqnr_db)
    second = api.search(ResidualNet().eval(), images, config("bops<=0.3"), out=run)
    assert (run / "measurements.jsonl").read_text().splitlines() == lines  # nothing measured again
    assert second.sensitivity.sqnr_db == first.sensitivity.sqnr_db
    assert Plan.load(run).costs["bops"].ratio <= 0.3 + 1e-9


def test_resume_with_changed_measurement_settings_is_refused(tmp_path: Path, images: np.ndarray) -> None:
    run = tmp_path / "run"
    api.search(TinyConvNet().eval(), images, config("bops<=0.35"), out=run)
    with pytest.raises(RunDirectoryError, match="num_samples"):
        api.search(TinyConvNet().eval(), images, config("bops<=0.35", num_samples=8), out=run)


def test_a_refused_resume_changes_nothing_in_the_finished_run(tmp_path: Path, images: np.ndarray) -> None:
    from mixq.report import load_run
    from mixq.rundir import LOCK_INFO

    run = tmp_path / "run"
    api.search(TinyConvNet().eval(), images, config("bops<=0.35"), out=run)
    (run / ".mixq-run").unlink()  # as a run written before the marker existed
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.name != LOCK_INFO}
    with pytest.raises(RunDirectoryError, match="num_samples"):
        api.search(TinyConvNet().eval(), images, config("bops<=0.3", num_samples=8), out=run)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.name != LOCK_INFO} == before
    assert load_run(run).plan.costs["bops"].ratio <= 0.35 + 1e-9  # the report still reads it


def test_a_link_planted_in_the_run_directory_never_redirects_a_resume(tmp_path: Path, images: np.ndarray) -> None:
    run, outside = tmp_path / "run", tmp_path / "outside.json"
    api.search(TinyConvNet().eval(), images, config("bops<=0.35"), out=run)
    outside.write_text("precious")
    for name in ("plan.json.tmp", "config.json.tmp", "curve.json.tmp"):
        (run / name).symlink_to(outside)
    (run / "timings.json").unlink()
    (run / "timings.json").symlink_to(outside)
    api.search(TinyConvNet().eval(), images, config("bops<=0.3"), out=run)
    assert outside.read_text() == "precious"
    assert not (run / "timings.json").is_symlink() and Plan.load(run).costs["bops"].ratio <= 0.3 + 1e-9


def test_a_second_search_on_a_locked_run_directory_stops_before_measuring(tmp_path: Path, images: np.ndarray) -> None:
    import os
    import subprocess
    import sys

    from mixq.rundir import RunLock

    run = tmp_path / "run"
    api.search(TinyConvNet().eval(), images, config("bops<=0.35"), out=run)
    log = (run / "measurements.jsonl").read_bytes()
    with RunLock(run, command="the first search"):  # held by another search: in this process, through flock
        code = ("import sys, numpy as np\nfrom mixq import api\nfrom mixq.config import SearchConfig\n"
                "from mixq.backends.torch.testing import TinyConvNet, random_images\n"
                "try:\n    api.search(TinyConvNet().eval(), random_images(24, seed=3), SearchConfig(candidates='w4a8,w8a8',"
                " budgets=('bops<=0.35',), num_samples=8), out=sys.argv[1])\n"
                "except Exception as exc:\n    print(exc)\n")
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
        second = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True, env=env,
                                timeout=120)
    assert "in use by another mixq process" in second.stdout and "the first search" in second.stdout, second
    assert (run / "measurements.jsonl").read_bytes() == log


def test_a_torn_measurement_line_is_measured_again(tmp_path: Path, images: np.ndarray) -> None:
    run = tmp_path / "run"
    first = api.search(TinyConvNet().eval(), images, config("bops<=0.35"), out=run)
    log = run / "measurements.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2])  # killed mid-write
    second = api.search(TinyConvNet().eval(), images, config("bops<=0.35"), out=run)
    assert second.sensitivity.sqnr_db == first.sensitivity.sqnr_db
    assert len(log.read_text().splitlines()) == len(lines)


def test_plan_round_trip_evaluates_to_the_searched_quality(tmp_path: Path, images: np.ndarray) -> None:
    model = ResidualNet().eval()
    result = api.search(model, images, config("bops<=0.35"), out=tmp_path / "run")
    measured = api.evaluate(model, images, Plan.load(tmp_path / "run" / "plan.json"), num_samples=16)
    assert measured["sqnr_db"] == pytest.approx(result.plan.quality["sqnr_db"], abs=1e-6)
    assert measured["bops_ratio"] == pytest.approx(result.plan.costs["bops"].ratio)
    quantized = api.apply(model, Plan.load(tmp_path / "run" / "plan.json"), images, num_samples=16)
    with torch.no_grad():
        out = quantized(torch.from_numpy(images)).numpy()
        reference = model(torch.from_numpy(images)).numpy()
    assert not np.allclose(out, reference)  # really quantized
    assert float(np.mean(out.argmax(1) == reference.argmax(1))) == pytest.approx(measured["agreement"])


def test_plan_for_another_model_is_refused(tmp_path: Path, images: np.ndarray) -> None:
    api.search(TinyConvNet().eval(), images, config("bops<=0.35"), out=tmp_path / "run")
    with pytest.raises(ConfigError, match="does not fit this model"):
        api.evaluate(ResidualNet().eval(), images, Plan.load(tmp_path / "run"), num_samples=8)


def test_float_evaluation_reports_full_agreement_and_float_size(images: np.ndarray) -> None:
    model = TinyConvNet().eval()
    result = api.evaluate(model, images, None, num_samples=8)
    params = sum(p.numel() for p in model.parameters())
    assert result["agreement"] == 1.0
    assert result["weight_bytes"] == pytest.approx(4 * params)
    assert json.dumps(result)  # JSON-ready


def test_a_full_disk_stops_with_one_clear_error_and_resumes(tmp_path: Path, images: np.ndarray,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    real_fsync, calls = os.fsync, []
    run = tmp_path / "run"

    def full_after_three(fd: int) -> None:  # the disk fills during phase 1, after a few measurements
        if (run / "measurements.jsonl").exists():
            calls.append(fd)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_after_three)
    with pytest.raises(RunDirectoryError, match="No space left on device.*resume"):
        api.search(TinyConvNet().eval(), images, config("bops<=0.35"), out=run)
    assert not list(run.glob("*.tmp"))
    monkeypatch.setattr(os, "fsync", real_fsync)
    resumed = api.search(TinyConvNet().eval(), images, config("bops<=0.35"), out=run)
    reference = api.search(TinyConvNet().eval(), images, config("bops<=0.35"))
    assert resumed.sensitivity.sqnr_db == reference.sensitivity.sqnr_db


def test_a_failed_json_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    from mixq.atomic import write_json

    target = tmp_path / "plan.json"
    write_json(target, {"old": True})

    def full(descriptor: int) -> None:  # the content was written but cannot reach the disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        write_json(target, {"new": True})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"old": True} and not list(tmp_path.glob("*.tmp"))


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    """The writer's private temporary file (0600) must not leave plans readable by their owner only."""
    import os

    from mixq.atomic import write_json

    mask = os.umask(0)
    os.umask(mask)
    path = write_json(tmp_path / "plan.json", {"a": 1})
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask != 0o600
