"""Table 1 of Pandey et al., measured here: float, uniform W8A8/W6A8/W4A8 and mixed precision.

Everything goes through the CLI (`mixq search`, `mixq eval --json`), as a user would run it. The
searches of one model share one run directory, so phase 1 runs once and later budgets resume
from its stored measurements.

Usage: python bench/table1.py [--models lite0,resnet20] [--threads 2] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

MODELS = {
    "lite0": {"model": "efficientnet-lite0", "data": SHARED / "imagenet-samples", "label": "EfficientNet-Lite0"},
    "resnet20": {"model": str(ROOT / "bench" / "models.py") + ":resnet20", "data": SHARED / "cifar10-test.npz",
                 "label": "ResNet20 (CIFAR-10)"},
}
UNIFORM = ("w8a8", "w6a8", "w4a8")
RATIOS = (0.5, 0.375, 0.3)


def mixq(*args: str, threads: int) -> tuple[dict, float]:
    """Run one CLI command; return its JSON output (eval) and wall time."""
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "mixq.cli.main", *args, "--threads", str(threads), "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr}")
    out = done.stdout.strip().splitlines()
    try:
        return json.loads(out[-1]), elapsed
    except (json.JSONDecodeError, IndexError):
        return {}, elapsed


def run_model(key: str, threads: int, out: Path, num_samples: int) -> dict:
    spec = MODELS[key]
    model, data = spec["model"], str(spec["data"])
    extra = list(spec.get("extra", []))  # e.g. --preprocess for an .onnx file, which carries none
    rows: dict[str, dict] = {}
    result, _ = mixq("eval", model, "--float", "--data", data, *extra, "--json", threads=threads)
    rows["FP32"] = result
    for precision in UNIFORM:
        result, _ = mixq("eval", model, "--uniform", precision, "--data", data, *extra, "--num-samples", str(num_samples),
                         "--json", threads=threads)
        rows[precision.upper()] = result
    for precision in UNIFORM:  # the reference point: plain min-max ranges
        result, _ = mixq("eval", model, "--uniform", precision, "--data", data, *extra, "--num-samples", str(num_samples),
                         "--weight-range", "minmax", "--act-range", "minmax", "--json", threads=threads)
        rows[f"{precision.upper()} (min-max ranges)"] = result
    run = out / f"{key}-run"
    shutil.rmtree(run, ignore_errors=True)
    for ratio in RATIOS:
        _, seconds = mixq("search", model, "--data", data, *extra, "--candidates", "w4a8,w8a8,w8a16",
                          "--budget", f"bops<={ratio}", "--num-samples", str(num_samples), "--eval-samples", "64",
                          "--out", str(run), threads=threads)
        plan = out / f"{key}-plan-{ratio}.json"
        shutil.copy(run / "plan.json", plan)
        timings = json.loads((run / "timings.json").read_text())
        result, _ = mixq("eval", model, "--plan", str(plan), "--data", data, *extra, "--json", threads=threads)
        result.update(search_s=round(seconds, 1), phase1_s=round(timings.get("phase1_s", 0.0), 1),
                      counts=json.loads(plan.read_text())["precision_counts"])
        rows[f"MP({ratio})"] = result
    return rows


def markdown(all_rows: dict[str, dict[str, dict]]) -> str:
    lines = ["| model | config | BOPs ratio | top-1 | agreement | SQNR (dB) | size (MB) | search (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for key, rows in all_rows.items():
        for name, r in rows.items():
            top1 = f"{100 * r['top1']:.2f}" if "top1" in r else "-"
            agree = f"{100 * r['agreement']:.2f}" if "agreement" in r else "-"
            sqnr = f"{r['sqnr_db']:.1f}" if "sqnr_db" in r else "-"
            search = f"{r['search_s']}" if "search_s" in r else ""
            lines.append(f"| {MODELS[key]['label']} | {name} | {r['bops_ratio']:.3f} | {top1} | {agree} | {sqnr} | "
                         f"{r['weight_bytes'] / 1e6:.2f} | {search} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="lite0,resnet20")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--out", default=str(ROOT / "bench" / "out"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    all_rows = for_each_model(args.models, out / "table1.json",
                              lambda key: run_model(key, args.threads, out, args.num_samples))
    print(markdown(all_rows))
    return 0


def for_each_model(models: str, results: Path, run: Callable[[str], dict]) -> dict[str, dict]:
    """``run`` each model whose data is present; the JSON file is rewritten after each model."""
    out: dict[str, dict] = {}
    for key in models.split(","):
        if not Path(MODELS[key]["data"]).exists():
            print(f"skipping {key}: {MODELS[key]['data']} not present", file=sys.stderr)
            continue
        out[key] = run(key)
        results.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
