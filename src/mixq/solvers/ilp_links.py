"""The ILP's linearisation rows: edge product variables (exact for costs of any sign, no big-M) and the
float-region start indicators that ``max_float_regions`` bounds. Built on the binaries' column layout of
:func:`mixq.solvers.ilp._program`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mixq.solvers.base import AllocationProblem


class Links:
    """Sparse rows (``lower <= row . columns <= upper``) and the continuous columns they add."""

    def __init__(self, columns: int) -> None:
        self.columns = columns
        self.entries: list[tuple[int, int, float]] = []
        self.lower: list[float] = []
        self.upper: list[float] = []

    def column(self) -> int:
        self.columns += 1
        return self.columns - 1

    def row(self, terms: Sequence[tuple[int, float]], lower: float, upper: float) -> None:
        index = len(self.lower)
        self.entries += [(index, column, value) for column, value in terms]
        self.lower.append(lower)
        self.upper.append(upper)

    def build(self) -> tuple[Any, np.ndarray, np.ndarray]:
        from scipy.sparse import csr_matrix

        rows, cols, vals = (list(x) for x in zip(*self.entries)) if self.entries else ([], [], [])
        matrix = csr_matrix((vals, (rows, cols)), shape=(len(self.lower), self.columns))
        return matrix, np.array(self.lower), np.array(self.upper)


def edge_links(problem: AllocationProblem, starts: np.ndarray, links: Links) -> None:
    """The marginal rows of every edge's product variables (columns right after the binaries)."""
    options = problem.options
    column = int(starts[-1]) + len(options[-1].precisions)
    for edge in problem.edges:
        a, b = edge.producer, edge.consumer
        ka, kb = len(options[a].precisions), len(options[b].precisions)
        for p in range(ka):  # sum_q y[p, q] = x[a, p]
            links.row([*((column + p * kb + q, 1.0) for q in range(kb)), (int(starts[a]) + p, -1.0)], 0.0, 0.0)
        for q in range(kb):  # sum_p y[p, q] = x[b, q]
            links.row([*((column + p * kb + q, 1.0) for p in range(ka)), (int(starts[b]) + q, -1.0)], 0.0, 0.0)
        column += ka * kb


def region_links(problem: AllocationProblem, starts: np.ndarray, links: Links, bound: int) -> None:
    """Start indicators of float regions and their sum's bound (see :mod:`mixq.solvers.ilp`'s docstring)."""
    options = problem.options

    def floating(position: int) -> list[tuple[int, float]]:
        return [(int(starts[position]) + c, 1.0) for c, p in enumerate(options[position].precisions) if p.is_float]

    producers: dict[int, set[int]] = {}
    for edge in problem.edges:
        producers.setdefault(edge.consumer, set()).add(edge.producer)
    indicators = []
    for position in range(len(options)):
        f_g = floating(position)
        if not f_g:
            continue
        zs = []
        for producer in sorted(producers.get(position, ())):
            f_p = floating(producer)
            if not f_p:
                continue
            z = links.column()
            links.row([(z, 1.0), *((c, -v) for c, v in f_p)], -np.inf, 0.0)  # z <= f_p
            links.row([(z, 1.0), *((c, -v) for c, v in f_g)], -np.inf, 0.0)  # z <= f_g
            zs.append(z)
        s = links.column()
        links.row([*f_g, *((z, -1.0) for z in zs), (s, -1.0)], -np.inf, 0.0)  # f_g - sum z - s <= 0
        indicators.append(s)
    links.row([(s, 1.0) for s in indicators], -np.inf, float(bound))
