"""ONNX Runtime's :class:`~mixq.backends.onnx.deployed.profile.Profiler`: the optimized graph it ran and each
node's kernel time in a typical run from its profiler.

Two sessions per file, run in turn: one with profiling on (per-node times and the optimized graph's wiring),
one without (the wall time of a run: ORT's profiler records an event per node, which would inflate it).
Both keep their fastest runs: other processes on the machine only add time (see :func:`nodes_of`). Both run as
``mixq export --benchmark`` does: CPU EP, sequential, one inter-op thread, ``threads`` intra-op threads.
"""

from __future__ import annotations

import bisect
import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from mixq.backends.onnx.deployed.profile import DeployedGraph, DeployedNode
from mixq.backends.onnx.timing import Timer
from mixq.errors import UnsupportedModelError

_SUFFIX = "_kernel_time"
#: Fraction of the runs kept (the fastest). On a machine shared with other work, the median run of one file
#: varied up to 3x between consecutive profiles; the fastest runs are the file's own speed.
FAST = 0.2


class OrtProfiler:
    """Profiles files in ONNX Runtime's CPU execution provider.

    ``fast``: the fraction of runs kept, the fastest (by summed node time, and by wall time): other processes
    on the machine only ever add time, so the fastest runs are the file's own speed.
    """

    runtime = "onnxruntime"

    def __init__(self, fast: float = FAST) -> None:
        self.fast = fast

    def version(self) -> str:
        import onnxruntime as ort

        return str(ort.__version__)

    def profile(self, proto: onnx.ModelProto, feeds: Mapping[str, np.ndarray], threads: int | None = None,
                runs: int = 30, warmup: int = 5) -> DeployedGraph:
        timer = Timer(threads=threads)
        feeds = dict(feeds)
        with tempfile.TemporaryDirectory() as tmp:
            optimized = str(Path(tmp) / "optimized.onnx")
            try:
                session = timer.session(proto, optimized, str(Path(tmp) / "profile"))
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                raise UnsupportedModelError(f"ONNX Runtime cannot run the file to profile it: {first}") from None
            plain = timer.session(proto)
            times = []
            for i in range(warmup + runs):  # interleaved: both sessions meet the same load on the machine
                session.run(None, feeds)
                started = time.perf_counter()
                plain.run(None, feeds)
                if i >= warmup:
                    times.append((time.perf_counter() - started) * 1e3)
            events = json.loads(Path(session.end_profiling()).read_text())
            graph = onnx.load(optimized, load_external_data=False).graph
        return DeployedGraph(nodes_of(graph, events, runs, self.fast), fastest(times, self.fast))


def fastest(times: Sequence[float], fast: float = FAST) -> float:
    """The median of the fastest ``fast`` fraction of ``times``: the runs ``nodes_of`` keeps."""
    return float(np.percentile(times, 100 * fast / 2))


def nodes_of(graph: onnx.GraphProto, events: list[dict[str, Any]], runs: int, fast: float = FAST
             ) -> tuple[DeployedNode, ...]:
    """The optimized graph's nodes with their time per run over the last ``runs`` runs of the profile.

    A node's time is its mean over the fastest ``fast`` fraction of the runs (by summed node time; at least
    one run). Other processes only ever add time, and on a busy machine each node's own median misses
    the bursts most runs meet somewhere (medians per node sum well below a run's median), while a mean
    over whole runs keeps the nodes' times consistent with a run's total. Events are matched by node name;
    nodes sharing a name take their events in turn (the sequential executor runs them in graph order).
    A node without events (ORT ran nothing for it) takes 0 ms.
    """
    starts = sorted(float(e["ts"]) for e in events if e.get("name") == "model_run")
    per_run: dict[str, list[list[float]]] = {}
    for event in events:
        name = str(event.get("name", ""))
        if event.get("cat") != "Node" or not name.endswith(_SUFFIX):
            continue
        run = bisect.bisect_right(starts, float(event["ts"])) - 1 if starts else 0
        slots = per_run.setdefault(name[:-len(_SUFFIX)], [])
        while len(slots) <= max(run, 0):
            slots.append([])
        slots[max(run, 0)].append(float(event["dur"]) / 1e3)
    total_runs = max((len(v) for v in per_run.values()), default=0)
    kept = list(range(max(0, total_runs - runs), total_runs))
    counts: dict[str, int] = {}
    for node in graph.node:
        counts[node.name] = counts.get(node.name, 0) + 1

    def times(name: str, i: int, run: int) -> float:
        slots = per_run.get(name, [])
        mine = slots[run] if run < len(slots) else []
        return sum(mine[i::counts[name]])

    totals = {run: sum(sum(slots[run]) for slots in per_run.values() if run < len(slots)) for run in kept}
    typical = sorted(kept, key=lambda run: totals[run])[:max(1, round(fast * len(kept)))]
    seen: dict[str, int] = {}
    nodes = []
    for node in graph.node:
        i = seen.get(node.name, 0)
        seen[node.name] = i + 1
        ms = float(np.mean([times(node.name, i, run) for run in typical])) if typical else 0.0
        nodes.append(DeployedNode(node.name, _kind(node), ms, tuple(n for n in node.input if n),
                                  tuple(n for n in node.output if n)))
    return tuple(nodes)


def _kind(node: onnx.NodeProto) -> str:
    """``Conv[nchwc]`` for ORT's blocked-layout ops, the op type otherwise (as ``timing`` labels them)."""
    domain = node.domain.rsplit(".", 1)[-1] if node.domain not in ("", "ai.onnx", "com.microsoft") else ""
    return f"{node.op_type}[{domain}]" if domain else node.op_type


__all__ = ["FAST", "OrtProfiler", "fastest", "nodes_of"]
