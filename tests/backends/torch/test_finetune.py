"""Label-free distillation of a plan (``mixq.backends.torch.finetune``): it must help on data it did not see,
be reproducible, stop on time, and hand the simulation quantizers that compute what was trained."""

from __future__ import annotations

import numpy as np
import pytest

from mixq.backends import TUNERS
from mixq.core.assignment import Assignment, uniform
from mixq.core.finetune import KdSettings
from mixq.core.precision import Precision, QuantScheme
from mixq.core.quality import measure_quality
from mixq.errors import CapabilityError, ConfigError
from mixq.prepared import prepare

torch = pytest.importorskip("torch")


def _prepared(seed: int = 1):  # type: ignore[no-untyped-def]
    from mixq.backends.torch.testing import ResidualNet, random_images

    train = random_images(64, seed=seed)
    return prepare(ResidualNet().eval(), train, ["w4a4"], QuantScheme(), 64), train


def _kl(student: np.ndarray, teacher: np.ndarray) -> float:
    def log_softmax(x: np.ndarray) -> np.ndarray:
        x = x - x.max(1, keepdims=True)
        return x - np.log(np.exp(x).sum(1, keepdims=True))

    lt, ls = log_softmax(teacher.astype(np.float64)), log_softmax(student.astype(np.float64))
    return float(np.mean(np.sum(np.exp(lt) * (lt - ls), 1)))


def test_distillation_brings_a_harsh_plan_closer_to_the_float_model_on_held_out_data() -> None:
    from mixq.backends.torch.testing import random_images

    prepared, train = _prepared()
    sim = prepared.sim
    plan = uniform(prepared.graph, Precision.parse("w3a4"))
    held_out = random_images(64, seed=2)
    teacher = sim.run(held_out)
    before = sim.run(held_out, plan)
    tuned = TUNERS.create("kd", KdSettings(steps=150)).tune(sim, plan, train)
    sim.tune(tuned)
    after = sim.run(held_out, plan)
    assert _kl(after, teacher) < 0.8 * _kl(before, teacher)
    assert measure_quality(after, teacher, None).agreement > measure_quality(before, teacher, None).agreement
    assert tuned.method == "kd" and tuned.details["steps"] == 150 and tuned.details["stopped_by"] == "steps"
    assert tuned.details["loss_last"] < tuned.details["loss_first"]
    assert tuned.weights and tuned.activations  # weights and activation step sizes were learned


def test_the_same_seed_learns_the_same_quantizers_and_fp_groups_stay_float() -> None:
    prepared, train = _prepared()
    groups = [g.id for g in prepared.graph]
    plan = Assignment({**{g: Precision.parse("w4a4") for g in groups[1:]}, groups[0]: Precision.parse("fp16")})
    first = TUNERS.create("kd", KdSettings(steps=10)).tune(prepared.sim, plan, train)
    second = TUNERS.create("kd", KdSettings(steps=10)).tune(prepared.sim, plan, train)
    assert first.weights.keys() == second.weights.keys()
    for key, weight in first.weights.items():
        np.testing.assert_array_equal(weight.integers, second.weights[key].integers)
        np.testing.assert_array_equal(weight.params.scale, second.weights[key].params.scale)
    float_weight = prepared.graph[groups[0]].ops[0].weight
    assert all(key != float_weight for key, _ in first.weights)


def test_the_tuned_simulation_computes_what_was_trained() -> None:
    """The learned grid as TunedQuantizers gives the student's own outputs (to float rounding)."""
    from mixq.backends.torch.finetune import LsqQuantizers
    from mixq.backends.torch.executor import flatten_output

    prepared, train = _prepared()
    sim = prepared.sim
    plan = uniform(prepared.graph, Precision.parse("w4a4"))
    quant = LsqQuantizers(sim, plan)
    with torch.no_grad():  # move the learnable grids somewhere else than calibration put them
        for weight in quant.weights.values():
            weight.values.add_(0.3 * weight.step * torch.randn(weight.values.shape, generator=torch.Generator().manual_seed(0)))
            weight.step.mul_(1.1)
        for act in quant.activations.values():
            act.step.mul_(0.9)
        student = flatten_output(sim.executor.run(torch.from_numpy(train), sim.overrides(plan, quant))[0]).numpy()
    sim.tune(quant.result({}))
    assert measure_quality(sim.run(train, plan), student, None).sqnr_db > 50


def test_the_minutes_bound_stops_the_run() -> None:
    prepared, train = _prepared()
    plan = uniform(prepared.graph, Precision.parse("w4a4"))
    tuned = TUNERS.create("kd", KdSettings(steps=100000, minutes=0.5 / 60)).tune(prepared.sim, plan, train)
    assert tuned.details["stopped_by"] == "minutes" and tuned.details["steps"] < 100000


def test_progress_is_reported_and_feature_loss_runs() -> None:
    prepared, train = _prepared()
    plan = uniform(prepared.graph, Precision.parse("w4a8"))
    calls: list[tuple[str, int, int]] = []
    tuned = TUNERS.create("kd", KdSettings(steps=3, feature_weight=1.0)).tune(
        prepared.sim, plan, train, lambda stage, done, total: calls.append((stage, done, total)))
    assert calls[0] == ("kd fine-tune", 0, 3) and calls[-1] == ("kd fine-tune", 3, 3)
    assert np.isfinite(tuned.details["loss_last"])


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="--finetune-kd"):
        KdSettings(steps=0)
    with pytest.raises(ConfigError, match="--finetune-minutes"):
        KdSettings(minutes=-1)
    with pytest.raises(ConfigError, match="--kd-feature-weight"):
        KdSettings(feature_weight=float("nan"))


def test_a_non_torch_simulation_is_refused() -> None:
    with pytest.raises(CapabilityError, match="needs a torch model"):
        TUNERS.create("kd").tune(object(), Assignment({}), np.zeros((1, 3, 16, 16), np.float32))  # type: ignore[arg-type]
