"""Issue #13's figures: Pandey et al.'s Table 4 and Figure 1(d) (AdaRound inside mixed precision), measured here.

Per model (EfficientNet-Lite0 and ResNet20 as ONNX files, see ``deploy_latency.py`` for how they and their
data are made: calibration = the first 64 dev images, scores on test images no search or calibration saw):

Modes (:data:`MODES`): nearest rounding (PTQ), ``--bias-correction`` (BC), ``--rounding adaround`` and both.

- ``cost``: AdaRound for every layer at 4 and 6 bits from a cold cache, then the same again (the cache reused);
- ``uniform``: float, uniform W8A8/W6A8/W4A8 in the modes of :data:`UNIFORM_MODES` (``mixq eval --uniform P``);
- ``table4``: candidates W4A8/W6A8/W8A8/W8A16 (the paper's Table 4 search space), mixed precision at BOPs
  0.375, 0.3 and 0.25 in the modes of :data:`TABLE4_MODES`, in both phases (``mixq search``);
- ``fig1d`` (Lite0): the expanded candidates W4A4, W4A6, W6A4, W6A6, W8A6, W6A8, W8A8, W8A16 (Figure 1(d)) at
  the same budgets: PTQ MP, AdaRound+BC applied after the PTQ search (``mixq eval --plan P --rounding adaround
  --bias-correction``) and AdaRound+BC in both phases;
- ``deploy``: the AdaRound+BC MP plans exported (``mixq export``) and their files scored in ONNX Runtime
  (``mixq eval FILE --reference MODEL``) beside the simulation's score;
- ``torch`` (ResNet20 as a torch model, ``bench/models.py:resnet20_raw``, same splits): the tuning steps
  with the expanded candidates at BOPs 0.25: PTQ MP, AdaRound+BC in both phases, then BRECQ (``--reconstruct
  brecq``), BRECQ with QDrop, label-free distillation (``--finetune-kd``), and data-free calibration
  (``--data synthetic``, ZeroQ) against real calibration, scored on the first 2000 real test images.

Every command goes through the CLI as a user runs it, under ``/usr/bin/time`` (wall seconds, peak resident
memory). AdaRound results are cached in ``OUT/table4-cache`` (``MIXQ_CACHE_DIR``), emptied at the start
unless ``--keep-cache``.

Usage: python bench/table4.py [--threads 2] [--models lite0,resnet20]
       [--steps cost,uniform,table4,fig1d,deploy,torch] [--out bench/out] [--keep-cache]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import deploy_latency  # noqa: E402  (the ONNX files and their dev/test splits)

TABLE4 = "w4a8,w6a8,w8a8,w8a16"
EXPANDED = "w4a4,w4a6,w6a4,w6a6,w8a6,w6a8,w8a8,w8a16"
BUDGETS = (0.375, 0.3, 0.25)
UNIFORM = ("w8a8", "w6a8", "w4a8")
CALIBRATION = 64


def run(args: list[str], threads: int, cache: Path) -> tuple[dict, float, float]:
    """One ``mixq`` command: its JSON output (last line), wall seconds and peak memory (MB)."""
    with tempfile.NamedTemporaryFile(suffix=".time") as timing:
        cmd = ["/usr/bin/time", "-f", "%e %M", "-o", timing.name, sys.executable, "-m", "mixq.cli.main", *args,
               "--threads", str(threads), "--quiet"]
        env = {**os.environ, "MIXQ_CACHE_DIR": str(cache)}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
        seconds, kb = Path(timing.name).read_text().split()[-2:]
    lines = done.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        result = {}
    return result, float(seconds), float(kb) / 1024


class Model:
    """One model's files and the commands run on them."""

    def __init__(self, key: str, out: Path, threads: int, cache: Path) -> None:
        self.key, self.out, self.threads, self.cache = key, out, threads, cache
        self.onnx, self.dev, self.test = getattr(deploy_latency, key)(out)
        self.rows: dict[str, dict] = {}

    def mixq(self, *args: str) -> tuple[dict, float, float]:
        return run(list(args), self.threads, self.cache)

    def eval(self, *args: str) -> tuple[dict, float, float]:
        return self.mixq("eval", str(self.onnx), "--data", str(self.test), "--calib-data", str(self.dev),
                         "--num-samples", str(CALIBRATION), "--json", *args)

    def record(self, name: str, result: dict, seconds: float, peak_mb: float, **extra: object) -> None:
        self.rows[name] = {**result, "seconds": round(seconds, 1), "peak_mb": round(peak_mb), **extra}
        top1, bops = result.get("top1"), result.get("bops_ratio")  # a file run as given has no BOPs ratio
        print(f"{self.key:9s} {name:42s} top1={top1 if top1 is None else round(top1, 4)} "
              f"bops={bops if bops is None else round(bops, 3)} {seconds:7.1f}s {peak_mb:6.0f}MB", flush=True)

    def search(self, name: str, candidates: str, budget: float, flags: list[str]) -> Path:
        """A search into its own run directory (phase 1 is resumed by the next budget of the same space)."""
        run_dir = self.out / f"table4-{self.key}-{name.split('@')[0].replace(' ', '_').replace('+', '_')}-run"
        plan = self.out / f"table4-{self.key}-{name.replace(' ', '_').replace('+', '_')}.json"
        result, seconds, peak = self.mixq("search", str(self.onnx), "--data", str(self.dev), "--num-samples",
                                          str(CALIBRATION), "--eval-data", str(self.test), "--candidates", candidates,
                                          "--budget", f"bops<={budget}", *flags, "--out", str(run_dir), "--no-report",
                                          "--json")
        shutil.copy(run_dir / "plan.json", plan)
        stored = json.loads(plan.read_text())
        quality = stored.get("quality", {})
        timings = json.loads((run_dir / "timings.json").read_text()) if (run_dir / "timings.json").exists() else {}
        self.record(name, {"top1": quality.get("top1"), "agreement": quality.get("agreement"),
                           "bops_ratio": stored["costs"]["bops"]["ratio"]}, seconds, peak,
                    counts=stored.get("precision_counts"), plan=str(plan), timings=timings)
        return plan


