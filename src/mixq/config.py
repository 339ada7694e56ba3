"""Typed settings of a search; parsed from strings once, at the CLI edge."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from mixq.backends import TUNERS
from mixq.core.budget import Budget, CostBudget, MemoryBudget, QualityTarget, parse_budget
from mixq.core.precision import Precision, QuantScheme, parse_candidates
from mixq.core.restrictions import Restriction, parse_restrictions
from mixq.cost import ADDITIVE, COST_MODELS
from mixq.cost.latency import LATENCY_MODELS
from mixq.runtimes import RUNTIMES
from mixq.schema.numbers import positive_finite, seed
from mixq.errors import ConfigError
from mixq.solvers import SOLVERS, solver_config

SCHEMA_VERSION = 1
DEFAULT_CANDIDATES = "w4a8,w8a8,w8a16"


@dataclass(frozen=True)
class SearchConfig:
    """Everything that decides a search's result.

    Attributes:
        candidates: precisions every group may take (the target's kernels).
        budgets: cost limits and/or one quality target; all must hold.
        num_samples: calibration samples (the first N of the data), for ranges and phase 1.
        eval_samples: samples used to measure quality targets (None = all the data, or the solver's
            default: 256 for ``evolution``; see :meth:`evaluation_samples`).
        seed: seeds every random choice (sampling for range setting).
        scheme: how tensors are quantized at a bit-width.
        solver: phase-2 allocation solver, a name of ``mixq.solvers.SOLVERS`` (``greedy`` is Pandey et al.'s).
        cost: the cost phase 2 trades sensitivity against, an additive entry of ``mixq.cost.COST_MODELS``
            (``bops``, ``size``, or ``latency`` with a hardware description that has per-kernel costs or an
            ONNX model to time).
        cache_mb: memory for phase 1's cached float activations; larger = fewer chunks.
        threads: torch/BLAS threads (None = the library default).
        restrictions: per-group rules, e.g. ``"first,last>=w8a8"`` (applied after phase 1, so they
            never invalidate a run's measurements).
        hardware: a target of ``mixq.hardware.HARDWARE`` (``generic``, ``onnxruntime-cpu``, ...) or a
            YAML/TOML description; narrows candidates to its kernels.
        strategy: a name of ``mixq.strategies.STRATEGIES``: ``two-phase`` (Pandey et al.: phase-1
            sensitivity list, then ``solver``) or ``tuneqn`` (layer errors, decremental exclusion). Checked
            where strategies are created (``search``; the CLI's choices): strategies import this module.
        max_evaluations: real evaluations ``evolution`` may spend (default 30), or the number of
            decremental configurations ``tuneqn`` evaluates (default: all).
        pair_groups: how many of the most sensitive groups ``iqp`` measures in pairs.
        time_limit_s: wall-time limit of each MILP solve (``ilp``, ``iqp``).
        nondeterministic: what to do with a float model whose output changes from run to run on the same
            samples (checked before phase 1): ``refuse`` it (default), or ``average`` every measurement over
            ``average_runs`` runs (reported in the plan's quality). See :mod:`mixq.determinism`.
        average_runs: runs averaged per measurement with ``nondeterministic="average"``.
        runtime: the ``mixq.runtimes.RUNTIMES`` entry latency is measured in and judged files run in
            (``onnxruntime``, ``openvino``).
        latency_model: how ``--cost latency`` is measured on a model a runtime can run: ``deployed`` (the
            plan's exported file as the runtime runs it: kernels plus what each edge between groups pays,
            profiled on probe files; :mod:`mixq.cost.deployed`) or ``kernels`` (each group's kernel alone,
            summed: no transitions).
        verify: how many of the best plans are exported and judged as files in ``runtime`` after phase 2
            (:mod:`mixq.verify`); None: 3 when the search trades measured latency, else 0 (off).
        solver_options: settings of one solver's config dataclass, by solver then field
            (``{"ilp": {"curve_points": 50}}``); a flat mapping (``{"curve_points": 50}``) is the chosen
            ``solver``'s. They override the shared fields above. See :mod:`mixq.options`.
        tuning: a post-search tuning step of the chosen plan, a name of ``mixq.backends.TUNERS`` (``kd``:
            label-free distillation); None: the calibrated quantizers are kept. Its learned quantizers are
            stored as ``RUN/tuned.npz`` and named by the plan's ``tuned`` field; the plan's quality is measured
            with them.
        tuning_options: settings of the tuning step's dataclass (``{"steps": 200, "minutes": 5}`` for ``kd``).
    """

    candidates: tuple[Precision, ...] = field(default_factory=lambda: parse_candidates(DEFAULT_CANDIDATES))
    budgets: tuple[Budget, ...] = ()
    num_samples: int = 64
    eval_samples: int | None = None
    seed: int = 0
    scheme: QuantScheme = field(default_factory=QuantScheme)
    solver: str = "greedy"
    cost: str = "bops"
    cache_mb: float = 4096.0
    threads: int | None = None
    restrictions: tuple[Restriction, ...] = ()
    hardware: str | None = None
    max_evaluations: int | None = None
    strategy: str = "two-phase"
    pair_groups: int = 8
    time_limit_s: float = 60.0
    nondeterministic: str = "refuse"
    average_runs: int = 8
    runtime: str = "onnxruntime"
    latency_model: str = "deployed"
    verify: int | None = None
    solver_options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    tuning: str | None = None
    tuning_options: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "candidates", parse_candidates(self.candidates))
        restrictions = (self.restrictions,) if isinstance(self.restrictions, str) else self.restrictions
        object.__setattr__(self, "restrictions", parse_restrictions(restrictions))
        budgets = tuple(parse_budget(b) if isinstance(b, str) else b for b in self.budgets)
        object.__setattr__(self, "budgets", budgets)
        if sum(isinstance(b, QualityTarget) for b in budgets) > 1:
            raise ConfigError("give at most one quality target (sqnr>=, agreement>= or drop<=) per search")
        if self.num_samples < 1:
            raise ConfigError(f"--num-samples must be at least 1, got {self.num_samples}")
        if self.eval_samples is not None and self.eval_samples < 1:
            raise ConfigError(f"--eval-samples must be at least 1, got {self.eval_samples}")
        additive = COST_MODELS.names(tag=ADDITIVE)
        if self.cost not in additive:
            raise ConfigError(f"--cost must be {', '.join(additive[:-1])} or {additive[-1]}, got {self.cost!r}")
        SOLVERS.get(self.solver)  # unknown: did-you-mean
        object.__setattr__(self, "solver_options", by_solver(self.solver, self.solver_options))
        if self.max_evaluations is not None and self.max_evaluations < 1:
            raise ConfigError(f"--max-evaluations must be at least 1, got {self.max_evaluations}")
        if self.pair_groups < 2:
            raise ConfigError(f"--pair-groups must be at least 2, got {self.pair_groups}")
        if not self.time_limit_s > 0:
            raise ConfigError(f"--time-limit must be positive, got {self.time_limit_s}")
        positive_finite(self.time_limit_s, "--time-limit", "60")
        positive_finite(self.cache_mb, "--cache-mb", "4096")
        seed(self.seed)
        if self.threads is not None and self.threads < 1:
            raise ConfigError("--threads must be at least 1")
        if self.nondeterministic not in ("refuse", "average"):
            raise ConfigError(f"--nondeterministic must be refuse or average, got {self.nondeterministic!r}")
        RUNTIMES.get(self.runtime)  # unknown: did-you-mean
        if self.latency_model not in LATENCY_MODELS:
            raise ConfigError(f"--latency-model must be {' or '.join(LATENCY_MODELS)}, got {self.latency_model!r}")
        if self.verify is not None and self.verify < 0:
            raise ConfigError(f"--verify must be 0 (off) or a number of plans, got {self.verify}")
        if self.average_runs < 2:
            raise ConfigError(f"--average-runs must be at least 2, got {self.average_runs}")
        typed = {}
        for name, options in self.solver_options.items():  # unknown keys and bad values fail now, not mid-search
            built = self.solver_config(name)
            typed[name] = {key: _dotted(built, key) for key in options}
        object.__setattr__(self, "solver_options", typed)
        if self.tuning is None and self.tuning_options:
            raise ConfigError(f"tuning options ({', '.join(sorted(self.tuning_options))}) need a tuning step: "
                              f"give --tune NAME (one of {', '.join(TUNERS.names())}) or --finetune-kd STEPS")
        if self.tuning is not None:  # unknown name or bad setting: refused now, not after the search
            built = self.tuning_settings()
            object.__setattr__(self, "tuning_options", {key: _dotted(built, key) for key in self.tuning_options})

    def tuning_settings(self) -> Any:
        """The tuning step's settings dataclass (None without a tuning step, or if it takes none)."""
        if self.tuning is None:
            return None
        return TUNERS.settings(self.tuning, self, self.tuning_options)

    def judged_plans(self, measured_latency: bool) -> int:
        """How many plans the judge exports: ``verify``, or 3 when latency is measured (the file decides)."""
        if self.verify is not None:
            return self.verify
        return 3 if measured_latency and self.cost == "latency" else 0

    @property
    def cost_budgets(self) -> tuple[CostBudget, ...]:
        return tuple(b for b in self.budgets if isinstance(b, CostBudget))

    @property
    def memory_budgets(self) -> tuple[MemoryBudget, ...]:
        return tuple(b for b in self.budgets if isinstance(b, MemoryBudget))

    @property
    def quality_target(self) -> QualityTarget | None:
        return next((b for b in self.budgets if isinstance(b, QualityTarget)), None)

    def evaluation_samples(self) -> int | None:
        """Samples a quality measurement uses: ``eval_samples``, else the solver's ``default_eval_samples``
        (evolution's 256: a closed loop over a whole large folder would take hours), else all (None)."""
        if self.eval_samples is not None or self.strategy != "two-phase":
            return self.eval_samples
        default = getattr(SOLVERS.get(self.solver).load(), "default_eval_samples", None)
        return int(default) if default is not None else None

    def solver_config(self, name: str | None = None) -> Any:
        """The settings dataclass of solver ``name`` (default: ``solver``), None if it takes none."""
        name = name or self.solver
        return solver_config(name, self, self.solver_options.get(name, {}))

    def solver_settings(self) -> Any:
        """The chosen solver's settings dataclass: ``get_solver(config.solver, config.solver_settings())``."""
        return self.solver_config()

    def to_dict(self) -> dict[str, Any]:
        scheme = self.scheme.to_dict()
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out.update(solver_options={k: dict(v) for k, v in self.solver_options.items()},
                   tuning_options=dict(self.tuning_options),
                   candidates=[str(p) for p in self.candidates], budgets=[str(b) for b in self.budgets],
                   restrictions=[str(r) for r in self.restrictions], scheme=scheme, schema_version=SCHEMA_VERSION)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        data = dict(data)
        data.pop("schema_version", None)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown settings {unknown}; known: {sorted(known)}")
        if "scheme" in data and isinstance(data["scheme"], dict):
            data["scheme"] = QuantScheme.from_dict(data["scheme"])
        if "candidates" in data:
            data["candidates"] = parse_candidates(data["candidates"])
        if "budgets" in data:
            data["budgets"] = tuple(data["budgets"])
        if "restrictions" in data:
            data["restrictions"] = tuple(data["restrictions"])
        return cls(**data)

    def measurement_key(self) -> dict[str, Any]:
        """The settings stored measurements depend on; changing any of them invalidates a run."""
        d = self.to_dict()
        key = {k: d[k] for k in ("num_samples", "seed", "scheme")}
        if self.nondeterministic == "average":  # averaged measurements differ; a default run's key is unchanged
            key["average_runs"] = self.average_runs
        return key


def by_solver(chosen: str, options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Solver options keyed by solver: ``{"curve_points": 50}`` -> ``{chosen: {"curve_points": 50}}``.

    A key that names a solver holds that solver's settings (a mapping, or ``"ilp.curve_points"``
    flattened); any other key is a setting of the ``chosen`` solver.
    """
    out: dict[str, dict[str, Any]] = {}
    for key, value in options.items():
        head, dot, rest = str(key).partition(".")
        if isinstance(value, Mapping):
            SOLVERS.get(str(key))
            out.setdefault(str(key), {}).update(value)
        elif dot and head in SOLVERS:
            out.setdefault(head, {})[rest] = value
        else:
            out.setdefault(chosen, {})[str(key)] = value
    return out


def _dotted(config: Any, key: str) -> Any:
    """The typed value a (possibly dotted) setting took in a built settings dataclass."""
    for part in key.split("."):
        config = getattr(config, part)
    return config
