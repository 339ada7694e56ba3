"""mixq at AIMET AMP's / Sony MCT's operating point: EfficientNet-Lite0, W4A8/W8A8/W8A16, BOPs ratio 0.354.

PEERS.md: both ended 3.8 top-1 points below float on ../shared/data/imagenet-samples (search 265 s and
139 s on one thread). Same conditions here: one thread, 64 calibration images (phase 1 and ranges), all
500 images scored by a separate `mixq eval`; the search measures its chosen point on the 64 images only.
Usage: python bench/vs_aimet.py [--threads 1] [--ratio 0.354]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from table1 import MODELS, ROOT, mixq


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ratio", type=float, default=0.354)
    parser.add_argument("--out", default=str(ROOT / "bench" / "out"))
    args = parser.parse_args()
    spec = MODELS["lite0"]
    model, data = spec["model"], str(spec["data"])
    run = Path(args.out) / "lite0-vs-aimet"
    shutil.rmtree(run, ignore_errors=True)
    float_result, _ = mixq("eval", model, "--float", "--data", data, "--json", threads=args.threads)
    _, seconds = mixq("search", model, "--data", data, "--candidates", "w4a8,w8a8,w8a16", "--budget",
                      f"bops<={args.ratio}", "--num-samples", "64", "--eval-samples", "64", "--out", str(run),
                      threads=args.threads)
    plan_result, _ = mixq("eval", model, "--plan", str(run / "plan.json"), "--data", data, "--json",
                          threads=args.threads)
    timings = json.loads((run / "timings.json").read_text())
    result = {"threads": args.threads, "ratio": args.ratio, "float": float_result, "mixed": plan_result,
              "drop_points": round(100 * (float_result["top1"] - plan_result["top1"]), 2),
              "search_wall_s": round(seconds, 1), "timings": timings}
    (Path(args.out) / "vs_aimet.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