#: How weights are rounded and corrected, as CLI flags.
MODES = {"nearest": ["--rounding", "nearest"], "nearest+BC": ["--rounding", "nearest", "--bias-correction"],
         "AdaRound": ["--rounding", "adaround"], "AdaRound+BC": ["--rounding", "adaround", "--bias-correction"]}
UNIFORM_MODES = {"w8a8": ("nearest", "AdaRound+BC"), "w6a8": tuple(MODES), "w4a8": tuple(MODES)}
#: The MP modes of Table 4 per model (PTQ, AdaRound in both phases, and with bias correction).
TABLE4_MODES = {"lite0": ("nearest", "AdaRound", "AdaRound+BC"), "resnet20": ("nearest", "AdaRound+BC")}


def step_cost(m: Model) -> None:
    """AdaRound for every layer at 4 and 6 bits, cold then warm (a second run reuses the cache)."""
    for attempt in ("cold", "warm"):
        for precision in ("w4a8", "w6a8"):
            result, seconds, peak = m.eval("--uniform", precision, "--rounding", "adaround")
            m.record(f"AdaRound {precision[1]}-bit, {attempt} cache", result, seconds, peak)


def step_uniform(m: Model) -> None:
    result, seconds, peak = m.eval("--float")
    m.record("FP32", result, seconds, peak)
    for precision, modes in UNIFORM_MODES.items():
        for mode in modes:
            result, seconds, peak = m.eval("--uniform", precision, *MODES[mode])
            m.record(f"{precision.upper()} {mode}", result, seconds, peak)


def step_table4(m: Model) -> None:
    for mode in TABLE4_MODES[m.key]:
        for budget in BUDGETS:
            m.search(f"t4 {mode}@{budget}", TABLE4, budget, MODES[mode])


def step_fig1d(m: Model) -> None:
    if m.key != "lite0":
        return
    for budget in BUDGETS:
        plan = m.search(f"f1d nearest@{budget}", EXPANDED, budget, MODES["nearest"])
        result, seconds, peak = m.eval("--plan", str(plan), *MODES["AdaRound+BC"])
        m.record(f"f1d AdaRound+BC after the search@{budget}", result, seconds, peak, plan=str(plan), after=True)
    for budget in BUDGETS:
        m.search(f"f1d AdaRound+BC@{budget}", EXPANDED, budget, MODES["AdaRound+BC"])


