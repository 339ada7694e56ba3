"""Pair measurements against the backend-neutral Simulation protocol (a numpy fake with known noise)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mixq.core.assignment import Assignment
from mixq.core.precision import Precision
from mixq.sensitivity.pairs import PairInteractions, SimulationPairs
from mixq.testing.problems import random_problem

W4A8, W8A8 = Precision.parse("w4a8"), Precision.parse("w8a8")
DIM = 16


class FakeSim:
    """Output = input + one fixed error vector per quantized (group, precision).

    Every input row has unit power, so per-sample noise ratios are equal and the phase-1 noise
    (1 / mean signal-to-noise) of a set of errors is simply the power of their sum.
    """

    def __init__(self, errors: dict[tuple[str, Precision], np.ndarray]) -> None:
        self.graph = random_problem(3, ("w4a8", "w8a8", "w8a16"), seed=0).graph
        self.errors = errors
        self.calls = 0

    def run(self, inputs: np.ndarray, assignment: Assignment | None = None) -> np.ndarray:
        self.calls += 1
        out = inputs.copy()
        for group, precision in (assignment.items() if assignment is not None else ()):
            out = out + self.errors.get((group, precision), 0.0)
        return out


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, DIM))
    return x / np.sqrt(np.mean(x * x, axis=1, keepdims=True))


def vector(*entries: tuple[int, float]) -> np.ndarray:
    out = np.zeros(DIM)
    for index, value in entries:
        out[index] = value
    return out


def test_disjoint_errors_add_and_shared_ones_interact() -> None:
    a, b, c = "layer000", "layer001", "layer002"
    errors = {
        (a, W4A8): vector((0, 0.3)), (a, W8A8): vector((0, 0.05)),
        (b, W4A8): vector((1, 0.2)),                      # other coordinate: no interaction with a
        (c, W4A8): vector((0, 0.1)),                      # same coordinate as a: they add coherently
    }
    sim = FakeSim(errors)
    measured = SimulationPairs(sim, unit_rows(40), batch_size=32)({a: (W4A8, W8A8), b: (W4A8,), c: (W4A8,)})
    power = lambda v: float(np.mean(v * v))  # noqa: E731
    assert measured.single[(a, W4A8)] == pytest.approx(power(errors[(a, W4A8)]))
    terms = measured.terms()
    assert terms[(a, W4A8, b, W4A8)] == pytest.approx(0.0, abs=1e-12)
    assert terms[(a, W4A8, c, W4A8)] == pytest.approx(2 * 0.3 * 0.1 / DIM)  # (x+y)^2 - x^2 - y^2
    assert terms[(a, W8A8, c, W4A8)] == pytest.approx(2 * 0.05 * 0.1 / DIM)
    assert set(measured.joint) == {(a, p, h, W4A8) for p in (W4A8, W8A8) for h in (b, c)} | {(b, W4A8, c, W4A8)}
    total_single = sum(measured.single.values())
    assert measured.relative_size() == pytest.approx(sum(abs(v) for v in terms.values()) / total_single)
    assert measured.runs == 4 + 5 and measured.n_samples == 40


def test_the_cache_file_makes_a_second_call_free(tmp_path: Path) -> None:
    errors = {("layer000", W4A8): vector((0, 0.3)), ("layer001", W4A8): vector((0, 0.2))}
    cache = tmp_path / "pairs.json"
    candidates = {"layer000": (W4A8,), "layer001": (W4A8,)}
    first = SimulationPairs(FakeSim(errors), unit_rows(8), cache=cache)(candidates)
    sim = FakeSim(errors)
    second = SimulationPairs(sim, unit_rows(8), cache=cache)(candidates)
    assert sim.calls == 0 and second.runs == 0
    assert second.terms() == pytest.approx(first.terms())
    assert PairInteractions.from_records(first.to_records()).joint == pytest.approx(first.joint)
    other = FakeSim(errors)
    SimulationPairs(other, unit_rows(9), cache=cache)(candidates)  # other sample count: measured afresh
    assert other.calls > 0
