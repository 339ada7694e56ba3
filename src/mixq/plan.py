"""A plan: the chosen assignment with its costs, predicted and measured quality, and provenance.

``plan.json`` has a format version (``schema_version``). Version 2 stores costs as one record per cost
model (``{"bops": {"value", "unit", "ratio"}, ...}``) and the quantization scheme and calibration size
as fields of their own; version 1 files (flat ``bops_ratio``/``weight_bytes`` keys, the scheme inside
``provenance``) still load and are converted on reading.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mixq.atomic import write_json
from mixq.core.assignment import Assignment
from mixq.core.precision import QuantScheme
from mixq.core.tuned import TunedQuantizers
from mixq.cost.totals import CostRecord
from mixq.errors import ConfigError
from mixq.schema import read_json, validate
from mixq.schema.plan import PlanFileV1, PlanFileV2
from mixq.version import __version__

PLAN_SCHEMA = 2


@dataclass(frozen=True)
class Provenance:
    """Where a plan came from, for reproduction and reports.

    Attributes:
        mixq_version: the mixq that searched it.
        model_fingerprint: the traced graph and float outputs on two samples (see ``Prepared.fingerprint``).
        seed: the search's seed.
        strategy: the search strategy's registry name (``two-phase``, ``tuneqn``).
        solver: the phase-2 solver's registry name.
        hardware: the ``--hardware`` target, if any.
        restrictions: the ``--restrict`` rules, as written.
        solver_details: what the solver reports about its run (evaluations spent, fronts...).
    """

    mixq_version: str = __version__
    model_fingerprint: str = ""
    seed: int = 0
    strategy: str = "two-phase"
    solver: str = "greedy"
    hardware: str | None = None
    restrictions: tuple[str, ...] = ()
    solver_details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out.update(restrictions=list(self.restrictions), solver_details=dict(self.solver_details))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provenance:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}  # v1 also kept scheme/num_samples here
        values["restrictions"] = tuple(str(r) for r in values.get("restrictions", ()))
        values["solver_details"] = dict(values.get("solver_details") or {})
        return cls(**values)


@dataclass(frozen=True)
class Plan:
    """What ``search`` returns and ``eval``/``export`` consume.

    Attributes:
        assignment: precision per quantizer group.
        costs: one record per cost model, keyed by its registry name (``bops``, ``size``, ``memory``,
            and ``latency`` when it was measured): ``plan.costs["bops"].ratio``.
        predicted_sqnr_db: phase 1's additive-noise prediction for this assignment.
        quality: measured quality on the search's evaluation data, when it was measured.
        budgets: the budget expressions the plan was chosen for.
        scheme: how tensors were quantized (export and eval calibrate the same way); None when unknown.
        num_samples: calibration samples the search's ranges came from; None when unknown.
        provenance: mixq version, model fingerprint, seed, strategy, solver.
        tuned: the file of quantizers a tuning step learned for this plan (``tuned.npz``), relative to the
            plan's folder; None: calibrated quantizers (the field is then not written, so older plans and
            untuned ones read and write alike).
        folder: where the plan was loaded from (``tuned`` is found there); not stored.
    """

    assignment: Assignment
    costs: Mapping[str, CostRecord]
    predicted_sqnr_db: float
    quality: Mapping[str, Any] = field(default_factory=dict)
    budgets: tuple[str, ...] = ()
    scheme: QuantScheme | None = None
    num_samples: int | None = None
    provenance: Provenance = field(default_factory=Provenance)
    tuned: str | None = None
    folder: Path | None = field(default=None, compare=False)

    def tuned_path(self) -> Path | None:
        """The tuned quantizers' file, or None for an untuned plan."""
        if self.tuned is None:
            return None
        if Path(self.tuned).is_absolute():
            raise ConfigError(f"the plan's 'tuned' field must name a file relative to the plan's folder, got "
                              f"{self.tuned!r}; rerun the search or remove the field")
        return (self.folder or Path(".")) / self.tuned

    def load_tuned(self) -> TunedQuantizers | None:
        """The plan's learned quantizers (None if untuned); a missing or corrupt file is one ConfigError."""
        path = self.tuned_path()
        return TunedQuantizers.load(path) if path is not None else None

    def ratio(self, cost: str) -> float | None:
        """The plan's total under ``cost`` as a fraction of that model's reference (None: not recorded)."""
        record = self.costs.get(cost)
        return record.ratio if record is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": PLAN_SCHEMA,
            "mixq_version": __version__,
            "assignment": self.assignment.to_dict(),
            "precision_counts": self.assignment.counts(),
            "costs": {name: record.to_dict() for name, record in self.costs.items()},
            "predicted_sqnr_db": self.predicted_sqnr_db,
            "quality": dict(self.quality),
            "budgets": list(self.budgets),
            "scheme": self.scheme.to_dict() if self.scheme is not None else None,
            "num_samples": self.num_samples,
            "provenance": self.provenance.to_dict(),
            **({"tuned": self.tuned} if self.tuned is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "the plan") -> Plan:
        """A plan of any known format version (1 or 2); a field of the wrong type is a ConfigError naming it."""
        if not isinstance(data, Mapping) or "assignment" not in data:
            raise ConfigError(f"{source} is not a mixq plan (no 'assignment')")
        version = data.get("schema_version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ConfigError(f"{source} has invalid fields: schema_version must be a whole number such as "
                              f"{PLAN_SCHEMA}, not {version!r}; pass a plan.json written by `mixq search`")
        if version > PLAN_SCHEMA:
            raise ConfigError(f"{source} was written by a newer mixq (schema {version}); upgrade mixq")
        fix = "pass a plan.json written by `mixq search` (or fix the field)"
        parsed: PlanFileV1 | PlanFileV2
        tuned = None
        if version < 2:
            parsed = validate(PlanFileV1, data, source, fix=fix)
            costs = _costs_v1(parsed.costs)
            scheme, num_samples = parsed.provenance.scheme, parsed.provenance.num_samples
        else:
            parsed = validate(PlanFileV2, data, source, fix=fix)
            costs = {name: CostRecord(r.value, r.unit, r.ratio) for name, r in parsed.costs.items()}
            scheme, num_samples, tuned = parsed.scheme, parsed.num_samples, parsed.tuned
        p = parsed.provenance
        return cls(
            assignment=Assignment(dict(parsed.assignment)),
            costs=costs,
            predicted_sqnr_db=parsed.predicted_sqnr_db,
            quality=dict(parsed.quality),
            budgets=tuple(parsed.budgets),
            scheme=scheme,
            num_samples=num_samples,
            provenance=Provenance(p.mixq_version or __version__, p.model_fingerprint, p.seed, p.strategy, p.solver,
                                  p.hardware, tuple(p.restrictions), dict(p.solver_details)),
            tuned=tuned,
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        path = Path(path)
        if path.is_dir() and path.name != "plan.json":
            path = path / "plan.json"
        data = read_json(path, "plan file", ConfigError, fix="pass RUN/plan.json written by `mixq search`")
        return replace(cls.from_dict(data, f"plan file {path}"), folder=path.parent)


#: Version 1's flat cost keys: (value key, ratio key, unit) per cost model.
_V1_COSTS = {"bops": ("bops", "bops_ratio", "BOPs"), "size": ("weight_bytes", "size_ratio", "bytes"),
             "memory": ("peak_activation_bytes", "peak_activation_ratio", "bytes"),
             "latency": ("latency_ms", "latency_ratio", "ms")}


def _costs_v1(flat: Mapping[str, float]) -> dict[str, CostRecord]:
    return {name: CostRecord(flat[value], unit, flat[ratio])
            for name, (value, ratio, unit) in _V1_COSTS.items() if value in flat and ratio in flat}