def step_deploy(m: Model) -> None:
    """The MP plans of AdaRound+BC in both phases exported and scored as files in ONNX Runtime, beside the
    simulation's score of the same plan."""
    for name, row in list(m.rows.items()):
        if "plan" not in row or "AdaRound+BC@" not in name:
            continue
        path = m.out / f"table4-{m.key}-{name.replace(' ', '_')}.onnx"
        _, seconds, peak = m.mixq("export", str(m.onnx), "--plan", row["plan"], "--data", str(m.dev), "-o", str(path),
                                  "--json")
        result, _, _ = m.mixq("eval", str(path), "--reference", str(m.onnx), "--data", str(m.test), "--json")
        m.record(f"deploy {name}", result, seconds, peak, simulated_top1=row.get("top1"))


TORCH_MODELS = {"resnet20": str(Path(__file__).resolve().parent / "models.py") + ":resnet20_raw"}
TORCH_BUDGET = 0.25
TORCH_EVAL_SAMPLES = 2000
TORCH_ROWS = {
    "PTQ MP": ["--rounding", "nearest"],
    "AdaRound+BC MP": MODES["AdaRound+BC"],
    "AdaRound+BC MP + BRECQ": [*MODES["AdaRound+BC"], "--reconstruct", "brecq"],
    "AdaRound+BC MP + BRECQ + QDrop": [*MODES["AdaRound+BC"], "--reconstruct", "brecq", "--qdrop"],
    "AdaRound+BC MP + KD 200 steps": [*MODES["AdaRound+BC"], "--finetune-kd", "200"],
    "AdaRound+BC MP, data-free (ZeroQ)": [*MODES["AdaRound+BC"], "--data", "synthetic", "--preprocess", "crop=32"],
}


def step_torch(m: Model) -> None:
    """The tuning steps and data-free calibration on the torch model (searched with the CLI, scored on test)."""
    if m.key not in TORCH_MODELS:
        return
    model = TORCH_MODELS[m.key]
    for name, flags in TORCH_ROWS.items():
        run_dir = m.out / f"table4-{m.key}-torch-{len(m.rows)}-run"
        shutil.rmtree(run_dir, ignore_errors=True)
        data = [] if "synthetic" in flags else ["--data", str(m.dev)]
        _, seconds, peak = m.mixq("search", model, *data, "--num-samples", str(CALIBRATION), "--eval-data", str(m.test),
                                  "--eval-samples", str(TORCH_EVAL_SAMPLES), "--candidates", EXPANDED, "--budget", f"bops<={TORCH_BUDGET}", "--out", str(run_dir),
                                  "--no-report", *flags)
        stored = json.loads((run_dir / "plan.json").read_text())
        timings = json.loads((run_dir / "timings.json").read_text())
        quality = stored["quality"]
        m.record(f"torch {name} @{TORCH_BUDGET}", {"top1": quality.get("top1"), "agreement": quality.get("agreement"),
                                                     "bops_ratio": stored["costs"]["bops"]["ratio"]}, seconds, peak,
                 counts=stored.get("precision_counts"), timings=timings)


STEPS = {"cost": step_cost, "torch": step_torch, "uniform": step_uniform, "table4": step_table4, "fig1d": step_fig1d,
         "deploy": step_deploy}


def markdown(results: dict[str, dict[str, dict]]) -> str:
    lines = ["| model | row | BOPs ratio | top-1 (%) | agreement (%) | wall (s) | peak (MB) |", "|---|---|---|---|---|---|---|"]
    for key, rows in results.items():
        for name, r in rows.items():
            top1 = f"{100 * r['top1']:.2f}" if r.get("top1") is not None else "-"
            agree = f"{100 * r['agreement']:.2f}" if r.get("agreement") is not None else "-"
            bops = f"{r['bops_ratio']:.3f}" if r.get("bops_ratio") is not None else "-"
            lines.append(f"| {key} | {name} | {bops} | {top1} | {agree} | {r['seconds']} | {r['peak_mb']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="lite0,resnet20")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", default="cost,uniform,table4,fig1d,deploy,torch")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "out"))
    parser.add_argument("--keep-cache", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "table4-cache"
    if not args.keep_cache:
        shutil.rmtree(cache, ignore_errors=True)
    results_path = out / "table4.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for key in args.models.split(","):
        m = Model(key, out, args.threads, cache)
        m.rows = results.get(key, {})
        for step in args.steps.split(","):
            STEPS[step](m)
            results[key] = m.rows
            results_path.write_text(json.dumps(results, indent=2) + "\n")
    (out / "table4.md").write_text(markdown(results) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
