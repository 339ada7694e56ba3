"""``mixq export``: a plan becomes a QDQ ONNX file, checked against the simulation."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mixq.backends.base import UNFUSED_WEIGHTS as UNFUSED_CHOICES
from mixq.core.precision import WEIGHT_ROUNDINGS, QuantScheme
from mixq.cli.choices import name_in
from mixq.runtimes import RUNTIMES

EXPORT_EPILOG = """\
examples:
  mixq search model.onnx --data calib/ --budget "bops<=0.5" --out runs/r1
  mixq export model.onnx --plan runs/r1/plan.json --data calib/ -o model.qdq.onnx --benchmark

  mixq search model.py:build --data calib/ --budget "bops<=0.5" --out runs/r2
  mixq export model.py:build --plan runs/r2/plan.json --data calib/ -o model.qdq.onnx

MODEL is the one the plan was searched on, given as for `mixq search`. A torch model is exported
with torch.onnx.export (opset 17, dynamic batch) and each torch quantizer group is mapped to the
ONNX ops with the same weights and inputs; a group that cannot be mapped is an error, and the check
also compares the file with the torch float model (torch_float_sqnr_db). Ranges are calibrated on
the same first samples as in the search (read from the plan), so the file computes what the search
simulated.
"""


def add_export_parser(sub: Any, add_output_flags: Any) -> None:
    export = sub.add_parser("export", help="write a plan as a QDQ ONNX model for ONNX Runtime",
                            formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXPORT_EPILOG,
                            description="int8 groups get QuantizeLinear/DequantizeLinear with int8 weights, "
                                        "<=4-bit weights are stored as INT4, fp16 groups are cast, fp32 groups "
                                        "stay float. The file is run on --check-samples calibration samples and "
                                        "compared with the simulation; --benchmark measures latency next to the "
                                        "float model.")
    # ranges and scheme come from the plan (as in its search), so no range flags are offered here
    export.add_argument("model", metavar="MODEL",
                        help="the model the plan was searched on: a .onnx file, file.py:factory, "
                             "package.module:factory or a built-in name")
    export.add_argument("--data", required=True, metavar="DATA", help="the search's calibration data")
    export.add_argument("--preprocess", metavar="SPEC", help="the search's --preprocess, if it had one")
    export.add_argument("--threads", type=int, metavar="N", help="ONNX Runtime (and torch) threads")
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("--plan", metavar="PLAN", help="RUN/plan.json (or the RUN directory)")
    which.add_argument("--uniform", metavar="PRECISION",
                       help="every group at one precision, e.g. w8a8: the uniform baseline as a file, no search "
                            "(ranges from the first 64 samples of DATA, default scheme)")
    export.add_argument("-o", "--output", required=True, metavar="FILE.onnx", help="where to write the model")
    export.add_argument("--check-samples", type=int, default=64, metavar="N",
                        help="calibration samples the export is checked on (default 64; 0 = no check)")
    export.add_argument("--benchmark", action="store_true", help="measure latency (median, warm-up excluded)")
    export.add_argument("--no-int4", action="store_true", help="store 4-bit weights as int8")
    export.add_argument("--float-bias", action="store_true",
                        help="keep biases float (bit-exact with the simulation, fewer fused integer kernels)")
    export.add_argument("--no-output-quantizers", action="store_true",
                        help="no quantizers at integer groups' outputs (the ONNX search simulates them), so "
                             "groups before a residual Add or a pooling head run as float kernels")
    export.add_argument("--unfused-weights", choices=UNFUSED_CHOICES, default="auto",
                        help="integer groups ONNX Runtime runs as float kernels (an int8 group whose float consumer "
                             "feeds a quantizer): auto (default) times the file both ways and keeps the faster; "
                             "int8 keeps int8 weights dequantized on every run; float stores the dequantized "
                             "values (bit-identical, 4x those weights' bytes). The export's notes say which.")
    export.add_argument("--runtime", choices=RUNTIMES.names(), type=name_in(RUNTIMES),
                        help="also run the file in this runtime on the check samples and compare it with ONNX "
                             "Runtime's outputs of the same file (with --benchmark, its latency too): "
                             + ", ".join(RUNTIMES.names()))
    export.add_argument("--rounding", choices=list(WEIGHT_ROUNDINGS),
                        help="weight rounding for the file instead of the plan's: adaround writes AdaRound's integers "
                             "for a plan searched with nearest rounding (AdaRound applied after the search; cached "
                             "on disk, as in search), or for --uniform. Default: the plan's (nearest for --uniform)")
    export.add_argument("--bias-correction", action="store_true",
                        help="bias-correct the file's quantized layers even if the plan's search did not (a plan "
                             "searched with --bias-correction is exported with it anyway)")
    export.add_argument("--json", action="store_true", help="print the export report as one JSON object")
    add_output_flags(export)


def after_search(scheme: QuantScheme, args: argparse.Namespace) -> QuantScheme:
    """A plan's scheme with what eval and export may add after its search: ``--rounding`` (e.g. AdaRound on a
    plan searched with nearest rounding) and ``--bias-correction``."""
    scheme = scheme.with_rounding(getattr(args, "rounding", None), getattr(args, "adaround_iterations", None))
    return replace(scheme, bias_correction=True) if getattr(args, "bias_correction", False) else scheme


def cmd_export(args: argparse.Namespace, console: Console, load: Any, progress: Any) -> int:
    from mixq.export import export, input_paths, writable_output
    from mixq.core.precision import Precision, QuantScheme
    from mixq.plan import Plan

    sources = input_paths(args.model, args.data, args.plan, getattr(args, "labels", None), getattr(args, "config", None))
    writable_output(Path(args.output), sources)  # before loading anything: refuse -o over an input
    loaded, _, data = load(args)
    plan: Plan | Precision = Plan.load(args.plan) if args.plan else Precision.parse(args.uniform)
    scheme = None
    if isinstance(plan, Plan):  # AdaRound or bias correction after a search without them
        if args.rounding is not None or args.bias_correction:
            plan = replace(plan, scheme=after_search(plan.scheme or QuantScheme(), args))
    elif args.rounding is not None or args.bias_correction:
        scheme = after_search(QuantScheme(), args)
    with progress:
        report = export(loaded.model, plan, data, args.output, num_samples=None, scheme=scheme,
                        check_samples=args.check_samples,
                        benchmark=args.benchmark, int4=not args.no_int4, int32_bias=not args.float_bias,
                        output_quantizers=not args.no_output_quantizers, unfused_weights=args.unfused_weights,
                        runtime=args.runtime,
                        threads=args.threads, progress=progress)
    if args.json:
        print(json.dumps(report.to_dict()))
        return 0
    table = Table(title=f"mixq export: {report.path}", show_header=False)
    table.add_row("file size", f"{report.file_bytes / 1e6:.2f} MB (float {report.float_file_bytes / 1e6:.2f} MB)")
    table.add_row("precisions", ", ".join(f"{k}: {v}" for k, v in sorted(report.precision_counts.items())))
    for key, value in report.check.items():
        table.add_row(f"check: {key}", f"{value:.4g}")
    for key, value in report.latency.items():
        table.add_row(f"latency: {key}", f"{value:.3g}")
    for key, value in report.runtime_check.items():
        if key != "runtime":
            table.add_row(f"{report.runtime_check['runtime']}: {key}", f"{value:.4g}")
    if report.fused:
        table.add_row("integer kernels fused by ONNX Runtime", ", ".join(f"{k}: {v}" for k, v in report.fused.items()))
    Console().print(table)
    for note in report.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    return 0
