"""Runtimes: where an exported plan runs and is timed (ONNX Runtime today, inside its backend).

Empty but ready: the next issues add runtimes (TensorRT, OpenVINO, TFLite, ...) as entries of
:data:`RUNTIMES`, and third parties add theirs under the ``mixq.runtimes`` entry-point group. The entry
interface arrives with the first runtime; until then entries are any factory.
"""

from __future__ import annotations

from typing import Any

from mixq.registry import Registry

#: Runtimes by name (none built in yet).
RUNTIMES: Registry[Any] = Registry("runtime", "mixq.runtimes")

__all__ = ["RUNTIMES"]
