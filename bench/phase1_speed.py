"""Phase-1 wall time: mixq's cached-prefix measurement against a naive whole-network run per measurement.

Both run in this one process, on the same calibrated simulation, so the ratio is the figure.
Usage: python bench/phase1_speed.py [--num-samples 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mixq.api import prepare
from mixq.core.assignment import Assignment
from mixq.core.precision import QuantScheme
from mixq.core.quality import signal_over_noise, sqnr_db_from_ratios
from mixq.data import load_data
from mixq.models import load_model
from mixq.sensitivity.sqnr import measure_sensitivity

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def naive_phase1(sim, calibration: np.ndarray) -> dict:
    """The whole network for every (group, candidate): what phase 1 costs without caching."""
    reference = sim.run(calibration)
    table = {}
    for group in sim.graph:
        for precision in group.candidates:
            output = sim.run(calibration, Assignment({group.id: precision}))
            ratios = signal_over_noise(reference, output)
            table[(group.id, str(precision))] = sqnr_db_from_ratios(float(ratios.sum()), len(ratios))
    return table


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--candidates", default="w4a8,w8a8,w8a16")
    parser.add_argument("--out", default="bench/out/phase1_speed.json")
    args = parser.parse_args()
    if not (SHARED / "imagenet-samples").exists():
        print("needs ../shared/data/imagenet-samples", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    loaded = load_model("efficientnet-lite0")
    data = load_data(SHARED / "imagenet-samples", loaded.preprocess)
    session = prepare(loaded.model, data, args.candidates, QuantScheme(), args.num_samples, args.threads)
    sim, calibration = session.sim, session.calibration
    started = time.perf_counter()
    table = measure_sensitivity(sim, calibration)
    cached_s = time.perf_counter() - started
    started = time.perf_counter()
    naive = naive_phase1(sim, calibration)
    naive_s = time.perf_counter() - started
    worst = max(abs(table.sqnr_db[(g, p)] - naive[(g, str(p))]) for (g, p) in table.sqnr_db)
    result = {
        "model": "efficientnet-lite0", "num_samples": len(calibration), "threads": args.threads,
        "groups": len(sim.graph), "candidates": args.candidates,
        "measurements": len(table.sqnr_db), "cached_s": round(cached_s, 1), "naive_s": round(naive_s, 1),
        "speedup": round(naive_s / cached_s, 2), "max_sqnr_difference_db": worst,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
