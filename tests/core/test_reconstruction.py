"""BRECQ's settings (validated, AdaRound's schedule) and the rule that merges graph segments into blocks."""

from __future__ import annotations

import pytest

from mixq.core.reconstruction import QDROP_PROBABILITY, BrecqConfig, form_blocks
from mixq.core.rounding import AdaRoundConfig
from mixq.errors import ConfigError


@pytest.mark.parametrize("settings", [
    {"iterations": 0}, {"batch_size": 0}, {"max_groups": 0}, {"warmup": 1.0}, {"warmup": -0.1},
    {"qdrop": 1.0}, {"qdrop": -0.5}, {"reg_weight": -1.0}, {"lr": 0.0}, {"beta_start": 0.0}, {"beta_end": -2.0},
])
def test_invalid_settings_are_one_config_error(settings: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        BrecqConfig(**settings)  # type: ignore[arg-type]


def test_qdrop_message_names_the_papers_value() -> None:
    with pytest.raises(ConfigError, match=str(QDROP_PROBABILITY)):
        BrecqConfig(qdrop=2.0)


def test_defaults_and_adarounds_schedule() -> None:
    config = BrecqConfig()
    assert config.qdrop == 0.0 and 0.0 < QDROP_PROBABILITY < 1.0  # off by default; the paper's 0.5 when on
    BrecqConfig(qdrop=QDROP_PROBABILITY, reg_weight=0.0, warmup=0.0)
    rounding = config.rounding()
    assert isinstance(rounding, AdaRoundConfig)
    assert (rounding.iterations, rounding.lr, rounding.reg_weight) == (config.iterations, config.lr, config.reg_weight)
    start = int(config.warmup * config.iterations)
    assert rounding.beta(start - 1) is None and rounding.beta(start) == config.beta_start
    assert rounding.beta(config.iterations - 1) == config.beta_end
    assert config.key()["qdrop"] == 0.0


ALL = {"a", "b", "c", "d", "e"}


def test_units_merge_up_to_max_groups() -> None:
    # A chain of single-group segments: blocks of at most two groups, in order.
    assert form_blocks([["a"], ["b"], ["c"], ["d"], ["e"]], ALL, 2) == [range(2), range(2, 4), range(4, 5)]
    assert form_blocks([["a"], ["b"], ["c"]], ALL, 1) == [range(1), range(1, 2), range(2, 3)]


def test_a_unit_larger_than_max_groups_stays_whole() -> None:
    # A residual block's three groups cannot be cut (its skip connection would be); it is a block of its own.
    assert form_blocks([["a"], ["b", "c", "d"], ["e"]], ALL, 2) == [range(1), range(1, 2), range(2, 3)]


def test_segments_without_counted_groups_join_a_neighbour() -> None:
    # Leading input and pooling segments, a float group ("x" is not reconstructed): no block without groups.
    # They end the block before them (its output is taken after the activation), those before the first
    # group open the first block.
    blocks = form_blocks([[], ["a"], ["x"], [], ["b"], []], ALL, 1)
    assert blocks == [range(4), range(4, 6)]


def test_a_group_in_several_segments_is_one_unit() -> None:
    # A module called twice (one group, two call sites) with a layer between: one indivisible unit.
    assert form_blocks([["a"], ["b"], ["c"], ["b"], ["d"]], ALL, 1) == [range(1), range(1, 4), range(4, 5)]


def test_blocks_cover_every_segment_once() -> None:
    segments = [["a"], [], ["b", "c"], ["d"], [], ["e"]]
    for max_groups in range(1, 6):
        blocks = form_blocks(segments, ALL, max_groups)
        assert [i for block in blocks for i in block] == list(range(len(segments)))
        assert all(any(segments[i] for i in block) for block in blocks)


def test_nothing_to_reconstruct_is_one_block() -> None:
    assert form_blocks([["a"], ["b"]], set(), 1) == [range(2)]
    assert form_blocks([], ALL, 1) == []
