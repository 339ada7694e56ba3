"""The graph a runtime really ran for one file, node by node, with each node's time.

Each runtime (ONNX Runtime, OpenVINO) has a :class:`Profiler`; what it returns is runtime-neutral, so the
attribution to groups and edges is written once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import onnx


@dataclass(frozen=True)
class DeployedNode:
    """One node of the graph the runtime ran.

    Attributes:
        name: the runtime's name for it.
        kind: what ran, e.g. ``QLinearConv``, ``Conv[nchwc]``, ``FusedConv``, ``ReorderInput``, ``Transpose``.
        ms: median milliseconds per run.
        inputs: tensor names it reads (runtime names; graph inputs and the file's tensors keep theirs).
        outputs: tensor names it writes.
        originals: names of the profiled file's nodes it implements, where the runtime says (OpenVINO's
            ``originalLayersNames``); empty when it does not (then attribution goes by names and wiring).
    """

    name: str
    kind: str
    ms: float
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    originals: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeployedGraph:
    """The nodes in execution order, and the median wall time of one run (batch 1)."""

    nodes: tuple[DeployedNode, ...]
    wall_ms: float

    @property
    def node_ms(self) -> float:
        return float(sum(node.ms for node in self.nodes))


class Profiler(Protocol):
    """Runs a file in one runtime with its profiler on."""

    #: The runtime's registry name (``mixq.runtimes.RUNTIMES``).
    runtime: str

    def version(self) -> str:
        """The runtime's version (part of every cache key)."""
        ...

    def profile(self, proto: onnx.ModelProto, feeds: Mapping[str, np.ndarray], threads: int | None = None,
                runs: int = 30, warmup: int = 5) -> DeployedGraph:
        """The graph the runtime ran for ``proto`` and its per-node median times over ``runs`` runs."""
        ...
