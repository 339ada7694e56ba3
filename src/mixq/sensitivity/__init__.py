"""Phase 1: how much each quantizer group's output suffers at each candidate precision.

Sensitivity metrics are entries of :data:`METRICS` (a :class:`SensitivityMetric` each, with its
settings dataclass); a third party adds one under the ``mixq.metrics`` entry-point group.

>>> metric = METRICS.create("sqnr", METRICS.settings("sqnr"))
>>> metric.name, metric.config.cache_mb
('sqnr', 4096.0)
"""

from __future__ import annotations

from mixq.registry import Registry
from mixq.sensitivity.metric import SensitivityMetric
from mixq.sensitivity.sqnr import OutputSqnr, SqnrConfig

#: Sensitivity metrics by name.
METRICS: Registry[SensitivityMetric] = Registry("sensitivity metric", "mixq.metrics")
METRICS.add("sqnr", OutputSqnr, config=SqnrConfig,
            help="output SQNR against the float model with one group quantized at a time (Pandey et al.)")

__all__ = ["METRICS", "OutputSqnr", "SensitivityMetric", "SqnrConfig"]
