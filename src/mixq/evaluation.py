"""Measured quality of configurations on evaluation data, against the float model."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from mixq.backends.base import Progress, Simulation
from mixq.core.assignment import Assignment
from mixq.core.quality import Quality, measure_quality
from mixq.data.dataset import Dataset
from mixq.errors import ConfigError

logger = logging.getLogger(__name__)

EVAL_BATCH = 32

#: A user's accuracy measurement: takes the model as the backend gives it (an ``nn.Module`` for
#: torch), returns a score in [0, 1] (e.g. top-1 on the user's own labelled loader, or mAP).
ScoreFn = Callable[[object], float]


class Evaluator:
    """Runs configurations over a data set; the float reference is computed once and kept.

    Memory: the reference holds one output row per sample (logits), not activations.
    """

    def __init__(self, sim: Simulation, data: Dataset, progress: Progress | None = None,
                 batch_size: int = EVAL_BATCH, score: ScoreFn | None = None) -> None:
        self.sim = sim
        self.score = score
        self.data = data
        self.labels = data.labels
        self.batch_size = batch_size
        self.progress = progress
        self.count = 0  # real evaluations made, reported next to the result
        self._reference: np.ndarray | None = None

    def _outputs(self, assignment: Assignment | None, what: str) -> np.ndarray:
        parts = []
        total = len(self.data)
        for start, batch in self.data.batches(self.batch_size):
            if self.progress:
                self.progress(what, start, total)
            parts.append(self.sim.run(batch, assignment))
        if self.progress:
            self.progress(what, total, total)
        return np.concatenate(parts)

    @property
    def reference(self) -> np.ndarray:
        if self._reference is None:
            self._reference = self._outputs(None, "evaluating the float model")
        return self._reference

    def float_quality(self) -> Quality:
        return self._scored(measure_quality(self.reference, None, self.labels), Assignment({}))

    def quality(self, assignment: Assignment, what: str = "evaluating a configuration") -> Quality:
        reference = self.reference
        self.count += 1
        return self._scored(measure_quality(self._outputs(assignment, what), reference, self.labels), assignment)

    def _scored(self, quality: Quality, assignment: Assignment) -> Quality:
        """With a user score, it is the ``top1`` that ``drop<=`` targets compare."""
        if self.score is None:
            return quality
        value = float(self.score(self.sim.module(assignment)))
        if not math.isfinite(value):
            raise ConfigError(f"the evaluation callback returned {value}; it must return a finite score in [0, 1]")
        return replace(quality, top1=value, top5=None)


EvaluateFn = Callable[[Assignment], Quality]
