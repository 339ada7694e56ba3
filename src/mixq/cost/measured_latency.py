"""Latency as a measured cost: milliseconds per (quantizer group, precision), timed on this machine.

BOPs assume time scales with weight bits x activation bits. A CPU runtime does not: an int8 op is
only fast when the runtime fuses it into an integer kernel, fp16 runs as fp32 plus casts, 4-bit or
16-bit weights may not be fused at all. A backend times each group's op(s) alone at each candidate
(``Backend.measure_latency``; the ONNX backend times them in ONNX Runtime) and fills a :class:`LatencyTable`;
here the table becomes an additive cost model (the interface of :class:`mixq.cost.kernel_latency.KernelLatency`), is cached per model
and machine, and is compared with BOPs (:func:`bops_vs_latency`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mixq.atomic import write_json
from mixq.schema import read_json, validate
from mixq.schema.caches import LatencyCacheFile
from mixq.core.graph import GroupId, QuantGraph, QuantizerGroup
from mixq.core.precision import Precision
from mixq.cost.bops import Bops
from mixq.errors import ConfigError


class LatencyBackend(Protocol):
    """What timing needs of a backend (``mixq.backends.base.Backend`` has it; declared here so the cost
    models do not import the backends, which import them)."""

    def require_latency(self) -> None: ...

    def measure_latency(self, traced: Any, *, threads: int | None = None, progress: Any = None,
                        scheme: Any = None) -> LatencyTable: ...

logger = logging.getLogger(__name__)

#: Root of mixq's caches; latency tables live in ``<root>/latency/``.
CACHE_ENV = "MIXQ_CACHE_DIR"
TABLE_FILE = "latency_table.json"
#: Bumped when what an entry measures changes, so old cache files are not reused.
FORMAT = 2

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class LatencyEntry:
    """One (group, precision): median milliseconds and what the runtime really ran.

    Attributes:
        ms: median wall time of the group's op(s) alone, batch 1, warm-up excluded.
        kernel: the compute op(s) the runtime ran after its fusions, e.g. ``QLinearConv`` or ``Conv``
            (an integer candidate that shows a float kernel was not fused).
        ops: every node of the optimized graph, in order (QDQ and layout nodes included).
    """

    ms: float
    kernel: str
    ops: tuple[str, ...] = ()


@dataclass
class LatencyTable:
    """Measured entries plus what they depend on (``key``: model fingerprint, machine, settings).

    ``measured`` counts the entries timed in this run (the rest came from the cache); ``seconds`` is
    the time that took.
    """

    entries: dict[tuple[GroupId, Precision], LatencyEntry]
    key: dict[str, Any]
    measured: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def ms(self, group: GroupId, precision: Precision) -> float:
        entry = self.entries.get((group, precision))
        if entry is None:
            raise ConfigError(
                f"the measured latency table has no entry for group {group!r} at {precision}; delete its cache file "
                f"under {cache_dir()} (or set {CACHE_ENV}) so it is measured again"
            )
        return entry.ms

    def kernels(self) -> dict[str, dict[str, int]]:
        """Precision -> kernel -> how many groups ran it (what fused, at a glance)."""
        out: dict[str, dict[str, int]] = {}
        for (_, precision), entry in self.entries.items():
            row = out.setdefault(str(precision), {})
            row[entry.kernel] = row.get(entry.kernel, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "unit": "ms", "key": self.key, "measured": self.measured,
                "seconds": round(self.seconds, 3), **self.extra, "kernels": self.kernels(),
                "entries": [{"group": g, "precision": str(p), "ms": e.ms, "kernel": e.kernel, "ops": list(e.ops)}
                            for (g, p), e in self.entries.items()]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyTable:
        entries = {(str(r["group"]), Precision.parse(str(r["precision"]))):
                   LatencyEntry(float(r["ms"]), str(r["kernel"]), tuple(r.get("ops", ())))
                   for r in data.get("entries", [])}
        return cls(entries, dict(data.get("key", {})))


class MeasuredLatency:
    """Milliseconds from a :class:`LatencyTable`: the sum of the groups' measured kernel times.

    ``reference`` is every group at its slowest measured candidate (as ``KernelLatency``), so
    ``latency<=0.6`` reads "60% of that"; ``latency<=5ms`` is absolute. Ops mixq does not quantize
    (pooling, activations) are not in the table: the total is the quantized ops' time, not the model's.
    """

    name = "latency"
    unit = "ms"

    def __init__(self, table: LatencyTable) -> None:
        self.table = table
        self._slowest: dict[GroupId, float] = {}
        for (group, _), entry in table.entries.items():
            self._slowest[group] = max(self._slowest.get(group, 0.0), entry.ms)

    def cost(self, group: QuantizerGroup, precision: Precision) -> float:
        return self.table.ms(group.id, precision)

    def reference(self, graph: QuantGraph) -> float:
        total = 0.0
        for group in graph:
            if group.id not in self._slowest:
                self.table.ms(group.id, group.candidates[0])  # raises, naming the group
            total += self._slowest[group.id]
        return total

    def fixed(self, graph: QuantGraph) -> float:
        return 0.0


# -- cache -------------------------------------------------------------------------------------------

def cache_dir() -> Path:
    """``$MIXQ_CACHE_DIR/latency`` or ``~/.cache/mixq/latency``."""
    root = os.environ.get(CACHE_ENV)
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "mixq") / "latency"


def cache_path(key: Mapping[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return cache_dir() / f"{digest}.json"


def load_cached(key: Mapping[str, Any]) -> dict[tuple[GroupId, Precision], LatencyEntry]:
    """Entries stored for exactly this key; an unreadable or foreign file is ignored (and measured again)."""
    path = cache_path(key)
    if not path.is_file():
        return {}
    try:
        data = validate(LatencyCacheFile, read_json(path, "latency cache"), f"latency cache {path}")
    except ConfigError as exc:
        logger.warning("ignoring %s; it will be measured again", exc)
        return {}
    if data.format != FORMAT or data.key != json.loads(json.dumps(key, default=str)):
        return {}
    return {(e.group, e.precision): LatencyEntry(e.ms, e.kernel, tuple(e.ops)) for e in data.entries}


def save_cached(table: LatencyTable) -> Path | None:
    """Write atomically; a cache that cannot be written is a warning, never a failed search."""
    path = cache_path(table.key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, table.to_dict(), indent=1)
        return path
    except OSError as exc:
        logger.warning("cannot write the latency cache %s (%s); the table will be measured again next time", path,
                       exc.strerror or exc)
        return None


def fill_table(wanted: Iterable[tuple[GroupId, Precision]], key: Mapping[str, Any],
               measure: Callable[[GroupId, Precision], LatencyEntry], progress: Progress | None = None,
               use_cache: bool = True, stage: str = "latency: timing kernels") -> LatencyTable:
    """The table of ``wanted`` entries: cached ones reused, the rest measured (cache saved as it grows)."""
    wanted = list(dict.fromkeys(wanted))
    cached = load_cached(key) if use_cache else {}
    table = LatencyTable({k: cached[k] for k in wanted if k in cached}, dict(key))
    missing = [k for k in wanted if k not in table.entries]
    started = time.perf_counter()
    for done, (group, precision) in enumerate(missing):
        if progress:
            progress(stage, done, len(missing))
        table.entries[(group, precision)] = measure(group, precision)
        table.measured += 1
        if use_cache and (done % 10 == 9 or done == len(missing) - 1):
            # other entries of the same key (e.g. candidates of an earlier run) are kept
            save_cached(LatencyTable({**cached, **table.entries}, table.key))
    if progress and missing:
        progress(stage, len(missing), len(missing))
    table.seconds = time.perf_counter() - started
    table.entries = {k: table.entries[k] for k in wanted}
    return table


def measure_for(backend: LatencyBackend, traced: Any, **settings: Any) -> LatencyTable:
    """The measured table of a traced model, by its backend (``Backend.measure_latency``)."""
    backend.require_latency()
    table = backend.measure_latency(traced, **settings)
    logger.info("latency table: %d entries measured in %.1f s, %d from the cache", table.measured, table.seconds,
                len(table.entries) - table.measured)
    return table


def table_report(graph: QuantGraph, table: LatencyTable) -> dict[str, Any]:
    """What ``latency_table.json`` in the run directory holds: the table and how BOPs compared."""
    return {**table.to_dict(), "bops_vs_latency": bops_vs_latency(graph, table)}


# -- how well BOPs predicted it ----------------------------------------------------------------------

def bops_vs_latency(graph: QuantGraph, table: LatencyTable) -> dict[str, Any]:
    """Spearman and Pearson correlation of BOPs with measured ms.

    Three views: every (group, candidate) entry (large groups are slow at any precision, so this one is
    easy); within each group across its candidates (does BOPs order one layer's kernels right; the mean
    over groups with at least 3 candidates, else 2); and whole-model totals of the uniform assignments
    (every group at one precision, for the precisions every group has).
    """
    bops = Bops()
    groups = {g.id: g for g in graph}
    pairs = [(bops.cost(groups[g], p), e.ms) for (g, p), e in table.entries.items() if g in groups]
    within = []
    for group in graph:
        rows = [(bops.cost(group, p), e.ms) for (g, p), e in table.entries.items() if g == group.id]
        if len(rows) >= 2:
            rho = _spearman([r[0] for r in rows], [r[1] for r in rows])
            if rho is not None:
                within.append(rho)
    shared = [p for p in dict.fromkeys(p for (_, p) in table.entries)
              if all((g.id, p) in table.entries for g in graph)]
    uniform: list[dict[str, Any]] = [{"precision": str(p), "bops": float(sum(bops.cost(g, p) for g in graph)),
                "ms": float(sum(table.entries[(g.id, p)].ms for g in graph))} for p in shared]
    uniform.sort(key=lambda row: row["bops"])
    out = {
        "entries": {"n": len(pairs), "spearman": _spearman(*_columns(pairs)), "pearson": _pearson(*_columns(pairs))},
        "within_group": {"groups": len(within),
                         "mean_spearman": float(sum(within) / len(within)) if within else None},
        "uniform_models": {"n": len(uniform), "spearman": _spearman([u["bops"] for u in uniform],
                                                                    [u["ms"] for u in uniform]),
                           "pearson": _pearson([u["bops"] for u in uniform], [u["ms"] for u in uniform]),
                           "points": uniform},
    }
    out["summary"] = summary_line(out)
    return out


def summary_line(stats: Mapping[str, Any]) -> str:
    """One sentence for the report."""

    def fmt(value: Any) -> str:
        return "n/a" if value is None else f"{value:+.2f}"

    entries, within, models = stats["entries"], stats["within_group"], stats["uniform_models"]
    return (f"BOPs vs measured latency: Spearman {fmt(entries['spearman'])} / Pearson {fmt(entries['pearson'])} "
            f"over {entries['n']} (group, precision) entries; mean within-group Spearman "
            f"{fmt(within['mean_spearman'])}; uniform models ({models['n']}): Spearman {fmt(models['spearman'])} / "
            f"Pearson {fmt(models['pearson'])}")


def _columns(pairs: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    return [a for a, _ in pairs], [b for _, b in pairs]


def _spearman(x: list[float], y: list[float]) -> float | None:
    return _correlation("spearmanr", x, y)


def _pearson(x: list[float], y: list[float]) -> float | None:
    return _correlation("pearsonr", x, y)


def _correlation(name: str, x: list[float], y: list[float]) -> float | None:
    """None where it is undefined (fewer than 2 points, or a constant side)."""
    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    from scipy import stats

    value = float(getattr(stats, name)(x, y)[0])
    return None if math.isnan(value) else value
