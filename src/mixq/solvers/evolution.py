"""Closed-loop evolutionary search: real evaluations of whole configurations, within a budget of them.

The additive model behind greedy and ILP is a prediction; the evolution trusts only measurements.
It starts from the greedy and ILP answers (so it can only improve on them, measured), then breeds
children from the best measured configurations: crossover of two parents, one move guided by the
sensitivity table (a sampled, rank-weighted choice, not the greedy one), a repair back under every
cost budget, and never a configuration measured before. Deterministic for a seed (numpy Generator)
and a deterministic ``evaluate``.

Without a quality target it maximizes measured SQNR under the cost budgets; with one it minimizes
the primary cost among configurations that meet it (and the budgets), seeding with the ILP curve's
binary search.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from mixq.core.budget import CostBudget, CostUnit, QualityTarget
from mixq.core.quality import Quality
from mixq.errors import ConfigError, InfeasibleBudgetError
from mixq.solvers.base import AllocationProblem, CurvePoint, check_max_float_regions, within
from mixq.solvers.greedy import GreedyConfig, GreedySolver
from mixq.solvers.ilp import IlpConfig, IlpSolver
from mixq.core.assignment import Assignment
from mixq.solvers.loop import EvaluateFn, Evaluations, Loop, LoopResult, ProgressFn, curve_of, key_of
from mixq.solvers.select import select_by_quality
from mixq.solvers.settings import SearchSettings

logger = logging.getLogger(__name__)

#: Samples of DATA each evaluation runs on when ``--eval-samples`` is not given: every image of a large
#: folder (e.g. 50 000 for ImageNet) times 30 evaluations would take hours; 256 keeps a search to minutes.
DEFAULT_EVAL_SAMPLES = 256
#: The stage name evaluations are reported under (``progress(EVALUATIONS_STAGE, done, total)``).
EVALUATIONS_STAGE = "evolution: evaluations"


@dataclass(frozen=True)
class EvolutionConfig:
    """Settings of the evolutionary search.

    Attributes:
        max_evaluations: real evaluations allowed, seeds included (a target's seeding binary search
            may exceed a very small budget: it needs about log2(curve) + 1).
        population: how many of the best measured configurations breed.
        seed: seeds the numpy Generator.
        crossover_rate: probability that a child mixes two parents.
        explore_rate: probability of one extra uniformly random move.
        max_tries: attempts at a new, feasible child before the search stops early.
        max_float_regions: children with more float (fp16/fp32) regions than this, connected through the
            problem's edges, are rejected (and the greedy and ILP seeds honour it); None: no bound. Setting
            ``ilp.max_float_regions`` instead means the same; two different values are refused.
        ilp: settings of the ILP used for seeding.
    """

    max_evaluations: int = 30
    population: int = 8
    seed: int = 0
    crossover_rate: float = 0.5
    explore_rate: float = 0.3
    max_tries: int = 64
    max_float_regions: int | None = None
    ilp: IlpConfig = field(default_factory=IlpConfig)

    def __post_init__(self) -> None:
        check_max_float_regions(self.max_float_regions)
        inner = self.ilp.max_float_regions
        if inner is not None and self.max_float_regions is not None and inner != self.max_float_regions:
            raise ConfigError(f"max_float_regions={self.max_float_regions} and ilp.max_float_regions={inner} "
                              "disagree; set one of them")
        if self.max_evaluations < 1:
            raise ConfigError(f"max_evaluations must be at least 1, got {self.max_evaluations}")
        if self.population < 1:
            raise ConfigError(f"population must be at least 1, got {self.population}")

    @property
    def float_region_bound(self) -> int | None:
        """The bound on float regions, whichever of the two settings gave it."""
        return self.max_float_regions if self.max_float_regions is not None else self.ilp.max_float_regions

    @classmethod
    def from_search(cls, settings: SearchSettings) -> EvolutionConfig:
        """``--max-evaluations`` (default 30), ``--seed`` and the seeding ILP's ``--time-limit``."""
        evaluations = settings.max_evaluations if settings.max_evaluations is not None else cls.max_evaluations
        return cls(max_evaluations=evaluations, seed=settings.seed, ilp=IlpConfig.from_search(settings))


@dataclass(frozen=True)
class _Member:
    choice: tuple[int, ...]
    point: CurvePoint
    quality: Quality
    score: tuple[float, ...]
    origin: str


