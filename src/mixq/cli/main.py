"""``mixq``: the command line. Maps flags to typed configs and calls the API; nothing else."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from mixq.allocator import prefer_heap_allocations
from mixq.cli.configfile import parse_with_config, resolved_command, typed_command
from mixq.cli.export_cmd import after_search, cmd_export
from mixq.cli.parser import build_parser
from mixq.cli.progress import BarProgress, JsonProgress, NoProgress
from mixq.cli.summary import print_comparison, print_inspect, print_search
from mixq.config import SearchConfig
from mixq.core.precision import ADAROUND_BATCH_SIZE, ADAROUND_ITERATIONS, ADAROUND_REG_WEIGHT, QuantScheme, RangeMethod
from mixq.core.synthetic import SYNTHETIC, SyntheticData, SyntheticSettings
from mixq.errors import ConfigError, InternalError, MixqError, internal
from mixq.options import parse_pairs
from mixq.solvers import SOLVERS
from mixq.version import __version__

logger = logging.getLogger("mixq")

def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    console = Console(stderr=True)
    try:
        args, parser = parse_with_config(words, build_parser)
    except MixqError as exc:  # a bad config file, or two plug-ins on one name
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except Exception as exc:  # noqa: BLE001 -- a bug in reading the flags or the config file
        return report_bug(exc, console, verbose=any(w == "--verbose" or w.lstrip("v") == "-" for w in words))
    if args.command is None:
        parser.print_help()
        return 2
    # A run from a config file records every resolved flag, so it reproduces even if the file changes.
    args.command_line = resolved_command(build_parser, args) if getattr(args, "config_file", None) \
        else typed_command(words)
    prefer_heap_allocations()  # the CLI owns its process: phase 1 is ~2x faster without mmap churn
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2) if not args.quiet else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return _COMMANDS[args.command](args, console)
    except MixqError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted; finished measurements are kept in the run directory (rerun to resume)")
        return 130
    except Exception as exc:  # noqa: BLE001 -- InternalError, or one mixq did not raise on purpose: a mixq bug
        return report_bug(exc, console, verbose=getattr(args, "verbose", 0) > 0)


#: Exit code of a mixq bug (2 is the user's input, 130 an interrupt).
EXIT_BUG = 3


def report_bug(exc: Exception, console: Console, verbose: bool) -> int:
    """Say in one line that this is a mixq bug, not the user's input, and ask for a report; ``-v`` shows the
    traceback above that line. Returns :data:`EXIT_BUG`."""
    if verbose:
        traceback.print_exception(exc)
    text = " ".join(str(exc).split())
    if not isinstance(exc, InternalError):
        text = str(internal(f"unexpected {type(exc).__name__}: {text}"))
    elif not text.startswith("mixq bug:"):  # raised as InternalError(...) rather than internal(...)
        text = str(internal(text))
    hint = "" if verbose else " Run the command again with -v to see the traceback."
    console.print(f"[bold red]error:[/] {escape(text.rstrip('.'))} (this is mixq {__version__}).{hint}",
                  highlight=False, soft_wrap=True)
    return EXIT_BUG


def _progress(args: argparse.Namespace, console: Console) -> Any:
    if args.quiet:
        return NoProgress()
    if getattr(args, "json", False):
        return JsonProgress()
    return BarProgress(console)


def _scheme(args: argparse.Namespace) -> QuantScheme:
    return QuantScheme(weight_per_channel=not args.per_tensor_weights, weight_range=RangeMethod(args.weight_range),
                       act_range=RangeMethod(args.act_range), act_dynamic=args.dynamic,
                       weight_rounding=getattr(args, "rounding", None) or "nearest",
                       adaround_iterations=getattr(args, "adaround_iterations", ADAROUND_ITERATIONS),
                       adaround_batch_size=getattr(args, "adaround_batch_size", ADAROUND_BATCH_SIZE),
                       adaround_reg_weight=getattr(args, "adaround_reg", ADAROUND_REG_WEIGHT),
                       bias_correction=getattr(args, "bias_correction", False))


def _load(args: argparse.Namespace, data_arg: str | None = None) -> tuple[Any, Any, Any]:
    from mixq.data import Preprocess, load_data
    from mixq.models import load_model

    path = data_arg if data_arg is not None else args.data
    if path == SYNTHETIC and args.command != "search":
        raise ConfigError(f"--data synthetic distils calibration data in mixq search only; mixq {args.command} "
                          "takes the search's samples as --data RUN/synthetic.npz --preprocess crop=H,W (they are "
                          "model inputs already), or real images")
    loaded = load_model(args.model, getattr(args, "load_timeout", None))
    preprocess = Preprocess.parse(args.preprocess) if args.preprocess else loaded.preprocess
    if path == SYNTHETIC:
        return loaded, preprocess, _synthetic(args, preprocess)
    data = load_data(path, preprocess, labels=getattr(args, "labels", None)) if path else None
    return loaded, preprocess, data


def _synthetic(args: argparse.Namespace, preprocess: Any) -> SyntheticData:
    """``--data synthetic``: ZeroQ's distilled inputs, at the model's input size (its preprocessing's crop)."""
    if getattr(args, "labels", None):
        raise ConfigError("--labels applies to images; synthetic data (--data synthetic) has no labels: drop --labels")
    crop = getattr(preprocess, "crop", None)
    if not crop:
        raise ConfigError("--data synthetic needs the model's input size to distil inputs of that size: give "
                          '--preprocess "crop=H,W" (e.g. crop=224); built-in models such as efficientnet-lite0 '
                          "know theirs")
    settings = SyntheticSettings(iterations=args.synthetic_iterations, lr=args.synthetic_lr)
    return SyntheticData((3, *crop), settings)


def cmd_search(args: argparse.Namespace, console: Console) -> int:
    from mixq.api import search
    from mixq.data import load_data

    config = SearchConfig(candidates=args.candidates, budgets=tuple(args.budget), num_samples=args.num_samples,
                          eval_samples=args.eval_samples, seed=args.seed, scheme=_scheme(args), solver=args.solver,
                          cost=args.cost, cache_mb=args.cache_mb, threads=args.threads, strategy=args.strategy,
                          restrictions=tuple(args.restrict), hardware=args.hardware,
                          max_evaluations=args.max_evaluations, pair_groups=args.pair_groups,
                          time_limit_s=args.time_limit, nondeterministic=args.nondeterministic,
                          average_runs=args.average_runs, runtime=args.runtime,
                          latency_model=args.latency_model, verify=args.verify,
                          solver_options=parse_pairs(args.solver_options, "--solver-option"),
                          **_tuning(args))
    compared = _compared(args.compare_solvers) if args.compare_solvers else ()
    loaded, preprocess, data = _load(args)
    eval_data = load_data(args.eval_data, preprocess, labels=args.labels) if args.eval_data else None
    if compared:
        return _compare(args, console, loaded, data, config, eval_data, compared)
    with _progress(args, console) as progress:
        result = search(loaded.model, data, config, out=args.out, progress=progress, eval_data=eval_data,
                        command=args.command_line)
    return _finish_search(args, console, result)


def _tuning(args: argparse.Namespace) -> dict[str, Any]:
    """``tuning`` and ``tuning_options`` from --tune/--tune-option and the --finetune-kd shortcuts."""
    options: dict[str, Any] = parse_pairs(args.tune_options, "--tune-option")
    name = args.tune
    shortcuts = {"steps": args.finetune_kd, "minutes": args.finetune_minutes, "feature_weight": args.kd_feature_weight}
    given = {key: value for key, value in shortcuts.items() if value is not None}
    if given:
        if name not in (None, "kd"):
            raise ConfigError(f"--finetune-kd, --finetune-minutes and --kd-feature-weight set distillation (kd), "
                              f"not --tune {name}: drop one of them")
        if args.finetune_kd is None and name is None:
            raise ConfigError("--finetune-minutes and --kd-feature-weight set the distillation: give "
                              "--finetune-kd STEPS too")
        name = "kd"
        options.update(given)
    if args.reconstruct is not None or args.qdrop is not None:
        if args.reconstruct is None:
            raise ConfigError("--qdrop sets the block reconstruction: give --reconstruct brecq too")
        if name not in (None, args.reconstruct):
            raise ConfigError(f"--reconstruct {args.reconstruct} is a tuning step, and so is "
                              f"{'--finetune-kd' if name == 'kd' else '--tune ' + name}: choose one")
        name = args.reconstruct
        if args.qdrop is not None:
            options["qdrop"] = args.qdrop
    return {"tuning": name, "tuning_options": options}


def _compared(text: str) -> tuple[str, ...]:
    """--compare-solvers' names, each checked against the registry (before anything is loaded)."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for name in names:
        try:
            SOLVERS.get(name)
        except ConfigError as exc:
            raise ConfigError(f"--compare-solvers: {exc}") from None
    if not names:
        raise ConfigError("--compare-solvers: give at least one solver")
    return names


def _compare(args: argparse.Namespace, console: Console, loaded: Any, data: Any, config: SearchConfig,
             eval_data: Any, names: tuple[str, ...]) -> int:
    from mixq.compare import compare_solvers

    with _progress(args, console) as progress:
        comparison = compare_solvers(loaded.model, data, config, args.out, names, progress, eval_data,
                                     args.command_line)
    if args.json:
        print(json.dumps({"winner": comparison.winner, "metric": comparison.metric, "rows": comparison.rows(),
                          "skipped": dict(comparison.skipped)}))
    else:
        print_comparison(Console(), comparison)
    if not args.no_report:
        _write_report(Path(args.out), console, console if args.json else Console())
    return 0


def _finish_search(args: argparse.Namespace, console: Console, result: Any) -> int:
    """The summary (a table, or with --json the plan as one JSON object), then the report."""
    if getattr(args, "json", False):
        print(json.dumps({**result.plan.to_dict(), "run_dir": str(result.run_dir), "timings": result.timings}))
    else:
        print_search(Console(), result)
    if not args.no_report and result.run_dir is not None:
        # with --json, stdout holds only the JSON object
        _write_report(result.run_dir, console, console if getattr(args, "json", False) else Console())
    return 0


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    from mixq.api import search
    from mixq.data.demo import demo_dataset
    from mixq.models import load_model

    loaded = load_model("demo")
    data = demo_dataset(loaded.preprocess)
    config = SearchConfig(budgets=tuple(args.budget or ["bops<=0.375"]), num_samples=len(data), threads=args.threads)
    console.print(f"demo: EfficientNet-Lite0 on {len(data)} bundled sample photos, budget {', '.join(map(str, config.budgets))}")
    with _progress(args, console) as progress:
        result = search(loaded.model, data, config, out=args.out, progress=progress, command=args.command_line)
    return _finish_search(args, console, result)


def _write_report(run_dir: Path, console: Console, out: Console) -> None:
    """After a search: the report is a bonus, so a missing extra is a note, not a failed search."""
    from mixq.report import write_report
    from mixq.rundir import RunLock

    try:
        with RunLock(run_dir):  # not while another search writes into it
            files = write_report(run_dir)
    except MixqError as exc:  # e.g. BackendUnavailableError without mixq[report]; the plan is saved already
        console.print(f"[yellow]no report:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return
    out.print(f"report: {files.html}", highlight=False, soft_wrap=True)


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from mixq.report import write_report
    from mixq.rundir import RunLock

    run = Path(args.run)
    if run.is_dir():
        with RunLock(run):  # not while a search writes into it
            files = write_report(run, png=not args.no_png)
    else:
        files = write_report(run, png=not args.no_png)
    out = Console()
    out.print(f"report: {files.html}", highlight=False, soft_wrap=True)
    if files.pngs:
        out.print(f"plots: {', '.join(str(p) for p in files.pngs)}", highlight=False, soft_wrap=True)
    return 0


def cmd_eval(args: argparse.Namespace, console: Console) -> int:
    from mixq.api import evaluate
    from mixq.data import load_data
    from mixq.plan import Plan

    if not (args.plan or args.uniform or args.float or args.reference):
        raise ConfigError("say what to evaluate: --plan PLAN, --uniform PRECISION, --float, or --reference "
                          "FLOAT_MODEL (to run MODEL as given against a float model)")
    reference = None
    if args.reference:
        from mixq.data import Preprocess
        from mixq.models import load_model

        loaded, reference = load_model(args.model, args.load_timeout), load_model(args.reference, args.load_timeout)
        # an exported file has no preprocessing of its own: it takes the float model's
        preprocess = Preprocess.parse(args.preprocess) if args.preprocess else \
            loaded.preprocess or reference.preprocess
        data = load_data(args.data, preprocess, labels=args.labels)
    else:
        loaded, preprocess, data = _load(args)
    calibration = load_data(args.calib_data, preprocess) if args.calib_data else data
    what: Any = None
    scheme = _scheme(args)
    num_samples = args.num_samples
    if args.plan:
        what = Plan.load(args.plan)
        if what.scheme is not None:  # calibrate exactly as the search did
            scheme = what.scheme
            num_samples = what.num_samples if what.num_samples is not None else num_samples
        scheme = after_search(scheme, args)  # e.g. AdaRound or bias correction after a search without them
    elif args.uniform:
        what = args.uniform
    with _progress(args, console) as progress:
        result = evaluate(loaded.model, data, what, calibration=calibration, num_samples=num_samples,
                          scheme=scheme, threads=args.threads, progress=progress,
                          reference=reference.model if reference is not None else None, runtime=args.runtime)
    if reference is not None:
        result["reference"] = args.reference  # as typed, not the factory's class name
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>14}: {value:.6g}" if isinstance(value, float) else f"{key:>14}: {value}")
    return 0


def cmd_inspect(args: argparse.Namespace, console: Console) -> int:
    from mixq.api import inspect_model

    loaded, preprocess, data = _load(args)
    report = inspect_model(loaded.model, data, preprocess)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_inspect(Console(), report)
    return 0


def _export(args: argparse.Namespace, console: Console) -> int:
    return cmd_export(args, console, _load, _progress(args, console))


_COMMANDS = {"search": cmd_search, "demo": cmd_demo, "eval": cmd_eval, "inspect": cmd_inspect, "report": cmd_report,
             "export": _export}


if __name__ == "__main__":
    raise SystemExit(main())
