"""Which layers must stay in FP16 when the rest runs INT8? Candidates w8a8,fp16, label-free target.

Runs `mixq search MODEL --candidates w8a8,fp16 --budget "agreement>=0.99"` through the CLI, then
`mixq eval --plan` on the labelled data, and lists the groups the plan keeps in FP16.
Usage: python bench/fp16_layers.py [--models lite0,resnet20] [--threads 2] [--target 0.99]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from table1 import MODELS, ROOT, for_each_model, mixq


def run_model(key: str, threads: int, out: Path, target: float, eval_samples: int | None) -> dict:
    spec = MODELS[key]
    model, data = spec["model"], str(spec["data"])
    run = out / f"{key}-fp16-run"
    shutil.rmtree(run, ignore_errors=True)
    extra = ["--eval-samples", str(eval_samples)] if eval_samples else []
    _, seconds = mixq("search", model, "--data", data, "--candidates", "w8a8,fp16", "--budget",
                      f"agreement>={target}", *extra, "--out", str(run), threads=threads)
    plan = json.loads((run / "plan.json").read_text())
    graph = {g["id"]: g for g in json.loads((run / "graph.json").read_text())}
    fp16 = [g for g, p in plan["assignment"].items() if p == "fp16"]
    measured, _ = mixq("eval", model, "--plan", str(run / "plan.json"), "--data", data, "--json", threads=threads)
    w8a8, _ = mixq("eval", model, "--uniform", "w8a8", "--data", data, "--json", threads=threads)
    return {
        "groups": len(graph), "fp16_groups": fp16,
        "fp16_macs_share": sum(graph[g]["macs"] for g in fp16) / sum(g["macs"] for g in graph.values()),
        "plan_costs": plan["costs"], "search_quality": plan["quality"], "search_s": round(seconds, 1),
        "eval_plan": measured, "eval_uniform_w8a8": w8a8,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="lite0,resnet20")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--eval-samples", type=int, help="samples used to measure agreement (default: all)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "out"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = for_each_model(args.models, out / "fp16_layers.json",
                             lambda key: run_model(key, args.threads, out, args.target, args.eval_samples))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
