"""``OnnxSimulation.tune``: learned quantizers replace the calibrated ones in every later run, even of an
assignment whose fake-quantized model was already built (its weights are baked in, so it must be rebuilt)."""

from __future__ import annotations

import numpy as np
import pytest

from mixq.core.assignment import uniform
from mixq.core.precision import Precision, QuantScheme
from mixq.core.ranges import QuantParams
from mixq.core.tuned import TunedQuantizers, TunedWeight
from mixq.prepared import prepare

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def test_tuning_replaces_cached_fake_quantized_models() -> None:
    from mixq.backends.onnx import testing as graphs

    x = np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32)
    prepared = prepare(graphs.residual(), x, ["w4a8"], QuantScheme(), 8)
    sim = prepared.sim
    plan = uniform(prepared.graph, Precision.parse("w4a8"))
    before = sim.run(x, plan)  # builds and caches the fake-quantized model
    quant = sim.quantizers  # type: ignore[attr-defined]
    key = next(k for k in quant.weights)
    integers, _, _ = quant.weight_integers(key, 4)
    params = quant.weight_params(key, 4)
    tensor = next(iter(quant.stats))
    act = quant.act_params(tensor, 8)
    tuned = TunedQuantizers("test", {(key, 4): TunedWeight(np.zeros_like(integers), params)},
                            {(tensor, 8): QuantParams(np.asarray(float(act.scale) * 2), act.zero_point, act.qmin,
                                                      act.qmax)})
    sim.tune(tuned)
    after = sim.run(x, plan)
    assert not np.allclose(before, after)
    assert np.all(quant.weight(key, Precision.parse("w4a8")) == 0)
    np.testing.assert_array_equal(sim.run(x, plan), after)
