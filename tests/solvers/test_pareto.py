from __future__ import annotations

import numpy as np
import pytest

from mixq.errors import ConfigError
from mixq.solvers.pareto import dominates, non_dominated_sort, pareto_front


def test_dominates_needs_one_strict_improvement() -> None:
    assert dominates((1.0, 0.5), (2.0, 0.5))
    assert dominates((1.0, 0.6), (1.0, 0.5))
    assert not dominates((1.0, 0.5), (1.0, 0.5))
    assert not dominates((1.0, 0.4), (2.0, 0.5))  # cheaper but worse: a trade-off


def test_pareto_front_known_answer() -> None:
    points = [(4.0, 0.95), (1.0, 0.2), (2.0, 0.7), (2.0, 0.6), (3.0, 0.65), (5.0, 0.95), (1.0, 0.2)]
    assert pareto_front(points) == [1, 2, 0]


def test_pareto_front_matches_brute_force_on_random_points() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        pts = [(float(c), float(q)) for c, q in rng.integers(0, 8, size=(30, 2))]
        front = pareto_front(pts)
        assert [pts[i][0] for i in front] == sorted(pts[i][0] for i in front)
        for i, p in enumerate(pts):
            dominated = any(dominates(q, p) for q in pts)
            duplicate_of_earlier = any(pts[j] == p for j in range(i))
            assert (i in front) == (not dominated and not duplicate_of_earlier)


def test_pareto_front_skips_nan_and_handles_empty() -> None:
    assert pareto_front([(float("nan"), 1.0), (1.0, 0.5)]) == [1]
    assert pareto_front([]) == []


def test_non_dominated_sort_known_answer() -> None:
    objectives = np.array([[1.0, 0.5], [2.0, 0.9], [2.0, 0.4], [3.0, 0.3], [1.0, 0.5]])
    assert non_dominated_sort(objectives, [True, False]) == [[0, 1, 4], [2], [3]]


def test_non_dominated_sort_properties_on_random_points() -> None:
    rng = np.random.default_rng(1)
    values = rng.integers(0, 6, size=(60, 3)).astype(float)
    minimize = [True, False, True]
    fronts = non_dominated_sort(values, minimize)
    signed = values * np.where(minimize, 1.0, -1.0)

    def dom(i: int, j: int) -> bool:
        return bool(np.all(signed[i] <= signed[j]) and np.any(signed[i] < signed[j]))

    assert sorted(i for f in fronts for i in f) == list(range(60))
    for k, front in enumerate(fronts):
        assert front == sorted(front)
        later = [i for f in fronts[k:] for i in f]
        for j in front:
            assert not any(dom(i, j) for i in later)  # nothing left dominates a front member
            if k:
                assert any(dom(i, j) for i in fronts[k - 1])  # and the previous front does


def test_non_dominated_sort_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="match minimize"):
        non_dominated_sort(np.zeros((3, 2)), [True])
    with pytest.raises(ConfigError, match="NaN"):
        non_dominated_sort(np.array([[np.nan, 1.0]]), [True, True])
    assert non_dominated_sort(np.zeros((0, 2)), [True, True]) == []
