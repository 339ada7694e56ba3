"""Read a run directory back into typed records, so the report never re-runs a model (and never imports torch)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mixq.core.graph import OpKind, QuantGraph, QuantizerGroup, QuantOp
from mixq.core.precision import Precision
from mixq.core.tables import SensitivityTable
from mixq.cost.deployed import DeployedLatency
from mixq.cost.pairwise import Edge
from mixq.errors import ConfigError, RunDirectoryError
from mixq.plan import Plan
from mixq.schema.latencymodel import LatencyModelFile
from mixq.schema.read import read_json, validate, validate_as
from mixq.schema.rundir import ConfigFile, GroupRecord, Records, SensitivityRecord, Timings
from mixq.schema.verified import VerifiedFileSet
from mixq.solvers.base import ParetoCurve

M = TypeVar("M", LatencyModelFile, VerifiedFileSet)

#: The files ``mixq.api.search`` writes that the report reads, in the order they are checked.
REQUIRED_FILES = ("config.json", "graph.json", "sensitivity.json", "curve.json", "plan.json", "evaluations.json",
                  "timings.json")
#: Written only by a search that exported and judged files (verified.json) or measured the deployed
#: latency (latency_model.json); the report shows them when present.
VERIFIED_FILE = "verified.json"
LATENCY_MODEL_FILE = "latency_model.json"


@dataclass(frozen=True)
class GroupInfo:
    """One quantizer group as ``graph.json`` stores it (the report's row along depth)."""

    index: int
    id: str
    ops: tuple[str, ...]
    kinds: tuple[str, ...]
    macs: int
    weight_params: int
    candidates: tuple[Precision, ...]


@dataclass(frozen=True)
class RunData:
    """Everything a finished search left in its run directory.

    Attributes:
        path: the run directory.
        config: config.json as written (resolved settings and the command).
        groups: graph.json's groups, in graph (depth) order.
        graph: a :class:`QuantGraph` rebuilt from graph.json; exact for BOPs (MACs per group), not for
            sizes (per-channel scale counts and the float parameter total are not stored).
        sensitivity: phase 1's table.
        curve: phase 2's Pareto curve.
        plan: the chosen configuration with its measured quality.
        evaluations: real evaluations made while selecting by a quality target (may be empty).
        timings: seconds per stage.
        verified: the exported files measured by the judge step (verified.json), if it ran.
        latency_model: the measured deployed latency model (latency_model.json), if one was fitted.
        tuning: what the plan's tuning step did (``method`` and its details: steps, seconds, agreement before and
            after), read from the tuned quantizers' file the plan names; None for an untuned plan.
    """

    path: Path
    config: Mapping[str, Any]
    groups: tuple[GroupInfo, ...]
    graph: QuantGraph
    sensitivity: SensitivityTable
    curve: ParetoCurve
    plan: Plan
    evaluations: tuple[Mapping[str, Any], ...]
    timings: Mapping[str, float]
    verified: VerifiedFileSet | None = None
    latency_model: DeployedLatency | None = None
    tuning: Mapping[str, Any] | None = None

    @property
    def command(self) -> str | None:
        command = self.config.get("command")
        return str(command) if command else None


def load_run(path: str | Path) -> RunData:
    """Read and cross-check a run directory; a missing or unreadable file is a RunDirectoryError naming it."""
    path = Path(path)
    if not path.is_dir():
        raise RunDirectoryError(f"run directory {path} does not exist; pass the --out directory of `mixq search`")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise RunDirectoryError(
            f"{path} is not a finished run: missing {', '.join(missing)}; run `mixq search ... --out {path}` "
            "to completion (it resumes where it stopped)"
        )
    raw = {name: _read_json(path / name) for name in REQUIRED_FILES}
    config = _check(ConfigFile, raw, path, "config.json")
    records = _check(list[GroupRecord], raw, path, "graph.json")
    sensitivity_rows = _check(list[SensitivityRecord], raw, path, "sensitivity.json")
    curve_rows = _check(Records, raw, path, "curve.json")
    evaluations = tuple(_check(Records, raw, path, "evaluations.json"))
    timings = _check(Timings, raw, path, "timings.json")
    groups = tuple(GroupInfo(i, r.id, tuple(r.ops), tuple(r.kinds), r.macs, r.weight_params, tuple(r.candidates))
                   for i, r in enumerate(records))
    graph = _graph(groups)
    sensitivity = SensitivityTable({(r.group, r.precision): r.sqnr_db for r in sensitivity_rows})
    try:
        curve = ParetoCurve.from_records(curve_rows, graph)
        plan = Plan.load(path / "plan.json")
    except (ConfigError, KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise RunDirectoryError(f"{path} holds files this mixq cannot read ({type(exc).__name__}: {exc})") from None
    verified = _optional(VerifiedFileSet, path, VERIFIED_FILE)
    latency = _optional(LatencyModelFile, path, LATENCY_MODEL_FILE)
    return RunData(path, config, groups, graph, sensitivity, curve, plan, evaluations, timings, verified,
                   None if latency is None else _deployed(latency), _tuning(plan))


def _tuning(plan: Plan) -> dict[str, Any] | None:
    """The tuning step's method and details; an unreadable file is a RunDirectoryError like any other run file's."""
    try:
        tuned = plan.load_tuned()
    except ConfigError as exc:
        raise RunDirectoryError(str(exc)) from None
    return None if tuned is None else {"method": tuned.method, **tuned.details}


_FIX = "the run may have been killed while writing it: run the same `mixq search` with this --out to finish it"


def _read_json(path: Path) -> Any:
    return read_json(path, "run file", RunDirectoryError, fix=_FIX)


def _check(kind: Any, raw: Mapping[str, Any], path: Path, name: str) -> Any:
    """``raw[name]`` as ``kind``; a violation is a RunDirectoryError naming the file and the field."""
    return validate_as(kind, raw[name], f"run file {path / name}", RunDirectoryError, fix=_FIX)


def _optional(model: type[M], path: Path, name: str) -> M | None:
    """An optional run file as ``model``, None when absent; present but damaged is an error like the others'."""
    if not (path / name).exists():
        return None
    return validate(model, _read_json(path / name), f"run file {path / name}", RunDirectoryError, fix=_FIX)


def _deployed(records: LatencyModelFile) -> DeployedLatency:
    """The typed records as the cost model the search used (same tables, same edge lookup)."""
    pairs: dict[Edge, dict[tuple[Precision, Precision], float]] = {}
    for pair in records.pairs:
        pairs.setdefault((pair.producer, pair.consumer), {})[(pair.precisions[0], pair.precisions[1])] = pair.ms
    return DeployedLatency({(r.group, r.precision): r.ms for r in records.unary}, pairs, records.fixed_ms,
                           records.reference_ms, records.runtime, dict(records.key), records.probes)


def _graph(groups: tuple[GroupInfo, ...]) -> QuantGraph:
    """One stand-in op per group carrying the group's MACs and weights: what the BOPs model reads."""
    rebuilt: dict[str, QuantizerGroup] = {}
    for info in groups:
        kind = OpKind(info.kinds[0]) if info.kinds and info.kinds[0] in OpKind._value2member_map_ else OpKind.CONV
        op = QuantOp(name=info.id, kind=kind, macs=info.macs, weight_numel=info.weight_params, out_channels=0,
                     inputs=(info.id,), weight=info.id if info.weight_params else None)
        rebuilt[info.id] = QuantizerGroup(info.id, (op,), info.candidates)
    return QuantGraph(rebuilt)
