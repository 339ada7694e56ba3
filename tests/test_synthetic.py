"""``search`` on distilled data: recorded in the run directory, reused on a resume, refused where it cannot run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mixq.api import evaluate, search
from mixq.backends.torch.testing import INPUT_SHAPE, BatchNormNet
from mixq.config import SearchConfig
from mixq.core.synthetic import SyntheticData, SyntheticSettings
from mixq.errors import CapabilityError, ConfigError
from mixq.synthetic import FILE, synthesize

REQUEST = SyntheticData(INPUT_SHAPE, SyntheticSettings(iterations=10))
CONFIG = SearchConfig(candidates="w4a8,w8a8", budgets=("bops<=0.6",), num_samples=8)


def test_search_records_and_reuses_the_synthetic_data(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = search(BatchNormNet(), REQUEST, CONFIG, out=out)
    config = json.loads((out / "config.json").read_text())
    assert config["data"] == "synthetic"
    assert config["synthetic"] == {"method": "zeroq", "samples": 8, "shape": list(INPUT_SHAPE), "seed": 0,
                                   "iterations": 10, "lr": SyntheticSettings().lr}
    assert "synthetic_s" in first.timings
    assert "agreement" in first.plan.quality and first.plan.num_samples == 8
    with np.load(out / FILE) as stored:
        x = stored["x"]
    assert x.shape == (8, *INPUT_SHAPE)

    again = search(BatchNormNet(), REQUEST, CONFIG, out=out)  # a resume: same samples, nothing distilled
    assert "synthetic_s" not in again.timings
    assert again.plan.assignment == first.plan.assignment
    with np.load(out / FILE) as stored:
        np.testing.assert_array_equal(stored["x"], x)


def test_a_stored_set_made_with_other_settings_is_distilled_again(tmp_path: Path) -> None:
    made = synthesize(BatchNormNet(), REQUEST, 4, 0, None, tmp_path)
    (tmp_path / FILE).write_bytes(made.npz_bytes())
    assert synthesize(BatchNormNet(), REQUEST, 4, 0, None, tmp_path).reused
    assert not synthesize(BatchNormNet(), REQUEST, 4, 1, None, tmp_path).reused
    (tmp_path / FILE).write_bytes(b"not a zip")
    assert not synthesize(BatchNormNet(), REQUEST, 4, 0, None, tmp_path).reused


def test_a_drop_target_is_refused_before_any_work(tmp_path: Path) -> None:
    config = SearchConfig(budgets=("drop<=0.01",), num_samples=8)
    with pytest.raises(ConfigError, match="synthetic data .* has none"):
        search(BatchNormNet(), REQUEST, config, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_an_onnx_model_is_refused() -> None:
    pytest.importorskip("onnxruntime")
    from mixq.backends.onnx.testing import residual

    with pytest.raises(CapabilityError, match="folded ONNX file no longer has"):
        search(residual(), REQUEST, CONFIG)


def test_evaluate_takes_real_samples_not_a_request() -> None:
    with pytest.raises(ConfigError, match="RUN/synthetic.npz"):
        evaluate(BatchNormNet(), REQUEST, "w8a8")  # type: ignore[arg-type]
