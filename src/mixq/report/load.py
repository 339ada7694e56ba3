"""Read a run directory back into typed records, so the report never re-runs a model (and never imports torch)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixq.core.graph import OpKind, QuantGraph, QuantizerGroup, QuantOp
from mixq.core.precision import Precision
from mixq.core.tables import SensitivityTable
from mixq.errors import ConfigError, RunDirectoryError
from mixq.plan import Plan
from mixq.solvers.base import ParetoCurve

#: The files ``mixq.api.search`` writes that the report reads, in the order they are checked.
REQUIRED_FILES = ("config.json", "graph.json", "sensitivity.json", "curve.json", "plan.json", "evaluations.json",
                  "timings.json")


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
    try:
        groups = tuple(_group_info(i, record) for i, record in enumerate(_list(raw, "graph.json")))
        graph = _graph(groups)
        sensitivity = SensitivityTable.from_records(_list(raw, "sensitivity.json"))
        curve = ParetoCurve.from_records(_list(raw, "curve.json"), graph)
        plan = Plan.load(path / "plan.json")
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        raise RunDirectoryError(f"{path} holds files this mixq cannot read ({type(exc).__name__}: {exc})") from None
    config = raw["config.json"]
    timings = raw["timings.json"]
    if not isinstance(config, dict) or not isinstance(timings, dict):
        raise RunDirectoryError(f"{path}: config.json and timings.json must hold JSON objects")
    evaluations = tuple(e for e in _list(raw, "evaluations.json") if isinstance(e, dict))
    return RunData(path, config, groups, graph, sensitivity, curve, plan, evaluations,
                   {str(k): float(v) for k, v in timings.items() if isinstance(v, (int, float))})


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RunDirectoryError(f"cannot read {path}: {exc}; the run may have been killed while writing it") from None


def _list(raw: Mapping[str, Any], name: str) -> list[Any]:
    value = raw[name]
    if not isinstance(value, list):
        raise RunDirectoryError(f"{name} must hold a JSON list, found {type(value).__name__}")
    return value


def _group_info(index: int, record: Mapping[str, Any]) -> GroupInfo:
    return GroupInfo(
        index=index,
        id=str(record["id"]),
        ops=tuple(str(op) for op in record.get("ops", ())),
        kinds=tuple(str(kind) for kind in record.get("kinds", ())),
        macs=int(record.get("macs", 0)),
        weight_params=int(record.get("weight_params", 0)),
        candidates=tuple(Precision.parse(str(p)) for p in record.get("candidates", ())),
    )


def _graph(groups: tuple[GroupInfo, ...]) -> QuantGraph:
    """One stand-in op per group carrying the group's MACs and weights: what the BOPs model reads."""
    rebuilt: dict[str, QuantizerGroup] = {}
    for info in groups:
        kind = OpKind(info.kinds[0]) if info.kinds and info.kinds[0] in OpKind._value2member_map_ else OpKind.CONV
        op = QuantOp(name=info.id, kind=kind, macs=info.macs, weight_numel=info.weight_params, out_channels=0,
                     inputs=(info.id,), weight=info.id if info.weight_params else None)
        rebuilt[info.id] = QuantizerGroup(info.id, (op,), info.candidates)
    return QuantGraph(rebuilt)
