"""The plan file: typed costs and scheme, a format version, and plans written before format 2 still load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mixq import api
from mixq.core.assignment import Assignment
from mixq.core.precision import Precision, QuantScheme, RangeMethod
from mixq.cost.totals import CostRecord
from mixq.errors import ConfigError
from mixq.plan import PLAN_SCHEMA, Plan, Provenance
from mixq.backends.torch.testing import TinyConvNet, random_images

#: Written by mixq before plans had a typed format (schema 1): a tiny-cnn search at bops<=0.4.
V1_PLAN = Path(__file__).parent / "fixtures" / "plan_v1.json"


def test_a_version_1_plan_loads_with_typed_costs_and_scheme() -> None:
    plan = Plan.load(V1_PLAN)
    assert plan.assignment.to_dict() == {"conv1": "w8a8", "conv2": "w4a8", "head.fc": "w8a8"}
    assert plan.costs["bops"] == CostRecord(13017088.0, "BOPs", pytest.approx(0.2898577161619847))
    assert plan.costs["size"].value == 1664.0 and plan.costs["size"].unit == "bytes"
    assert plan.costs["memory"].ratio == 0.25
    assert plan.ratio("latency") is None  # not measured in that search
    assert plan.scheme == QuantScheme() and plan.num_samples == 8
    assert plan.provenance.solver == "greedy" and plan.provenance.model_fingerprint == "6e3077d24e523e95"


def test_a_version_1_plan_is_evaluated_as_the_search_calibrated_it(tmp_path: Path) -> None:
    images = random_images(16)
    metrics = api.evaluate(TinyConvNet().eval(), images, Plan.load(V1_PLAN))
    assert metrics["bops_ratio"] == pytest.approx(0.2898577161619847)
    assert metrics["weight_bytes"] == 1664.0


def test_saving_writes_the_current_format_and_round_trips(tmp_path: Path) -> None:
    plan = Plan(Assignment({"a": Precision.parse("w4a8")}), {"bops": CostRecord(10.0, "BOPs", 0.25)}, 21.5,
                quality={"agreement": 0.99}, budgets=("bops<=0.3",),
                scheme=QuantScheme(act_range=RangeMethod.MINMAX), num_samples=32,
                provenance=Provenance(seed=3, solver="ilp", restrictions=("first>=w8a8",)))
    stored = json.loads(plan.save(tmp_path / "plan.json").read_text())
    assert stored["schema_version"] == PLAN_SCHEMA == 2
    assert stored["costs"] == {"bops": {"value": 10.0, "unit": "BOPs", "ratio": 0.25}}
    assert stored["scheme"]["act_range"] == "minmax" and stored["num_samples"] == 32
    assert Plan.load(tmp_path) == plan


def test_a_plan_from_a_newer_mixq_is_refused_with_the_fix(tmp_path: Path) -> None:
    data = json.loads(V1_PLAN.read_text())
    data["schema_version"] = PLAN_SCHEMA + 1
    (tmp_path / "plan.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="newer mixq.*upgrade mixq"):
        Plan.load(tmp_path / "plan.json")


def test_a_search_run_directory_holds_a_current_plan(tmp_path: Path) -> None:
    from mixq.config import SearchConfig

    result = api.search(TinyConvNet().eval(), random_images(16),
                        SearchConfig(candidates="w4a8,w8a8,fp16", budgets=("bops<=0.4",), num_samples=8),
                        out=tmp_path / "run")
    plan = Plan.load(tmp_path / "run")
    assert plan == result.plan and plan.scheme == QuantScheme() and plan.num_samples == 8
    assert set(plan.costs) == {"bops", "size", "memory"} and plan.ratio("bops") <= 0.4 + 1e-9
    assert plan.provenance.strategy == "two-phase"


def test_a_plan_from_an_averaged_search_loads_with_its_nondeterminism_record(tmp_path: Path) -> None:
    data = json.loads(V1_PLAN.read_text())
    data["quality"]["nondeterminism"] = {"max_difference": 0.1, "relative_difference": 0.01, "averaged_runs": 8}
    (tmp_path / "plan.json").write_text(json.dumps(data))
    quality = Plan.load(tmp_path / "plan.json").quality
    assert quality["nondeterminism"] == {"max_difference": 0.1, "relative_difference": 0.01, "averaged_runs": 8}
    assert quality["n_samples"] == 16 and isinstance(quality["n_samples"], int)


def test_an_untuned_plan_writes_no_tuned_field_and_a_tuned_one_names_its_file(tmp_path: Path) -> None:
    from mixq.core.tuned import TunedQuantizers

    plan = Plan(Assignment({"a": Precision.parse("w4a8")}), {"bops": CostRecord(10.0, "BOPs", 0.25)}, 21.5)
    assert "tuned" not in plan.to_dict() and Plan.load(plan.save(tmp_path / "plan.json")).tuned is None
    assert Plan.load(V1_PLAN).tuned is None and Plan.load(V1_PLAN).load_tuned() is None
    (tmp_path / "run").mkdir()
    TunedQuantizers("kd", details={"steps": 3}).save(tmp_path / "run" / "tuned.npz")
    tuned = Plan(plan.assignment, plan.costs, 21.5, tuned="tuned.npz")
    loaded = Plan.load(tuned.save(tmp_path / "run" / "plan.json"))
    assert loaded.tuned == "tuned.npz" and loaded == tuned
    assert loaded.load_tuned().details == {"steps": 3}  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="relative to the plan's folder"):
        Plan(plan.assignment, plan.costs, 21.5, tuned="/abs/tuned.npz").tuned_path()
