#!/bin/sh
# Every figure of BENCHMARKS.md for the core issue, one after another on an otherwise idle machine.
set -e
cd "$(dirname "$0")"
python phase1_speed.py --threads 2 --num-samples 64 --out out/phase1_speed.json
python vs_aimet.py --threads 1
python table1.py --threads 2 > out/table1.md
python fp16_layers.py --threads 2
