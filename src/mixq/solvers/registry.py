"""The solvers by name (``--solver``), each with the settings dataclass it takes.

Built-ins are listed here in the order ``--help`` shows them; a third party adds one under the
``mixq.solvers`` entry-point group (a class with ``name``, and ``curve``/``solve`` or ``search``; its
settings a dataclass named by the class attribute ``config_class``, set by ``--solver-option``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mixq.registry import Registry
from mixq.solvers.base import Solver
from mixq.solvers.evolution import EvolutionConfig, EvolutionSolver
from mixq.solvers.exhaustive import ExhaustiveSolver
from mixq.solvers.fallback import FallbackSolver
from mixq.solvers.greedy import GreedyConfig, GreedySolver
from mixq.solvers.ilp import IlpConfig, IlpSolver
from mixq.solvers.iqp import IqpConfig, IqpSolver
from mixq.solvers.loop import ClosedLoopSolver
from mixq.solvers.settings import SearchSettings

#: Tag of the solvers ``--compare-solvers`` runs when given no list (exhaustive is for tiny models only).
COMPARED = "compared"

#: Solvers by name: a curve solver (:class:`~mixq.solvers.base.Solver`) or a closed-loop one
#: (:class:`~mixq.solvers.loop.ClosedLoopSolver`).
SOLVERS: Registry[Solver | ClosedLoopSolver] = Registry("solver", "mixq.solvers")
SOLVERS.add("greedy", GreedySolver, config=GreedyConfig, tags={COMPARED},
            help="Pandey et al.'s greedy walk down the Pareto curve, default")
SOLVERS.add("ilp", IlpSolver, config=IlpConfig, tags={COMPARED},
            help="exact 0/1 program under every budget at once, HiGHS")
SOLVERS.add("iqp", IqpSolver, config=IqpConfig, tags={COMPARED},
            help="CLADO cross-layer terms from measured pairs of groups")
SOLVERS.add("fallback", FallbackSolver, tags={COMPARED},
            help="INC/NNCF-style: restore sensitive groups until the quality target holds")
SOLVERS.add("evolution", EvolutionSolver, config=EvolutionConfig, tags={COMPARED},
            help="closed loop on real evaluations, seeded by the ILP")
SOLVERS.add("exhaustive", ExhaustiveSolver,
            help="every assignment, tiny models only")


def solver_config(name: str, search: SearchSettings | None = None, options: Mapping[str, Any] | None = None) -> Any:
    """The settings dataclass of solver ``name`` (None if it takes none): ``from_search(search)`` or the
    defaults, then ``options`` (see :meth:`mixq.registry.Registry.settings`).

    Raises:
        ConfigError: unknown solver (did-you-mean), unknown setting (naming the known ones) or a bad value.
    """
    return SOLVERS.settings(name, search, options)


def get_solver(name: str, settings: Any = None) -> Solver | ClosedLoopSolver:
    """A solver by registry name, with its settings dataclass (default: the dataclass's defaults).

    >>> get_solver("greedy").name
    'greedy'
    >>> get_solver("ilp", solver_config("ilp", options={"time_limit_s": "5"})).config.time_limit_s
    5.0
    """
    return SOLVERS.create(name, settings)

