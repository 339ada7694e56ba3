"""A float model whose output changes from run to run is refused before phase 1, or averaged on request."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mixq.api import search
from mixq.backends.torch.testing import TinyConvNet, random_images
from mixq.config import SearchConfig
from mixq.core.precision import QuantScheme
from mixq.determinism import AveragedSimulation, check_determinism
from mixq.errors import ConfigError, UnsupportedModelError
from mixq.prepared import prepare


class Noisy(nn.Module):
    """TinyConvNet with noise drawn in forward: a different output on every run."""

    def __init__(self) -> None:
        super().__init__()
        self.net = TinyConvNet()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out + torch.randn_like(out)


def _noisy() -> Noisy:
    return Noisy().eval()


def test_deterministic_model_passes_unchanged() -> None:
    prepared = prepare(TinyConvNet().eval(), random_images(8), "w8a8", QuantScheme(), 8)
    checked, found = check_determinism(prepared)
    assert checked is prepared and found is None


def test_nondeterministic_model_is_refused_before_phase_1() -> None:
    config = SearchConfig(budgets=("bops<=0.5",), num_samples=8)
    with pytest.raises(UnsupportedModelError, match=r"model\.eval\(\).*--nondeterministic average"):
        search(_noisy(), random_images(8), config)


def test_average_mode_averages_runs_and_reports_it() -> None:
    prepared = prepare(_noisy(), random_images(8), "w8a8", QuantScheme(), 8)
    checked, found = check_determinism(prepared, "average", runs=4)
    assert isinstance(checked.sim, AveragedSimulation) and checked.sim.runs == 4
    assert found is not None and found.runs == 4 and found.relative_difference > 0
    config = SearchConfig(budgets=("bops<=0.5",), candidates="w4a8,w8a8", num_samples=8,
                          nondeterministic="average", average_runs=4)
    result = search(_noisy(), random_images(8), config)
    assert result.plan.quality["nondeterminism"]["averaged_runs"] == 4


def test_averaged_isolated_runs_match_full_runs() -> None:
    prepared = prepare(TinyConvNet().eval(), random_images(4), "w4a8,w8a8", QuantScheme(), 4)
    sim = AveragedSimulation(prepared.sim, 2)
    group = next(iter(prepared.graph))
    precision = group.candidates[0]
    isolated = sim.isolate(prepared.calibration)
    np.testing.assert_allclose(isolated.reference, prepared.sim.run(prepared.calibration), rtol=1e-6)
    full = prepared.sim.isolate(prepared.calibration).run(group.id, precision)
    np.testing.assert_allclose(isolated.run(group.id, precision), full, rtol=1e-4, atol=1e-5)


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="--nondeterministic"):
        SearchConfig(nondeterministic="ignore")
    with pytest.raises(ConfigError, match="--average-runs"):
        SearchConfig(average_runs=1)


def test_an_averaged_run_resumes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = SearchConfig(budgets=("bops<=0.5",), candidates="w4a8,w8a8", num_samples=4,
                          nondeterministic="average", average_runs=2)
    first = search(_noisy(), random_images(4), config, out=tmp_path / "run")
    measured = (tmp_path / "run" / "measurements.jsonl").read_text()
    again = search(_noisy(), random_images(4), config, out=tmp_path / "run")
    assert (tmp_path / "run" / "measurements.jsonl").read_text() == measured  # nothing measured twice
    assert again.plan.quality["nondeterminism"]["averaged_runs"] == first.plan.quality["nondeterminism"]["averaged_runs"]
