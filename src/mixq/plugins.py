"""Every kind of plug-in in one table: where its registry lives and its entry-point group.

``mixq.list_solvers("i*")`` and the other ``list_*`` functions (timm-style, shell wildcards) read
the registries named here; each registry is imported only when asked, so ``import mixq`` stays light.
A third party adds an entry by naming it under the kind's group in its package metadata::

    [project.entry-points."mixq.solvers"]
    toy = "toy_mixq_solver:ToySolver"
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from mixq.registry import Registry


@dataclass(frozen=True)
class Kind:
    """One kind of plug-in.

    Attributes:
        name: plural, as in ``list_<name>`` (``solvers``).
        registry: ``"module:attribute"`` of its :class:`~mixq.registry.Registry`.
        group: the entry-point group third parties register under.
        summary: what an entry is, for docs.
    """

    name: str
    registry: str
    group: str
    summary: str

    def load(self) -> Registry[Any]:
        module, _, attribute = self.registry.partition(":")
        registry: Registry[Any] = getattr(importlib.import_module(module), attribute)
        return registry


KINDS: tuple[Kind, ...] = (
    Kind("backends", "mixq.backends:BACKENDS", "mixq.backends", "a model framework: trace, simulate, export, time"),
    Kind("strategies", "mixq.strategies:STRATEGIES", "mixq.strategies", "how a search turns a model into a plan"),
    Kind("solvers", "mixq.solvers:SOLVERS", "mixq.solvers", "phase-2 allocation along the cost/quality curve"),
    Kind("cost_models", "mixq.cost:COST_MODELS", "mixq.cost_models", "what a group costs at a precision"),
    Kind("hardware", "mixq.hardware:HARDWARE", "mixq.hardware", "a target's kernels, costs and fixed layers"),
    Kind("metrics", "mixq.sensitivity:METRICS", "mixq.metrics", "phase-1 sensitivity of each group and precision"),
    Kind("tasks", "mixq.tasks:TASKS", "mixq.tasks", "what outputs mean and how their fidelity is scored"),
    Kind("runtimes", "mixq.runtimes:RUNTIMES", "mixq.runtimes", "where an exported file runs as given and is timed"),
    Kind("executors", "mixq.executors:EXECUTORS", "mixq.executors", "where a search's measurements run"),
    Kind("tuners", "mixq.backends:TUNERS", "mixq.tuners", "a post-search step learning the plan's quantizers"),
)


def kind(name: str) -> Kind:
    """The kind called ``name`` (``"solvers"``)."""
    for k in KINDS:
        if k.name == name:
            return k
    from mixq.errors import ConfigError

    raise ConfigError(f"unknown kind of plug-in {name!r}; known: {', '.join(k.name for k in KINDS)}")


def _names(kind_name: str, pattern: str) -> list[str]:
    return sorted(kind(kind_name).load().names(pattern))


def list_strategies(pattern: str = "*") -> list[str]:
    """Search strategies (``--strategy``) matching a shell-style ``pattern``, sorted."""
    return _names("strategies", pattern)


def list_solvers(pattern: str = "*") -> list[str]:
    """Phase-2 solvers (``--solver``), e.g. ``list_solvers("i*") == ["ilp", "iqp"]``.

    >>> list_solvers("i*")
    ['ilp', 'iqp']
    """
    return _names("solvers", pattern)


def list_cost_models(pattern: str = "*") -> list[str]:
    """Cost models (``--cost`` takes the additive ones)."""
    return _names("cost_models", pattern)


def list_hardware(pattern: str = "*") -> list[str]:
    """Built-in and plug-in hardware targets (``--hardware NAME``)."""
    return _names("hardware", pattern)


def list_metrics(pattern: str = "*") -> list[str]:
    """Sensitivity metrics."""
    return _names("metrics", pattern)


def list_tasks(pattern: str = "*") -> list[str]:
    return _names("tasks", pattern)


def list_runtimes(pattern: str = "*") -> list[str]:
    return _names("runtimes", pattern)


def list_executors(pattern: str = "*") -> list[str]:
    return _names("executors", pattern)


def list_backends(pattern: str = "*") -> list[str]:
    """Model backends (``torch``, ``onnx``); listing them imports no framework."""
    return _names("backends", pattern)



def list_tuners(pattern: str = "*") -> list[str]:
    """Post-search tuning steps of the chosen plan (``--tune``): ``kd``, ..."""
    return _names("tuners", pattern)
