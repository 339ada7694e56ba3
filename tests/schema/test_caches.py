"""Caches read back: a corrupt or mistyped latency or pair cache is ignored with a warning, never trusted."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from mixq.cost import measured_latency
from mixq.cost.measured_latency import FORMAT, cache_path, load_cached
from mixq.sensitivity.pairs import SimulationPairs

KEY = {"model": "m", "threads": 1}


def _entry(ms: object) -> dict[str, object]:
    return {"group": "conv1", "precision": "w8a8", "ms": ms, "kernel": "QLinearConv", "ops": ["conv1"]}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(measured_latency, "cache_dir", lambda: tmp_path)
    return cache_path(KEY)


def test_a_good_latency_cache_is_reused(cache: Path) -> None:
    cache.write_text(json.dumps({"format": FORMAT, "key": KEY, "entries": [_entry(0.5)]}))
    assert [e.ms for e in load_cached(KEY).values()] == [0.5]


@pytest.mark.parametrize("content", [
    json.dumps({"format": FORMAT, "key": KEY, "entries": [_entry("NaN")]}).replace('"NaN"', "NaN"),
    json.dumps({"format": FORMAT, "key": KEY, "entries": [_entry(-1)]}),
    json.dumps({"format": FORMAT, "key": KEY, "entries": [_entry("0.5")]}),
    json.dumps([1, 2]), "\udcff",
])
def test_a_bad_latency_cache_is_ignored_with_a_warning(cache: Path, content: str,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    cache.write_bytes(content.encode("utf-8", "surrogateescape"))
    with caplog.at_level(logging.WARNING):
        assert load_cached(KEY) == {}
    assert "latency cache" in caplog.text and "measured again" in caplog.text


def _pairs(noise: object) -> dict[str, object]:
    return {"n_samples": 4, "single": [{"group": "a", "precision": "w4a8", "noise": noise}],
            "joint": [{"groups": ["a", "b"], "precisions": ["w4a8", "w8a8"], "noise": 1.0}]}


def test_a_good_pair_cache_is_reused(tmp_path: Path) -> None:
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(_pairs(0.5)))
    stored = SimulationPairs(None, np.zeros((4, 1)), path)._load()  # type: ignore[arg-type]
    assert list(stored.single.values()) == [0.5] and len(stored.joint) == 1


@pytest.mark.parametrize("content", [json.dumps(_pairs("NaN")).replace('"NaN"', "NaN"), json.dumps(_pairs(-1.0)),
                                     json.dumps({**_pairs(1.0), "joint": [{"groups": ["a"], "precisions": [],
                                                                           "noise": 1}]}), "{"])
def test_a_bad_pair_cache_is_ignored_with_a_warning(tmp_path: Path, content: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "pairs.json"
    path.write_text(content)
    with caplog.at_level(logging.WARNING):
        stored = SimulationPairs(None, np.zeros((4, 1)), path)._load()  # type: ignore[arg-type]
    assert not stored.single and "pair cache" in caplog.text
