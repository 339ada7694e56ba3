"""Phase-1 wall time: mixq's cached-prefix measurement against a naive whole-network run per measurement.

Both run in this one process, on the same calibrated simulation, so the ratio is the figure. Range
setting (the quantizers of every candidate, computed once and cached) is done first and timed apart,
so neither side pays for it.
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

from mixq.allocator import prefer_heap_allocations
from mixq.prepared import prepare
from mixq.core.assignment import Assignment, uniform
from mixq.core.precision import QuantScheme, parse_candidates
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
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's malloc as it is (the CLI keeps large blocks on the heap)")
    args = parser.parse_args()
    if not (SHARED / "imagenet-samples").exists():
        print("needs ../shared/data/imagenet-samples", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    if not args.default_malloc:
        prefer_heap_allocations()  # as the mixq command line does
    loaded = load_model("efficientnet-lite0")
    data = load_data(SHARED / "imagenet-samples", loaded.preprocess)
    session = prepare(loaded.model, data, args.candidates, QuantScheme(), args.num_samples, args.threads)
    sim, calibration = session.sim, session.calibration
    started = time.perf_counter()
    for precision in parse_candidates(args.candidates):  # range setting for every candidate, shared by both
        sim.run(calibration[:1], uniform(sim.graph, precision))
    ranges_s = time.perf_counter() - started
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
        "measurements": len(table.sqnr_db), "range_setting_s": round(ranges_s, 1), "cached_s": round(cached_s, 1), "naive_s": round(naive_s, 1),
        "speedup": round(naive_s / cached_s, 2), "heap_allocations": not args.default_malloc,
        "max_sqnr_difference_db": worst,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
