"""Tasks: what a model's outputs mean (classification today), so quality can be scored for it.

Empty but ready: the next issues add task fidelity metrics (detection mAP, segmentation mIoU, ...)
as entries of :data:`TASKS`, and third parties add theirs under the ``mixq.tasks`` entry-point group.
The entry interface arrives with the first task; until then entries are any factory.
"""

from __future__ import annotations

from typing import Any

from mixq.registry import Registry

#: Tasks by name (none built in yet).
TASKS: Registry[Any] = Registry("task", "mixq.tasks")

__all__ = ["TASKS"]