class EvolutionSolver:
    """Seeded, budgeted, deterministic evolution over measured configurations."""

    name = "evolution"
    #: Evaluation samples used when the user gives none (read by ``SearchConfig.evaluation_samples``).
    default_eval_samples = DEFAULT_EVAL_SAMPLES

    def __init__(self, config: EvolutionConfig | None = None) -> None:
        self.config = config or EvolutionConfig()

    def search(
        self, problem: AllocationProblem, budgets: Sequence[CostBudget], target: QualityTarget | None, loop: Loop
    ) -> LoopResult:
        """The best measured configuration under ``budgets`` (and ``target``), within the evaluation budget.

        Raises:
            InfeasibleBudgetError: the budgets cannot be met, or no measured configuration meets the target.
        """
        if target is None and not budgets:
            raise ConfigError("--solver evolution needs a cost budget or a quality target to search under")
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        loop = replace(loop, evaluate=reporting(loop.evaluate, cfg.max_evaluations, loop.progress))
        evaluations = Evaluations(loop, target)
        limits: dict[str, float] = {}
        for budget in budgets:
            limits[budget.cost] = min(limits.get(budget.cost, float("inf")), problem.limit(budget))
        members: dict[tuple[tuple[str, str], ...], _Member] = {}

        def add(choice: Sequence[int], origin: str) -> _Member:
            point = problem.point_from_choice(choice)
            key = key_of(point.assignment)
            if key not in members:
                quality = evaluations(point.assignment)
                members[key] = _Member(tuple(choice), point, quality, self._score(evaluations, point, problem, quality),
                                       origin)
            return members[key]

        for origin, point in self._seeds(problem, budgets, target, evaluations, loop):
            add(self._choice(problem, point), origin)
        for key, (assignment, _) in list(evaluations.done.items()):  # the seeding binary search's points too
            if key not in members:
                add(self._choice(problem, problem.point(assignment)), "seed search")
        stopped_early = False
        while evaluations.count < cfg.max_evaluations:
            ranked = sorted(members.values(), key=lambda m: m.score, reverse=True)[: cfg.population]
            child = self._child(problem, ranked, limits, evaluations, target, rng)
            if child is None:
                stopped_early = True
                break
            add(child, "offspring")
        best = max(members.values(), key=lambda m: m.score)
        if target is not None and not evaluations.met(best.quality):
            value = target.value(best.quality, loop.float_quality)
            raise InfeasibleBudgetError(
                f"{target} was not met by any of the {evaluations.count} configurations measured (best {value:.4g}); "
                "lower the target, relax the cost budgets or raise --max-evaluations",
                reachable=value,
            )
        seeds = {m.origin: evaluations.value(m.quality) for m in members.values() if m.origin in ("greedy", "ilp")}
        curve = curve_of(problem, [m.point for m in members.values()])
        details = {
            "evaluations": evaluations.count,
            "max_evaluations": cfg.max_evaluations,
            "seed": cfg.seed,
            "best_from": best.origin,
            "seed_values": seeds,
            "best_value": evaluations.value(best.quality),
            "stopped_early": stopped_early,
        }
        return LoopResult(best.point, curve, best.quality, evaluations.records(curve), details)

    # -- seeding --------------------------------------------------------------------------------
    def _seeds(
        self, problem: AllocationProblem, budgets: Sequence[CostBudget], target: QualityTarget | None,
        evaluations: Evaluations, loop: Loop,
    ) -> list[tuple[str, CurvePoint]]:
        bound = self.config.float_region_bound
        ilp = IlpSolver(replace(self.config.ilp, max_float_regions=bound))
        greedy = GreedySolver(GreedyConfig(max_float_regions=bound))
        if target is None:
            seeds = [("ilp", ilp.solve(problem, budgets))]
            same_cost = list(budgets)
        else:
            selection = select_by_quality(ilp.curve(problem, budgets), target, evaluations, loop.float_quality)
            primary = problem.primary
            same_cost = [*budgets, CostBudget(primary, selection.point.costs[primary], CostUnit.ABSOLUTE)]
            seeds = [("ilp", selection.point)]
        try:
            seeds.append(("greedy", greedy.solve(problem, same_cost)))
        except InfeasibleBudgetError:
            # with edge costs (or several budgets) the greedy walk need not pass where the ILP reaches
            logger.info("evolution: the greedy walk meets no point of those budgets; seeding with the ILP alone")
        return seeds

    @staticmethod
    def _choice(problem: AllocationProblem, point: CurvePoint) -> list[int]:
        return [option.precisions.index(point.assignment[option.group]) for option in problem.options]

    @staticmethod
    def _score(
        evaluations: Evaluations, point: CurvePoint, problem: AllocationProblem, quality: Quality
    ) -> tuple[float, ...]:
        """Higher is better: measured quality first without a target; with one, meeting it, then cost."""
        value, cost = evaluations.value(quality), point.costs[problem.primary]
        if evaluations.target is None:
            return (value, -cost)
        return (1.0, -cost, value) if evaluations.met(quality) else (0.0, value, -cost)

    # -- breeding -------------------------------------------------------------------------------
    def _child(
        self, problem: AllocationProblem, ranked: list[_Member], limits: dict[str, float],
        evaluations: Evaluations, target: QualityTarget | None, rng: np.random.Generator,
    ) -> list[int] | None:
        cfg = self.config
        for _ in range(cfg.max_tries):
            parent = self._tournament(ranked, rng)
            choice = list(parent.choice)
            if len(ranked) > 1 and rng.random() < cfg.crossover_rate:
                other = self._tournament(ranked, rng).choice
                mask = rng.random(len(choice)) < 0.5
                choice = [a if keep else b for a, b, keep in zip(choice, other, mask)]
            cheaper = target is not None and evaluations.met(parent.quality)
            moved = self._guided_move(problem, choice, rng, cheaper=cheaper)
            if rng.random() < cfg.explore_rate or moved is None:
                position = int(rng.integers(len(choice)))
                size = len(problem.options[position].precisions)
                if size > 1:
                    choice[position] = int((choice[position] + rng.integers(1, size)) % size)
                    moved = position
            if not self._repair(problem, choice, limits, frozen=moved):
                continue
            bound = cfg.float_region_bound
            if bound is not None and problem.float_regions(choice) > bound:
                continue  # rejected rather than repaired: lowering float groups could break the budgets' repair
            if problem.point_from_choice(choice).assignment not in evaluations:
                return choice
        return None

    @staticmethod
    def _tournament(ranked: list[_Member], rng: np.random.Generator) -> _Member:
        a, b = rng.integers(len(ranked), size=2)
        return ranked[min(int(a), int(b))]  # ranked best first

    @staticmethod
    def _guided_move(
        problem: AllocationProblem, choice: list[int], rng: np.random.Generator, cheaper: bool
    ) -> int | None:
        """One move sampled with weight 1/rank among the table's best: a cheaper candidate adding the
        least noise per cost saved (``cheaper``), or a dearer one removing the most noise per cost."""
        primary = problem.primary
        moves = []
        for position, option in enumerate(problem.options):
            current = choice[position]
            for candidate in range(len(option.precisions)):
                delta_cost = _delta(problem, primary, choice, position, candidate)
                delta_noise = option.noise[candidate] - option.noise[current]
                if cheaper and delta_cost < 0:
                    moves.append((delta_noise / -delta_cost, position, candidate))
                elif not cheaper and delta_cost > 0 and delta_noise < 0:
                    moves.append((delta_noise / delta_cost, position, candidate))  # most negative first
        if not moves:
            return None
        moves.sort()
        weights = 1.0 / np.arange(1, len(moves) + 1)
        _, position, candidate = moves[int(rng.choice(len(moves), p=weights / weights.sum()))]
        choice[position] = candidate
        return position

    @staticmethod
    def _repair(problem: AllocationProblem, choice: list[int], limits: dict[str, float], frozen: int | None) -> bool:
        """Lower groups (least noise per normalized saving on the violated costs) until every budget holds."""
        options = problem.options
        for _ in range(sum(len(o.precisions) for o in options) + 1):
            costs = problem.point_from_choice(choice).costs
            violated = [name for name, limit in limits.items() if not within(costs[name], limit)]
            if not violated:
                return True
            best: tuple[float, int, int] | None = None
            for allow_frozen in (False, True):
                for position, option in enumerate(options):
                    if position == frozen and not allow_frozen:
                        continue
                    current = choice[position]
                    for candidate in range(len(option.precisions)):
                        saving = sum(-_delta(problem, n, choice, position, candidate) / max(limits[n], 1e-30)
                                     for n in violated)
                        if saving <= 0:
                            continue
                        harm = max(option.noise[candidate] - option.noise[current], 0.0) / saving
                        if best is None or (harm, position, candidate) < best:
                            best = (harm, position, candidate)
                if best is not None:
                    break
            if best is None:
                return False
            choice[best[1]] = best[2]
        return False


