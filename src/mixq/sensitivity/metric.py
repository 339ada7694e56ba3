"""What a sensitivity metric is: phase 1's measurement of how much each (group, precision) hurts."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from mixq.backends.base import Progress, Simulation
from mixq.core.tables import SensitivityTable
from mixq.sensitivity.sqnr import MeasurementLog


class SensitivityMetric(Protocol):
    """Fills a :class:`~mixq.core.tables.SensitivityTable` for every group and candidate of a simulation.

    Created by :data:`mixq.sensitivity.METRICS` with its settings dataclass (``METRICS.settings(name,
    search_config)``); measurements go to ``log`` as they complete so an interrupted run resumes.
    """

    name: str

    def key(self, sim: Simulation, n_samples: int) -> dict[str, Any]:
        """What stored measurements depend on besides the search's settings (bound to the run directory)."""
        ...

    def measure(self, sim: Simulation, calibration: np.ndarray, log: MeasurementLog | None = None,
                progress: Progress | None = None) -> SensitivityTable:
        """The table; entries ``log`` already holds are not measured again."""
        ...
