"""The quantizer math both backends share (mixq.core.quantize)."""

from __future__ import annotations

import numpy as np
import pytest

from mixq.core.precision import Precision, QuantScheme
from mixq.core.quantize import CalibrationStats, WeightQuantizer, dynamic_params, fake_quantize_dynamic
from mixq.errors import UnsupportedModelError


def test_calibration_keeps_exact_extremes_and_a_bounded_sample() -> None:
    stats = CalibrationStats(["a"], max_sample=64, seed=0)
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(4, 100)).astype(np.float32) for _ in range(3)]
    for batch in batches:
        stats.observe("a", batch)
    merged = stats.result()["a"]
    assert merged.minimum == min(float(b.min()) for b in batches)
    assert merged.maximum == max(float(b.max()) for b in batches)
    assert merged.sample.size == 3 * 16 and merged.sample.dtype == np.float32  # every 25th of 400 per batch


def test_calibration_names_tensors_it_never_saw() -> None:
    stats = CalibrationStats(["seen", "never"])
    stats.observe("seen", np.ones(3, np.float32))
    with pytest.raises(UnsupportedModelError, match="never saw tensors \\['never'\\]"):
        stats.result()


def test_weights_dequantize_their_integers_per_channel() -> None:
    w = np.random.default_rng(1).normal(size=(4, 3, 3, 3)).astype(np.float32)
    quant = WeightQuantizer({"w": w}, {"w": 0}, QuantScheme())
    q, scale, zero = quant.integers("w", 4)
    assert q.min() >= -7 and q.max() <= 7 and scale.shape == (4, 1, 1, 1)
    fake = quant.weight("w", Precision.parse("w4a8"))
    np.testing.assert_array_equal(fake, ((q - zero).astype(np.float32) * scale.astype(np.float32)))
    assert quant.weight("w", Precision.parse("w4a8")) is fake  # cached
    np.testing.assert_array_equal(quant.weight("w", Precision.parse("fp16")), w.astype(np.float16).astype(np.float32))


def test_dynamic_range_includes_zero_and_never_divides_by_zero() -> None:
    scale, zero, qmin, qmax = dynamic_params(0.5, 2.0, 8)
    assert (qmin, qmax, zero) == (0, 255, 0) and scale == pytest.approx(2.0 / 255)
    assert dynamic_params(0.0, 0.0, 8)[0] > 0
    x = np.linspace(-1.0, 3.0, 50, dtype=np.float32)
    assert np.max(np.abs(fake_quantize_dynamic(x, 8) - x)) <= 4.0 / 255


def test_the_onnx_dynamic_subgraph_computes_the_core_formula() -> None:
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    from mixq.backends.onnx.qdq import dynamic_fake_quant
    from mixq.backends.onnx.runtime import Runner
    from mixq.backends.onnx.testing import model

    inits: dict[str, np.ndarray] = {"q_qmax": np.asarray(255.0, np.float32)}
    nodes = dynamic_fake_quant("x", "q", "q_qmax", inits)
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 7])
    y_info = helper.make_tensor_value_info("q", TensorProto.FLOAT, ["N", 7])
    from onnx import numpy_helper

    proto = model(nodes, [x_info], [y_info], [numpy_helper.from_array(v, k) for k, v in inits.items()])
    x = np.random.default_rng(2).normal(size=(3, 7)).astype(np.float32) + 0.3
    out = Runner(proto, "x").run(x)[0]
    np.testing.assert_allclose(out, fake_quantize_dynamic(x, 8), atol=1e-6)