def _delta(problem: AllocationProblem, name: str, choice: Sequence[int], position: int, candidate: int) -> float:
    """How cost ``name`` changes when one group moves: its own cost, plus its edges' when costs are pairwise."""
    if problem.edges:
        return problem.move_delta(name, choice, {position: candidate})
    costs = problem.options[position].costs[name]
    return costs[candidate] - costs[choice[position]]


def reporting(evaluate: EvaluateFn, planned: int, progress: ProgressFn | None) -> EvaluateFn:
    """``evaluate``, reporting each evaluation to ``progress`` and logging, after the first, how long the
    search will take (the seeding binary search may add a few evaluations beyond ``planned``)."""
    done = 0
    started = time.perf_counter()

    def run(assignment: Assignment) -> Quality:
        nonlocal done
        if done == 0 and progress is not None:
            progress(EVALUATIONS_STAGE, 0, planned)
        quality = evaluate(assignment)
        done += 1
        total = max(planned, done + 1) if done < planned else done
        if progress is not None:
            progress(EVALUATIONS_STAGE, done, total)
        each = (time.perf_counter() - started) / done
        if done == 1 or done % 5 == 0:
            left = max(planned - done, 0) * each
            logger.info("evolution: evaluation %d of up to %d, %.1f s each, about %s left", done, planned, each,
                        _duration(left))
        return quality

    return run


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
