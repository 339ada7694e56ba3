"""mixq: automatic mixed-precision post-training quantization.

The verbs are importable from the top level (``mixq.search``, ``mixq.evaluate``, ``mixq.apply``),
and so is what can be plugged in (``mixq.list_solvers("*")``, ``list_cost_models``, ``list_hardware``,
... with shell wildcards; see :mod:`mixq.plugins`); all are loaded on first use so that ``import mixq``
stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from mixq.version import __version__

_LAZY = {
    "search": "mixq.api", "evaluate": "mixq.api", "apply": "mixq.api", "inspect_model": "mixq.api",
    "SearchConfig": "mixq.config", "Plan": "mixq.plan", "load_data": "mixq.data", "Preprocess": "mixq.data",
    "load_model": "mixq.models",
    "SyntheticData": "mixq.core.synthetic", "SyntheticSettings": "mixq.core.synthetic",
    "list_backends": "mixq.plugins", "list_cost_models": "mixq.plugins", "list_executors": "mixq.plugins",
    "list_hardware": "mixq.plugins", "list_metrics": "mixq.plugins", "list_runtimes": "mixq.plugins",
    "list_solvers": "mixq.plugins", "list_strategies": "mixq.plugins", "list_tasks": "mixq.plugins",
    "list_tuners": "mixq.plugins",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mixq' has no attribute {name!r}")
