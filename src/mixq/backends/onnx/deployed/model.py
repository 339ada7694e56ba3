"""Fitting :class:`~mixq.cost.deployed.DeployedLatency` for an ONNX model: probe plans exported as ``mixq export``
writes them, profiled in a runtime, each node attributed (``attribute``), averaged.

For a group ``g`` and an edge ``e = (a, b)``, over the probes:

    unary[g, p]        = mean over probes with g at p of own(g)
    pairs[e][p, q]     = mean over probes with (a, b) at (p, q) of edge(e) + effect of b at q on dev(a)
    fixed              = mean over probes of (wall - profiled node time) + nodes no group explains

``own(g)`` is the group's compute node(s) and what only it pays. A group's kernel depends on its consumers
(an int8 conv whose output a float group reads is left unfused by ORT: a float ``FusedConv`` plus a
``DequantizeLinear`` of its weights every run), so its deviation from its unary mean in a probe,
``dev(a) = own(a) - unary[a, p]``, is fitted on its consumers' precisions (``_consumer_effects``) and added
to its outgoing edges: the pairwise table then carries the effect of the consumers' precisions, and the
totals stay exact in expectation over the probes.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from mixq.atomic import append_line, write_json
from mixq.backends.base import Progress
from mixq.backends.onnx.deployed.attribute import Attribution, attribute, matcher
from mixq.backends.onnx.deployed.edges import group_edges
from mixq.backends.onnx.deployed.probes import ProbeSettings, probe_plans
from mixq.backends.onnx.deployed.profile import DeployedGraph, DeployedNode, Profiler
from mixq.core.assignment import Assignment
from mixq.core.graph import GroupId
from mixq.core.precision import Precision
from mixq.cost.deployed import DeployedLatency
from mixq.cost.measured_latency import cache_dir
from mixq.cost.pairwise import Edge
from mixq.errors import CapabilityError

logger = logging.getLogger(__name__)

#: Runtime name -> "module:class" of its profiler (imported when asked for: a runtime may not be installed).
PROFILERS: Mapping[str, str] = {
    "onnxruntime": "mixq.backends.onnx.deployed.ort_profile:OrtProfiler",
    "openvino": "mixq.backends.onnx.deployed.openvino_profile:OpenVinoProfiler",
}
#: Calibration samples the probes' output quantizers are calibrated on (values do not change the time).
PROBE_SAMPLES = 4
#: Bumped when the cached file's layout or the fitting changes.
FORMAT = 2


def profiler_for(runtime: str) -> Profiler:
    """The profiler of ``runtime`` (``PROFILERS``), or ``CapabilityError`` naming what is missing."""
    target = PROFILERS.get(runtime)
    if target is None:
        raise CapabilityError(f"no deployed-latency profiler for runtime {runtime!r}; "
                              f"known: {', '.join(sorted(PROFILERS))}")
    module, name = target.split(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise CapabilityError(f"the deployed latency model in {runtime} needs {target}, which cannot be loaded "
                              f"({exc}); use --runtime onnxruntime") from None
    profiler: Profiler = cls()
    return profiler


# -- kernels observed --------------------------------------------------------------------------------

@dataclass(frozen=True)
class KernelSeen:
    """The kernel kind a probe ran for a group, with its local context (consumers' precisions, and for each
    consumer its own consumers' precisions: an int8 group is unfused when a float consumer feeds int8)."""

    group: GroupId
    precision: str
    near: str
    far: str
    kernel: str


def _context(group: GroupId, plan: Mapping[GroupId, Precision], consumers: Mapping[GroupId, Sequence[GroupId]]
             ) -> tuple[str, str]:
    near = ",".join(str(plan[c]) for c in consumers.get(group, ()))
    far = ";".join(f"{plan[c]}>" + ",".join(str(plan[d]) for d in consumers.get(c, ()))
                   for c in consumers.get(group, ()))
    return near, far


def _consumers(edges: Sequence[Edge]) -> dict[GroupId, list[GroupId]]:
    out: dict[GroupId, list[GroupId]] = {}
    for a, b in edges:
        out.setdefault(a, []).append(b)
    return out


# -- the fit -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeployedFit:
    """The fitted model, the kernels the probes ran, and what the fit measured.

    Attributes:
        model: the pairwise latency model.
        kernels: each probe's kernel kind per group, in context (for :func:`predicted_kernels`).
        coverage: fraction of (edge, producer, consumer) combinations the probes produced.
        profiled: files profiled by this call (0: loaded from the cache).
        probes: the probe plans.
        attributions: per probe, where each node's time went (empty when loaded from the cache).
        walls: per probe, its measured wall ms (in-sample residuals; empty when loaded from the cache).
    """

    model: DeployedLatency
    kernels: tuple[KernelSeen, ...]
    coverage: float
    profiled: int = 0
    probes: tuple[dict[GroupId, Precision], ...] = ()
    attributions: tuple[Attribution, ...] = field(default=(), repr=False)
    walls: tuple[float, ...] = ()


def fit(plans: Sequence[Mapping[GroupId, Precision]], graphs: Sequence[DeployedGraph],
        attributions: Sequence[Attribution], edges: Sequence[Edge], candidates: Mapping[GroupId, Sequence[Precision]],
        reference_ms: float, runtime: str, key: Mapping[str, Any] | None = None) -> DeployedLatency:
    """Average the probes' attributions into a :class:`DeployedLatency` (see the module's docstring)."""
    samples: dict[tuple[GroupId, Precision], list[float]] = {}
    for plan, parts in zip(plans, attributions):
        for group in candidates:
            samples.setdefault((group, plan[group]), []).append(parts.own.get(group, 0.0))
    unary = {k: float(np.mean(v)) for k, v in samples.items()}
    outgoing = _consumers(edges)
    pair_samples: dict[Edge, dict[tuple[Precision, Precision], list[float]]] = {e: {} for e in edges}
    for plan, parts in zip(plans, attributions):
        for a, b in edges:
            pair_samples[(a, b)].setdefault((plan[a], plan[b]), []).append(parts.edges.get((a, b), 0.0))
    shift = _consumer_effects(plans, attributions, unary, outgoing, candidates)
    pairs = {e: {pq: float(np.mean(v)) + shift.get((e, *pq), 0.0) for pq, v in table.items()}
             for e, table in pair_samples.items()}
    fixed = float(np.mean([g.wall_ms - g.node_ms + parts.fixed for g, parts in zip(graphs, attributions)]))
    return DeployedLatency(unary, pairs, fixed, reference_ms, runtime, dict(key or {}), len(plans))


def _consumer_effects(plans: Sequence[Mapping[GroupId, Precision]], attributions: Sequence[Attribution],
                      unary: Mapping[tuple[GroupId, Precision], float], outgoing: Mapping[GroupId, Sequence[GroupId]],
                      candidates: Mapping[GroupId, Sequence[Precision]]) -> dict[tuple[Edge, Precision, Precision],
                                                                                 float]:
    """How each consumer's precision shifts a producer's own time: (edge, p, q) -> ms added to ``pairs``.

    Per producer ``a`` and precision ``p``, the probes' deviations ``own(a) - unary[a, p]`` are fitted by
    least squares (minimum norm) on one-hot consumer precisions, one block per outgoing edge. Each block
    sums to one, so the residuals sum to zero: totals stay exact in expectation over the probes. With one
    consumer this is the mean deviation per consumer precision; with several, a kernel left unfused when
    *any* consumer is float is charged mostly to the float consumers' edges, not equally to all.
    """
    out: dict[tuple[Edge, Precision, Precision], float] = {}
    for a, consumers in outgoing.items():
        columns = [(b, q) for b in consumers for q in candidates[b]]
        for p in candidates[a]:
            rows = [(plan, parts) for plan, parts in zip(plans, attributions) if plan[a] == p]
            if not rows:
                continue
            x = np.array([[float(plan[b] == q) for b, q in columns] for plan, _ in rows])
            y = np.array([parts.own.get(a, 0.0) - unary[(a, p)] for _, parts in rows])
            coef = np.linalg.lstsq(x, y, rcond=None)[0]
            for (b, q), value in zip(columns, coef):
                out[((a, b), p, q)] = float(value)
    return out


def predict(model: DeployedLatency, plan: Mapping[GroupId, Precision]) -> float:
    """The model's milliseconds for ``plan`` (fixed + groups + edges)."""
    total = model.fixed_ms + sum(model.unary[(g, p)] for g, p in plan.items())
    return float(total + sum(model.edge_cost(e, plan[e[0]], plan[e[1]]) for e in model.pairs))


def predicted_kernels(fit_or_kernels: DeployedFit | Sequence[KernelSeen], plan: Mapping[GroupId, Precision],
                      edges: Sequence[Edge] | None = None) -> dict[GroupId, str]:
    """The kernel each group will run under ``plan``, from what the probes ran in the same local context.

    The most frequent kind among probes with the same precision and the same consumers' and consumers'
    consumers' precisions; failing that, the same consumers' precisions; failing that, the same precision.
    """
    if isinstance(fit_or_kernels, DeployedFit):
        seen: Sequence[KernelSeen] = fit_or_kernels.kernels
        edges = tuple(fit_or_kernels.model.pairs) if edges is None else edges
    else:
        seen = fit_or_kernels
    consumers = _consumers(edges or ())
    out: dict[GroupId, str] = {}
    for group, precision in plan.items():
        near, far = _context(group, plan, consumers)
        mine = [k for k in seen if k.group == group and k.precision == str(precision)]
        for level in ([k for k in mine if k.far == far], [k for k in mine if k.near == near], mine):
            if level:
                kinds = [k.kernel for k in level]
                out[group] = max(dict.fromkeys(kinds), key=kinds.count)
                break
    return out


# -- measuring ---------------------------------------------------------------------------------------

def feeds_of(sim: Any, calibration: np.ndarray) -> dict[str, np.ndarray]:
    """The first calibration sample, batch 1: a float kernel's speed can depend on the values (denormal
    activations), so the model is timed on the user's data, as the judge times the files."""
    model = sim.model
    return {model.input_name: np.ascontiguousarray(calibration[:1], dtype=np.float32)}


def float_proto(sim: Any) -> onnx.ModelProto:
    from mixq.backends.onnx.simulation import restore_declarations

    proto = onnx.ModelProto()
    proto.CopyFrom(sim.model.proto)
    restore_declarations(proto, sim.model.declared)
    return proto


def plan_proto(sim: Any, plan: Mapping[GroupId, Precision], calibration: np.ndarray) -> onnx.ModelProto:
    """The file ``mixq export`` writes for ``plan`` (output quantizers calibrated on a few samples)."""
    from mixq.backends.onnx.export.onnx_qdq import build_qdq

    return build_qdq(sim, Assignment(dict(plan)), calibration=calibration[:PROBE_SAMPLES]).proto


def cache_key(sim: Any, runtime: str, version: str, threads: int | None, settings: ProbeSettings,
              feeds: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """What the fitted figures depend on (the timed input too: float kernels' speed depends on the values)."""
    from mixq.backends.onnx.latency import fingerprint, machine

    scheme = sim.quantizers.scheme
    return {"kind": "deployed_latency", "format": FORMAT, "model": fingerprint(sim), "machine": machine(),
            "runtime": runtime, "runtime_version": version, "threads": threads,
            "candidates": {g.id: [str(p) for p in g.candidates] for g in sim.graph},
            "scheme": {"act_symmetric": scheme.act_symmetric, "weight_symmetric": scheme.weight_symmetric,
                       "weight_per_channel": scheme.weight_per_channel, "act_dynamic": scheme.act_dynamic},
            "probes": settings.key(), "probe_samples": PROBE_SAMPLES,
            "input": {name: hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()[:16]
                      for name, value in (feeds or {}).items()}}


def cache_file(key: Mapping[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return cache_dir() / "deployed" / f"{digest}.json"


def _load(key: Mapping[str, Any]) -> DeployedFit | None:
    path = cache_file(key)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("key") != json.loads(json.dumps(key, default=str)):
            return None
        model = DeployedLatency.from_records(data["model"])
        kernels = tuple(KernelSeen(**k) for k in data["kernels"])
        return DeployedFit(model, kernels, float(data["coverage"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("ignoring the deployed latency cache %s (%s); measuring again", path, exc)
        return None


def _save(key: Mapping[str, Any], result: DeployedFit) -> None:
    path = cache_file(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"key": dict(key), "model": result.model.to_records(), "coverage": result.coverage,
                          "kernels": [vars(k) for k in result.kernels]}, indent=1)
    except OSError as exc:
        logger.warning("cannot write the deployed latency cache %s (%s)", path, exc.strerror or exc)


def fastest_profiles(profiler: Profiler, files: Sequence[Callable[[], onnx.ModelProto]],
                     feeds: Mapping[str, np.ndarray], threads: int | None, rounds: int = 1,
                     progress: Progress | None = None, stage: str = "latency model",
                     anchor: int | None = None, log: Path | None = None) -> list[DeployedGraph]:
    """Each file (made when first needed) profiled ``rounds`` times, in turn (so a burst of other work hits
    one round, not one file), keeping its fastest profile. With one round no file is kept in memory.

    ``anchor``: the index of a reference file (the float model) timed right before every other file. This
    machine's speed drifts by up to 2x over minutes; each profile is scaled by (the anchor's median wall over
    the whole campaign) / (its wall just before that profile), so every file is expressed at one machine speed
    and the anchor's entry is that median.

    ``log``: a JSON-lines file every finished profile is appended to; a run killed part-way and started again
    reads it and profiles only what is missing (the probes are measurements: none is lost or redone)."""
    done = _read_log(log) if log is not None else {}
    best: list[DeployedGraph | None] = [None] * len(files)
    kept: dict[int, onnx.ModelProto] = {}
    anchor_proto = files[anchor]() if anchor is not None else None
    anchor_walls: list[float] = []
    raw: list[tuple[int, DeployedGraph, float]] = []
    total = (len(files) - (anchor is not None)) * rounds
    finished = 0
    if progress:
        progress(stage, 0, total)
    for r in range(rounds):
        for i, make in enumerate(files):
            if i == anchor:
                continue
            if (r, i) in done:
                graph, speed = done[(r, i)]
            else:
                proto = kept.get(i) or make()
                if rounds > 1:
                    kept[i] = proto
                speed = 1.0
                if anchor_proto is not None:
                    speed = profiler.profile(anchor_proto, feeds, threads, runs=10, warmup=2).wall_ms
                graph = profiler.profile(proto, feeds, threads)
                if log is not None:
                    append_line(log, json.dumps({"round": r, "file": i, "speed": speed, "graph": _graph_record(graph)})
                                + "\n")
            if anchor_proto is not None:
                anchor_walls.append(speed)
            raw.append((i, graph, speed))
            finished += 1
            if progress:
                progress(stage, finished, total)
    typical = float(statistics.median(anchor_walls)) if anchor_walls else 1.0
    for i, graph, speed in raw:
        scaled = _scaled(graph, typical / speed) if anchor_walls else graph
        current = best[i]
        if current is None or scaled.wall_ms < current.wall_ms:
            best[i] = scaled
    if anchor is not None:
        best[anchor] = DeployedGraph((), typical)
    if progress:
        progress(stage, total, total)
    return [graph for graph in best if graph is not None]


def _graph_record(graph: DeployedGraph) -> dict[str, Any]:
    return {"wall_ms": graph.wall_ms, "nodes": [[n.name, n.kind, n.ms, list(n.inputs), list(n.outputs),
                                                 list(n.originals)] for n in graph.nodes]}


def _read_log(log: Path) -> dict[tuple[int, int], tuple[DeployedGraph, float]]:
    """The profiles a killed fit finished: (round, file) -> (graph, anchor wall); a torn last line is skipped."""
    out: dict[tuple[int, int], tuple[DeployedGraph, float]] = {}
    if not log.is_file():
        return out
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
            nodes = tuple(DeployedNode(str(n[0]), str(n[1]), float(n[2]), tuple(n[3]), tuple(n[4]), tuple(n[5]))
                          for n in entry["graph"]["nodes"])
            out[(int(entry["round"]), int(entry["file"]))] = (DeployedGraph(nodes, float(entry["graph"]["wall_ms"])),
                                                              float(entry["speed"]))
        except (ValueError, KeyError, TypeError, IndexError):
            continue
    return out


def _scaled(graph: DeployedGraph, factor: float) -> DeployedGraph:
    """``graph`` at another machine speed: every node's time and the wall multiplied by ``factor``."""
    return DeployedGraph(tuple(replace(node, ms=node.ms * factor) for node in graph.nodes), graph.wall_ms * factor)


def fit_deployed(sim: Any, calibration: np.ndarray, runtime: str = "onnxruntime", threads: int | None = None,
                 progress: Progress | None = None, seed: int = 0, profiler: Profiler | None = None,
                 settings: ProbeSettings | None = None, use_cache: bool = True) -> DeployedFit:
    """Fit (or load from the cache) the deployed latency model of ``sim`` in ``runtime``."""
    profiler = profiler or profiler_for(runtime)
    settings = settings or ProbeSettings(seed=seed)
    feeds = feeds_of(sim, calibration)
    key = cache_key(sim, profiler.runtime, profiler.version(), threads, settings, feeds)
    if use_cache:
        cached = _load(key)
        if cached is not None:
            return cached
    structure = group_edges(sim)
    candidates = {g.id: tuple(g.candidates) for g in sim.graph}
    probes = probe_plans(structure.order, candidates, structure.edges, settings)
    if probes.missing:
        logger.warning("the latency model's probes cover %.0f%% of edge precision combinations (%d missing); "
                       "those edges cost 0", 100 * probes.coverage, len(probes.missing))
    match = matcher(sim)
    files = [partial(float_proto, sim)] + [partial(plan_proto, sim, plan, calibration) for plan in probes.plans]
    log = cache_file(key).with_suffix(".probes.jsonl") if use_cache else None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
    profiled = fastest_profiles(profiler, files, feeds, threads, settings.rounds, progress, "latency model",
                                anchor=0, log=log)
    reference = profiled[0].wall_ms
    graphs = profiled[1:]
    parts: list[Attribution] = []
    consumers = _consumers(structure.edges)
    kernels: list[KernelSeen] = []
    for plan, graph in zip(probes.plans, graphs):
        found = attribute(graph, match, structure.edges)
        parts.append(found)
        for group, kind in found.kernels.items():
            near, far = _context(group, plan, consumers)
            kernels.append(KernelSeen(group, str(plan[group]), near, far, kind))
    model = fit(probes.plans, graphs, parts, structure.edges, candidates, reference, profiler.runtime, key)
    result = DeployedFit(model, tuple(kernels), probes.coverage, 2 * len(probes.plans) * settings.rounds, probes.plans,
                         tuple(parts), tuple(graph.wall_ms for graph in graphs))
    if use_cache:
        _save(key, result)
        if log is not None:
            log.unlink(missing_ok=True)  # everything it held is in the saved model now
    return result


def measure_deployed_latency(sim: Any, calibration: np.ndarray, runtime: str = "onnxruntime",
                             threads: int | None = None, progress: Progress | None = None, seed: int = 0,
                             profiler: Profiler | None = None) -> DeployedLatency:
    """The deployed latency model of ``sim`` in ``runtime`` (``Backend.measure_deployed_latency``)."""
    return fit_deployed(sim, calibration, runtime, threads, progress, seed, profiler).model


def accuracy(sim: Any, model: DeployedLatency, calibration: np.ndarray,
             plans: Sequence[Mapping[GroupId, Precision] | Assignment], runtime: str = "onnxruntime",
             threads: int | None = None, profiler: Profiler | None = None, progress: Progress | None = None,
             rounds: int = 1) -> list[tuple[float, float]]:
    """(predicted ms, measured wall ms) of each plan's exported file, for benchmarking the model (each file
    profiled ``rounds`` times in turn, the fastest kept, as the probes were)."""
    profiler = profiler or profiler_for(runtime)
    mappings = [dict(plan.items()) for plan in plans]
    files = [partial(plan_proto, sim, mapping, calibration) for mapping in mappings]
    graphs = fastest_profiles(profiler, files, feeds_of(sim, calibration), threads, rounds, progress, "latency model accuracy")
    return [(predict(model, mapping), graph.wall_ms) for mapping, graph in zip(mappings, graphs)]


def random_plans(groups: Mapping[GroupId, Sequence[Precision]], count: int, seed: int = 1
                 ) -> list[dict[GroupId, Precision]]:
    """``count`` plans with each group's precision drawn uniformly from its candidates (benchmarks)."""
    rng = np.random.default_rng(seed)
    return [{g: c[int(rng.integers(len(c)))] for g, c in groups.items()} for _ in range(count)]


def summary(pairs: Sequence[tuple[float, float]]) -> dict[str, float]:
    """Median and worst relative error of (predicted, measured) pairs."""
    errors = [abs(p - m) / m for p, m in pairs if m > 0]
    return {"median": float(statistics.median(errors)) if errors else float("nan"),
            "worst": float(max(errors)) if errors else float("nan"), "n": float(len(errors))}


__all__ = ["PROFILERS", "DeployedFit", "KernelSeen", "accuracy", "fit", "fit_deployed", "measure_deployed_latency",
           "predict", "predicted_kernels", "profiler_for", "random_plans", "summary"]
