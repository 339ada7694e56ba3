"""Search strategies: how a search turns a prepared model into a plan.

``two-phase`` is Pandey et al.'s (phase-1 sensitivity list, then a phase-2 solver); ``tuneqn`` is
TuneQn's decremental exclusion. Each is one registry entry; a third party adds one under the
``mixq.strategies`` entry-point group.
"""

from __future__ import annotations

from typing import Any

from mixq.registry import Registry

#: Strategies by name (``--strategy``); entries load lazily.
STRATEGIES: Registry[Any] = Registry("strategy", "mixq.strategies")
STRATEGIES.add("two-phase", "mixq.strategies.two_phase:TwoPhase",
               help="Pandey et al.: phase-1 sensitivity of every group and candidate, then a phase-2 solver "
                    "(--solver) along the Pareto curve (default)")
STRATEGIES.add("tuneqn", "mixq.strategies.tuneqn:TuneQn",
               help="TuneQn: rank layers by QDQ and cross-model error, exclude them from the quantized model one "
                    "at a time, keep the top three Pareto fronts")
