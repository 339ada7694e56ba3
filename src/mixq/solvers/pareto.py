"""Dominance and Pareto fronts on plain numbers (no mixq types), for curves and multi-objective searches."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mixq.errors import ConfigError


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """``(cost, quality)`` ``a`` is no worse than ``b`` in both and better in one (lower cost, higher quality).

    >>> dominates((1.0, 0.9), (2.0, 0.9))
    True
    >>> dominates((1.0, 0.9), (1.0, 0.9))
    False
    """
    return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated ``(cost, quality)`` points, cost ascending.

    Of exactly equal points only the first is kept, since a front needs each trade-off once.
    Points with a NaN are never on the front.

    >>> pareto_front([(3.0, 0.9), (1.0, 0.5), (2.0, 0.4), (2.0, 0.8), (1.0, 0.5)])
    [1, 3, 0]
    """
    values = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return front_indices(values[:, 0], values[:, 1])


def front_indices(cost: np.ndarray, quality: np.ndarray) -> list[int]:
    """:func:`pareto_front` on two arrays, vectorized for large enumerations."""
    keep = np.flatnonzero(~(np.isnan(cost) | np.isnan(quality)))
    if keep.size == 0:
        return []
    order = keep[np.lexsort((keep, -quality[keep], cost[keep]))]
    sorted_quality = quality[order]
    best_before = np.maximum.accumulate(np.concatenate(([-np.inf], sorted_quality[:-1])))
    return [int(i) for i in order[sorted_quality > best_before]]


def non_dominated_sort(objectives: np.ndarray, minimize: Sequence[bool]) -> list[list[int]]:
    """NSGA-II fronts: front 1 is non-dominated, front k is non-dominated once fronts < k are removed.

    Args:
        objectives: ``(n_points, n_objectives)`` values.
        minimize: per objective, True if lower is better.

    Returns:
        The fronts in order, each a list of point indices in ascending order.

    >>> non_dominated_sort(np.array([[1.0, 0.5], [2.0, 0.9], [2.0, 0.4], [3.0, 0.3]]), [True, False])
    [[0, 1], [2], [3]]
    """
    values = np.asarray(objectives, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(minimize):
        raise ConfigError(
            f"objectives must be (points, {len(minimize)}) to match minimize, got shape {values.shape}"
        )
    if np.isnan(values).any():
        raise ConfigError("objectives contain NaN; drop or repair those points before sorting")
    signs = np.where(np.asarray(minimize, dtype=bool), 1.0, -1.0)
    costs = values * signs  # every objective now minimized
    no_worse = np.all(costs[:, None, :] <= costs[None, :, :], axis=2)
    better = np.any(costs[:, None, :] < costs[None, :, :], axis=2)
    dominated_by = no_worse & better  # [i, j]: i dominates j
    remaining = dominated_by.sum(axis=0)  # how many points dominate j
    fronts: list[list[int]] = []
    current = np.flatnonzero(remaining == 0)
    while current.size:
        fronts.append([int(i) for i in current])
        remaining = remaining - dominated_by[current].sum(axis=0)
        remaining[current] = -1
        current = np.flatnonzero(remaining == 0)
    return fronts
