"""The search settings a solver's config may draw on, so each solver's dataclass fills itself.

A solver's settings are its own dataclass (``IlpConfig``, ``EvolutionConfig``, ...). The flags every
search has (``--seed``, ``--time-limit``, ``--pair-groups``, ``--max-evaluations``) reach it through
the dataclass's ``from_search`` classmethod, which reads what it needs from this protocol; what is
specific to one solver is set by name (``--solver-option``, see :mod:`mixq.options`).
"""

from __future__ import annotations

from typing import Protocol


class SearchSettings(Protocol):
    """What ``mixq.config.SearchConfig`` offers a solver config (read-only)."""

    @property
    def seed(self) -> int: ...

    @property
    def max_evaluations(self) -> int | None: ...

    @property
    def pair_groups(self) -> int: ...

    @property
    def time_limit_s(self) -> float: ...
