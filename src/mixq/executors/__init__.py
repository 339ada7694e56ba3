"""Executors: where a search's measurements run (this process today; later a pool or a cluster).

Empty but ready: the next issues add executors as entries of :data:`EXECUTORS`, and third parties
add theirs under the ``mixq.executors`` entry-point group. The entry interface arrives with the
first executor; until then entries are any factory.
"""

from __future__ import annotations

from typing import Any

from mixq.registry import Registry

#: Executors by name (none built in yet).
EXECUTORS: Registry[Any] = Registry("executor", "mixq.executors")

__all__ = ["EXECUTORS"]
