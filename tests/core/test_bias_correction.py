"""The framework-free math of bias correction and of the output-aware weight range (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from mixq.core.bias_correction import channel_output_error, corrected_bias, output_shift
from mixq.core.precision import Precision, QuantScheme, RangeMethod
from mixq.core.quantize import WeightQuantizer
from mixq.core.ranges import fake_quantize, weight_params
from mixq.errors import ConfigError


class _Moments:
    """Moments of explicit ``(rows, d)`` inputs of a linear layer (one group)."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x.astype(np.float64)

    def mean(self, key: str) -> np.ndarray:
        return self.x.mean(axis=0)[None]

    def gram(self, key: str) -> np.ndarray:
        return (self.x.T @ self.x / len(self.x))[None]


def _correlated_inputs(rows: int, d: int, seed: int) -> np.ndarray:
    """Inputs with a non-zero mean and strongly correlated, unequally scaled features."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((d, d)) * np.geomspace(3.0, 0.05, d)
    return (rng.standard_normal((rows, d)) @ mixing.T + rng.uniform(0.5, 2.0, d)).astype(np.float32)


def test_the_shift_is_the_mean_output_error_and_the_corrected_bias_removes_it() -> None:
    rng = np.random.default_rng(0)
    x = _correlated_inputs(500, 12, 1)
    w = rng.standard_normal((6, 12)).astype(np.float32)
    quantizer = WeightQuantizer({"w": w}, {"w": 0}, QuantScheme(bias_correction=True), moments=_Moments(x))
    precision = Precision.parse("w3a8")
    w_q = quantizer.weight("w", precision)
    bias = rng.standard_normal(6).astype(np.float32)
    shift = quantizer.bias_shift("w", precision)
    assert shift is not None
    float_out = x @ w.T + bias
    before = x @ w_q.T + bias
    after = x @ w_q.T + corrected_bias(bias, shift)
    assert np.abs((before - float_out).mean(axis=0)).max() > 1e-2  # quantization did shift the means
    np.testing.assert_allclose((after - float_out).mean(axis=0), 0.0, atol=1e-4)
    assert np.mean((after - float_out) ** 2) < np.mean((before - float_out) ** 2)


def test_grouped_layers_use_their_own_group_mean() -> None:
    w = np.ones((4, 1, 2), np.float32)  # 4 output channels in 2 groups, d = 2
    w_q = np.zeros_like(w)
    mean = np.array([[1.0, 2.0], [10.0, 20.0]])
    np.testing.assert_allclose(output_shift(w, w_q, 0, mean), [3.0, 3.0, 30.0, 30.0])
    matmul = np.ones((2, 3), np.float32)  # (in, out): output channel on axis 1
    np.testing.assert_allclose(output_shift(matmul, np.zeros_like(matmul), 1, np.array([[1.0, 2.0]])), [3.0] * 3)
    np.testing.assert_allclose(corrected_bias(None, np.array([1.0, 2.0])), [1.0, 2.0])
    np.testing.assert_allclose(corrected_bias(np.array([[0.5, 0.5]]), np.array([1.0, 2.0])), [1.5, 2.5])


def test_no_correction_unless_the_scheme_asks_or_for_float_precisions() -> None:
    x = _correlated_inputs(50, 4, 0)
    w = np.ones((2, 4), np.float32)
    assert WeightQuantizer({"w": w}, {"w": 0}, QuantScheme(), moments=_Moments(x)).bias_shift(
        "w", Precision.parse("w4a8")) is None
    on = WeightQuantizer({"w": w}, {"w": 0}, QuantScheme(bias_correction=True), moments=_Moments(x))
    assert on.bias_shift("w", Precision.parse("fp16")) is None


def test_the_output_range_lowers_the_output_error_on_correlated_inputs() -> None:
    rng = np.random.default_rng(3)
    x = _correlated_inputs(2000, 16, 4)
    w = (rng.standard_normal((8, 16)) * rng.uniform(0.2, 2.0, (1, 16))).astype(np.float32)
    w[:, 0] *= 4.0  # an outlier weight on the input that matters most
    gram = _Moments(x).gram("w")

    def output_mse(method: RangeMethod) -> float:
        params = weight_params(w, 4, method, gram=gram)
        w_q = fake_quantize(w.astype(np.float64), params, axis=0)
        return float(np.mean((x @ (w_q - w).T) ** 2))

    mse, output = output_mse(RangeMethod.MSE), output_mse(RangeMethod.OUTPUT)
    assert output < 0.9 * mse, (mse, output)
    # per channel it is the search's own objective: no channel does worse than under the MSE range
    errs = {m: channel_output_error(fake_quantize(w.astype(np.float64), weight_params(w, 4, m, gram=gram), axis=0)
                                    - w, gram) for m in (RangeMethod.MSE, RangeMethod.OUTPUT)}
    assert np.all(errs[RangeMethod.OUTPUT] <= errs[RangeMethod.MSE] + 1e-12)


def test_the_output_range_without_a_moment_is_the_mse_range() -> None:
    w = np.random.default_rng(0).standard_normal((4, 9)).astype(np.float32)
    a, b = weight_params(w, 4, RangeMethod.OUTPUT), weight_params(w, 4, RangeMethod.MSE)
    np.testing.assert_array_equal(a.scale, b.scale)
    quantizer = WeightQuantizer({"w": w}, {"w": 0}, QuantScheme(weight_range=RangeMethod.OUTPUT))
    np.testing.assert_array_equal(quantizer.params("w", 4).scale, b.scale)


def test_the_scheme_round_trips_and_refuses_the_output_range_for_activations() -> None:
    on = QuantScheme(bias_correction=True, weight_range=RangeMethod.OUTPUT)
    assert on.to_dict()["bias_correction"] is True and on.to_dict()["weight_range"] == "output"
    assert QuantScheme.from_dict(on.to_dict()) == on
    assert "bias_correction" not in QuantScheme().to_dict()  # plans and run keys written before stay the same
    assert QuantScheme.from_dict({"act_range": "minmax"}).bias_correction is False
    with pytest.raises(ConfigError, match="weight ranges only.*--weight-range output"):
        QuantScheme(act_range=RangeMethod.OUTPUT)
    with pytest.raises(ConfigError, match="weight ranges only"):
        QuantScheme.from_dict({"act_range": "output"})
    with pytest.raises(ConfigError, match="bias_correction must be true or false"):
        QuantScheme(bias_correction="yes")  # type: ignore[arg-type]


def test_the_correction_follows_the_rounder_s_integers() -> None:
    """Applied after the rounding: AdaRound's (here: always rounding down) integers are what it corrects."""
    x = _correlated_inputs(200, 6, 2)
    w = np.random.default_rng(1).standard_normal((3, 6)).astype(np.float32)

    def floor(key: str, bits: int, params: object) -> np.ndarray:
        scale = np.asarray(params.scale).reshape(-1, 1)  # type: ignore[attr-defined]
        return np.floor(w / scale).astype(np.int32)

    scheme = QuantScheme(bias_correction=True)
    rounded = WeightQuantizer({"w": w}, {"w": 0}, scheme, rounder=floor, moments=_Moments(x))
    nearest = WeightQuantizer({"w": w}, {"w": 0}, scheme, moments=_Moments(x))
    precision = Precision.parse("w4a8")
    expected = (w.astype(np.float64) - rounded.weight("w", precision)) @ x.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(rounded.bias_shift("w", precision), expected, rtol=1e-6)
    assert not np.allclose(rounded.bias_shift("w", precision), nearest.bias_shift("w", precision))
