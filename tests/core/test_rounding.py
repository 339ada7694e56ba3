"""AdaRound's framework-free parts: the settings' schedule and validation, the op description, the content key."""

from __future__ import annotations

import numpy as np
import pytest

from mixq.core.graph import OpKind
from mixq.core.ranges import QuantParams
from mixq.core.rounding import AdaRoundConfig, LayerSpec, adaround_key


def test_beta_off_in_warmup_then_annealed_from_start_to_end() -> None:
    config = AdaRoundConfig(iterations=100, warmup=0.2, beta_start=20.0, beta_end=2.0)
    assert config.beta(0) is None and config.beta(19) is None
    assert config.beta(20) == pytest.approx(20.0)
    assert config.beta(99) == pytest.approx(2.0)
    betas = [config.beta(step) for step in range(20, 100)]
    assert all(a is not None and b is not None and a > b for a, b in zip(betas, betas[1:]))
    assert AdaRoundConfig(iterations=10, warmup=0.0).beta(0) == pytest.approx(20.0)


@pytest.mark.parametrize("bad", [{"iterations": 0}, {"batch_size": 0}, {"warmup": 1.0}, {"lr": 0.0},
                                 {"reg_weight": -1.0}, {"beta_end": 0.0}])
def test_config_refuses_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AdaRoundConfig(**bad)  # type: ignore[arg-type]


def test_layer_spec_refuses_ops_it_cannot_round() -> None:
    with pytest.raises(ValueError, match="conv_transpose"):
        LayerSpec(OpKind.CONV_TRANSPOSE)
    with pytest.raises(ValueError, match="groups"):
        LayerSpec(OpKind.CONV, groups=0)


def test_key_changes_with_every_part_of_the_content() -> None:
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(4, 3)).astype(np.float32)
    inputs = rng.normal(size=(8, 3)).astype(np.float32)
    params = QuantParams(np.full(4, 0.1), np.zeros(4), -7, 7)
    layer = LayerSpec(OpKind.LINEAR)
    config = AdaRoundConfig()
    base = adaround_key(weight, params, 0, layer, inputs, None, config, 0)
    assert adaround_key(weight.copy(), params, 0, layer, inputs.copy(), None, AdaRoundConfig(), 0) == base
    variants = [
        adaround_key(weight * 2, params, 0, layer, inputs, None, config, 0),
        adaround_key(weight, QuantParams(np.full(4, 0.2), np.zeros(4), -7, 7), 0, layer, inputs, None, config, 0),
        adaround_key(weight, QuantParams(np.full(4, 0.1), np.zeros(4), -3, 3), 0, layer, inputs, None, config, 0),
        adaround_key(weight, params, 1, layer, inputs, None, config, 0),
        adaround_key(weight, params, 0, LayerSpec(OpKind.LINEAR, bias=np.ones(4, np.float32)), inputs, None, config, 0),
        adaround_key(weight, params, 0, layer, inputs[:4], None, config, 0),
        adaround_key(weight, params, 0, layer, inputs, np.zeros((8, 4), np.float32), config, 0),
        adaround_key(weight, params, 0, layer, inputs, None, AdaRoundConfig(iterations=10), 0),
        adaround_key(weight, params, 0, layer, inputs, None, config, 1),
        adaround_key(weight.astype(np.float64), params, 0, layer, inputs, None, config, 0),
    ]
    assert len({base, *variants}) == len(variants) + 1
