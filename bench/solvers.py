"""Phase-2 solvers compared on real models: greedy, ILP, cross-layer IQP, fallback, evolution.

For each model, every solver searches at BOPs ratios 0.5 / 0.375 / 0.3 on the same sensitivity data
(one run directory per model: phase 1 runs once, later searches resume from its measurements, and
the IQP's pair measurements are cached there too). Data roles never overlap:

- calibration: the first ``--num-samples`` samples (ranges and phase 1, as ``mixq search`` does);
- selection: ``--eval-samples`` samples after those (every other one), what closed-loop solvers and
  quality targets measure;
- test: all remaining samples (or ``--test-samples``), where the reported top-1 is measured.

Fallback has no cost budget to aim at: at each ratio its target is the agreement the greedy plan
measured on the selection samples, and the row reports the BOPs fallback needed to match it.

Writes ``solvers.json``, ``solvers.md`` and (with matplotlib) ``solvers.png`` to ``--out``.

Usage: python bench/solvers.py [--models lite0,resnet20] [--threads 2] [--out bench/out/solvers]
Smoke test: python bench/solvers.py --models resnet20 --subset 160 --num-samples 16 --eval-samples 32 \\
    --ratios 0.5,0.3 --max-evaluations 4 --pair-groups 3 --out /tmp/solvers-smoke
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "bench"))

from mixq import api  # noqa: E402
from mixq.config import SearchConfig  # noqa: E402
from mixq.data import load_data  # noqa: E402
from mixq.data.dataset import Dataset  # noqa: E402
from mixq.errors import MixqError  # noqa: E402

SOLVERS = ("greedy", "ilp", "iqp", "fallback", "evolution")
RATIOS = (0.5, 0.375, 0.3)
CANDIDATES = "w4a8,w8a8,w8a16"


class Indexed(Dataset):
    """A view of some samples of another data set (so calibration, selection and test never overlap)."""

    def __init__(self, base: Dataset, indices: np.ndarray) -> None:
        self.base, self.indices = base, np.asarray(indices, dtype=np.int64)
        self.labels = base.labels[self.indices] if base.labels is not None else None
        self.names = tuple(base.names[i] for i in self.indices)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.base.sample_shape

    def _load(self, start: int, stop: int) -> np.ndarray:
        return np.concatenate([self.base.load(int(i), int(i) + 1) for i in self.indices[start:stop]])

    def subset(self, n: int) -> Indexed:
        return Indexed(self.base, self.indices[: self._check_subset(n)])


def load_model(key: str) -> tuple[Any, Dataset]:
    if key == "lite0":
        from mixq.backends.torch.zoo.efficientnet_lite import efficientnet_lite0

        model, preprocess = efficientnet_lite0()
        return model, load_data(SHARED / "imagenet-samples", preprocess)
    if key == "resnet20":
        from models import resnet20

        model, preprocess = resnet20()
        return model.eval(), load_data(SHARED / "cifar10-test.npz", preprocess)
    raise SystemExit(f"unknown model {key!r}; use lite0 or resnet20")


def splits(data: Dataset, num_samples: int, eval_samples: int, test_samples: int | None) -> tuple[Dataset, Dataset]:
    rest = np.arange(num_samples, len(data))
    selection = rest[0::2][:eval_samples]
    test = np.setdiff1d(rest, selection)[:test_samples]
    if len(selection) == 0 or len(test) == 0:
        raise SystemExit(f"{len(data)} samples leave nothing for selection or test; lower --num-samples/--eval-samples")
    return Indexed(data, selection), Indexed(data, test)


def run_model(key: str, args: argparse.Namespace) -> dict[str, Any]:
    model, data = load_model(key)
    if args.subset:
        data = data.subset(args.subset)
    selection, test = splits(data, args.num_samples, args.eval_samples, args.test_samples)
    run = Path(args.out) / f"{key}-run"
    if args.fresh:
        shutil.rmtree(run, ignore_errors=True)
    settings = dict(candidates=CANDIDATES, num_samples=args.num_samples, threads=args.threads,
                    max_evaluations=args.max_evaluations, pair_groups=args.pair_groups, seed=args.seed)
    reference = api.evaluate(model, test, None, calibration=data, num_samples=args.num_samples, threads=args.threads)
    rows: list[dict[str, Any]] = [{"model": key, "solver": "float", "ratio": None, "top1": reference.get("top1")}]
    fronts: dict[str, list[tuple[float, float]]] = {}
    greedy_agreement: dict[float, float] = {}
    for ratio in args.ratios:
        for solver in args.solvers:
            if solver == "fallback":
                goal = greedy_agreement.get(ratio, args.fallback_agreement)
                budgets: tuple[str, ...] = (f"agreement>={goal:.4f}",)
            else:
                budgets = (f"bops<={ratio}",)
            config = SearchConfig(budgets=budgets, solver=solver, **settings)
            started = time.perf_counter()
            try:
                result = api.search(model, data, config, out=run, eval_data=selection)
            except MixqError as exc:
                rows.append({"model": key, "solver": solver, "ratio": ratio, "error": str(exc)})
                print(f"{key} {solver} {ratio}: {exc}", file=sys.stderr)
                continue
            seconds = time.perf_counter() - started
            plan = result.plan
            if solver == "greedy" and "agreement" in plan.quality:
                greedy_agreement[ratio] = float(plan.quality["agreement"])
            measured = api.evaluate(model, test, plan, calibration=data, num_samples=args.num_samples,
                                    threads=args.threads)
            details = dict(plan.provenance.get("solver_details", {}))
            timings = result.timings
            rows.append({
                "model": key, "solver": solver, "ratio": ratio, "budgets": list(budgets),
                "bops_ratio": plan.costs["bops"].ratio, "size_ratio": plan.costs["size"].ratio,
                "predicted_sqnr_db": plan.predicted_sqnr_db, "top1": measured.get("top1"),
                "agreement": measured.get("agreement"), "sqnr_db": measured.get("sqnr_db"),
                "real_evaluations": details.get("evaluations", 0), "pair_runs": details.get("pair_runs", 0),
                "solver_s": round(timings.get("phase2_s", 0.0) + timings.get("pairs_s", 0.0)
                                  + timings.get("evaluation_s", 0.0), 2),
                "search_s": round(seconds, 2), "phase1_s": round(timings.get("phase1_s", 0.0), 2),
                "interaction_ratio": details.get("interaction_ratio"),
                "differs_from_ilp": details.get("differs_from_ilp"),
                "counts": plan.assignment.counts(),
            })
            points = fronts.setdefault(solver, [])
            points += [(p.ratios["bops"], p.predicted_sqnr_db) for p in result.curve.points]
            print(f"{key} {solver} {ratio}: bops {plan.costs['bops'].ratio:.3f} top-1 {measured.get('top1')} "
                  f"in {seconds:.1f} s", file=sys.stderr)
    return {"rows": rows, "fronts": {s: sorted(set(p)) for s, p in fronts.items()},
            "split": {"calibration": args.num_samples, "selection": len(selection), "test": len(test)}}


def markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| model | solver | target | BOPs | size | predicted SQNR (dB) | top-1 (test) | agreement (test) | "
             "real evaluations | pair runs | solver time (s) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, result in results.items():
        for r in result["rows"]:
            if r["solver"] == "float":
                lines.append(f"| {key} | FP32 | - | - | - | - | {_pct(r.get('top1'))} | - | - | - | - |")
                continue
            target = ", ".join(r.get("budgets", [f"bops<={r['ratio']}"]))
            if "error" in r:
                lines.append(f"| {key} | {r['solver']} | {target} | {r['error']} |||||||")
                continue
            lines.append(
                f"| {key} | {r['solver']} | {target} | {r['bops_ratio']:.3f} | {100 * r['size_ratio']:.1f}% | "
                f"{r['predicted_sqnr_db']:.1f} | {_pct(r['top1'])} | {_pct(r['agreement'])} | "
                f"{r['real_evaluations']} | {r['pair_runs']} | {r['solver_s']} |")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def plot(results: dict[str, dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (the fronts are in solvers.json)", file=sys.stderr)
        return False
    colors = dict(zip(SOLVERS, plt.cm.tab10.colors))
    fig, axes = plt.subplots(len(results), 2, figsize=(11, 4 * len(results)), squeeze=False)
    for row, (key, result) in enumerate(results.items()):
        front_ax, top1_ax = axes[row]
        for solver in (s for s in SOLVERS if result["fronts"].get(s)):
            x, y = zip(*sorted(result["fronts"][solver]))
            style = "o" if solver in ("evolution", "fallback") else "-"
            label = {"iqp": "iqp (quadratic prediction)", "evolution": "evolution (evaluated)",
                     "fallback": "fallback (prefixes)"}.get(solver, solver)
            front_ax.plot(x, y, style, label=label, markersize=3, color=colors[solver])
        front_ax.set(title=f"{key}: predicted fronts", xlabel="BOPs ratio (to all-W8A16)", ylabel="predicted SQNR (dB)")
        for solver in SOLVERS:
            chosen = [(r["bops_ratio"], 100 * r["top1"]) for r in result["rows"]
                      if r["solver"] == solver and r.get("top1") is not None]
            if chosen:
                x, y = zip(*sorted(chosen))
                top1_ax.plot(x, y, "o-", label=solver, color=colors[solver], alpha=0.8)
        float_top1 = next((r["top1"] for r in result["rows"] if r["solver"] == "float"), None)
        if float_top1 is not None:
            top1_ax.axhline(100 * float_top1, color="gray", linestyle=":", label="FP32")
        top1_ax.set(title=f"{key}: chosen plans", xlabel="BOPs ratio", ylabel="top-1 on test split (%)")
        for ax in (front_ax, top1_ax):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lite0,resnet20")
    parser.add_argument("--solvers", default=",".join(SOLVERS))
    parser.add_argument("--ratios", default=",".join(str(r) for r in RATIOS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--num-samples", type=int, default=64, help="calibration samples (phase 1, ranges)")
    parser.add_argument("--eval-samples", type=int, default=256, help="selection samples for real evaluations")
    parser.add_argument("--test-samples", type=int, default=None, help="cap on the test split (default: the rest)")
    parser.add_argument("--subset", type=int, default=None, help="use only the first N samples (smoke tests)")
    parser.add_argument("--max-evaluations", type=int, default=30)
    parser.add_argument("--pair-groups", type=int, default=8)
    parser.add_argument("--fallback-agreement", type=float, default=0.99,
                        help="fallback's target when greedy is not among the solvers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh", action="store_true", help="delete the run directories first (re-run phase 1)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "solvers"))
    args = parser.parse_args()
    args.solvers = [s for s in args.solvers.split(",") if s]
    args.ratios = [float(r) for r in args.ratios.split(",") if r]
    if "fallback" in args.solvers and "greedy" in args.solvers:  # fallback aims at greedy's measured agreement
        args.solvers = ["greedy", *[s for s in args.solvers if s != "greedy"]]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    for key in args.models.split(","):
        results[key] = run_model(key, args)
        (out / "solvers.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    table = markdown(results)
    (out / "solvers.md").write_text(table + "\n")
    print(table)
    if plot(results, out / "solvers.png"):
        print(f"plot: {out / 'solvers.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
