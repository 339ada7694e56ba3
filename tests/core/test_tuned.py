"""Tuned quantizers: stored and read back exactly, and they replace the calibrated ones where used."""

from __future__ import annotations

import numpy as np
import pytest

from mixq.core.precision import Precision, QuantScheme
from mixq.core.quantize import ActivationRanges, WeightQuantizer
from mixq.core.ranges import ActivationStats, QuantParams
from mixq.core.tuned import TunedQuantizers, TunedWeight
from mixq.errors import ConfigError


def _tuned() -> TunedQuantizers:
    params = QuantParams(np.array([0.1, 0.2]), np.zeros(2), -7, 7)
    weights = {("w", 4): TunedWeight(np.array([[1, -2, 3], [7, 0, -7]], np.int32), params)}
    activations = {("x", 8): QuantParams(np.array(0.05), np.array(3.0), 0, 255)}
    return TunedQuantizers("kd", weights, activations, {"steps": 10})


def test_round_trip(tmp_path):
    tuned = _tuned()
    back = TunedQuantizers.load(tuned.save(tmp_path / "tuned.npz"))
    assert back.method == "kd" and back.details == {"steps": 10}
    np.testing.assert_array_equal(back.weights[("w", 4)].integers, tuned.weights[("w", 4)].integers)
    np.testing.assert_array_equal(back.weights[("w", 4)].params.scale, [0.1, 0.2])
    assert back.activations[("x", 8)].zero_point == 3.0 and back.activations[("x", 8)].qmax == 255


def test_unreadable_file_is_one_config_error(tmp_path):
    bad = tmp_path / "tuned.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="not readable"):
        TunedQuantizers.load(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        TunedQuantizers.load(tmp_path / "missing.npz")


def test_weight_quantizer_uses_tuned_integers_and_scales():
    w = np.array([[0.1, -0.2, 0.3], [1.4, 0.0, -1.4]], np.float32)
    quantizer = WeightQuantizer({"w": w}, {"w": 0}, QuantScheme())
    before = quantizer.weight("w", Precision.parse("w4a8")).copy()
    quantizer.tune(_tuned().weights)
    after = quantizer.weight("w", Precision.parse("w4a8"))
    np.testing.assert_allclose(after, [[0.1, -0.2, 0.3], [1.4, 0.0, -1.4]], rtol=1e-6)
    assert not np.array_equal(before, after)
    assert quantizer.weight("w", Precision.parse("w8a8")).shape == w.shape  # other bit-widths untouched


def test_tuned_weight_of_another_model_is_refused():
    quantizer = WeightQuantizer({"w": np.zeros((3, 3), np.float32)}, {"w": 0}, QuantScheme())
    with pytest.raises(ConfigError, match="shape"):
        quantizer.tune(_tuned().weights)
    with pytest.raises(ConfigError, match="does not have"):
        WeightQuantizer({"v": np.zeros((2, 3), np.float32)}, {"v": 0}, QuantScheme()).tune(_tuned().weights)


def test_activation_ranges_use_tuned_params():
    stats = {"x": ActivationStats(0.0, 1.0, np.linspace(0, 1, 100, dtype=np.float32))}
    ranges = ActivationRanges(stats, QuantScheme())
    calibrated = ranges.params("x", 8)
    ranges.tune(_tuned().activations)
    assert ranges.params("x", 8).scale == 0.05 and calibrated.scale != 0.05
