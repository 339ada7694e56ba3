"""Exporting a plan to a deployable model: ``export(model, plan, calibration, path)``.

The output is always a QDQ ONNX file. A plan searched on a ``.onnx`` file names its ONNX nodes and is
written directly; a plan searched on a torch ``nn.Module`` names torch modules, so the model is first
exported with ``torch.onnx.export`` and each torch group is mapped, on weights and activations, to the
ONNX group computing the same ops (``mixq.backends.torch.export``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mixq.errors import DataError, ExportError
from mixq.runtimes.base import DEFAULT_RUNTIME
from mixq.backends.export_report import ExportReport

if TYPE_CHECKING:
    from mixq.backends.base import Progress
    from mixq.core.assignment import Assignment
    from mixq.core.precision import Precision, QuantScheme
    from mixq.data.dataset import Dataset
    from mixq.plan import Plan


def export(model: object, plan: Plan | Assignment | Precision | str | Path, calibration: Dataset | np.ndarray,
           path: str | Path, *, num_samples: int | None = None, scheme: QuantScheme | None = None, check_samples: int = 64,
           benchmark: bool = False, int4: bool = True, int32_bias: bool = True, output_quantizers: bool = True,
           unfused_weights: str = "auto", runtime: str | None = None,
           threads: int | None = None, progress: Progress | None = None) -> ExportReport:
    """Write ``plan`` applied to ``model`` as a QDQ ONNX file at ``path``.

    Quantizer ranges are calibrated exactly as in the search (same first ``num_samples`` samples, same
    scheme; by default both are read from the plan's provenance), so the file computes what the search
    simulated. The file is then run on the first ``check_samples`` calibration samples and compared with
    the simulation (``report.check``); with ``benchmark``, latency is measured next to the float model.

    A plan with tuned quantizers (``plan.tuned``: ``RUN/tuned.npz``, from ``--finetune-kd`` or another tuning
    step) is written with them, and ``report.check`` compares the file with the tuned simulation.

    A torch model is exported to ONNX (opset 17, dynamic batch) in memory first; its plan's groups are
    mapped to the ONNX groups holding the same ops (an unmappable group or an ONNX group that would need
    two precisions is an error, never a silently different file), and ``report.check`` also compares
    the ONNX float model and the exported file with the torch float model (``torch_float_sqnr_db``,
    ``exported_vs_torch_float_sqnr_db``, ``top1_agreement_vs_torch_float``).

    Args:
        model: the model the plan was searched on: a ``.onnx`` path or ``onnx.ModelProto``, or a torch
            ``nn.Module`` (left untouched).
        plan: a ``Plan``, an ``Assignment``, the path of a ``plan.json`` (or its run directory), or a
            ``Precision`` for every group (the uniform baseline as a file, without a search).
        calibration: the calibration data of the search.
        int4: store weights of <= 4 bits as INT4 (opset 21); otherwise as int8.
        int32_bias: int32 biases for 8-bit groups, as ORT's integer Conv/Gemm kernels need; ``False`` keeps
            float biases (bit-exact with the simulation, fewer fused kernels).
        output_quantizers: quantize integer groups' outputs that op-input quantizers leave float (before a
            residual Add, a pooling head...), calibrated on the same samples, so ONNX Runtime runs every 8-bit
            group as an integer kernel. The ONNX backend's simulation (the search, ``mixq eval --plan``) has
            them too, so ``report.check`` verifies the file agrees with it; a torch search's simulation does
            not have them. ``False`` writes the model without them (checked against the simulation without).

    ``runtime``: a ``mixq.runtimes.RUNTIMES`` entry other than ONNX Runtime (``openvino``) the file is also
    run in on the check samples: ``report.runtime_check`` has its SQNR and top-1 agreement against ONNX
    Runtime's outputs of the same file (and, with ``benchmark``, its latency).

    Returns an ``ExportReport``: file size next to the float model's, the check against the simulation,
    latencies (with ``benchmark``), the integer kernels ONNX Runtime fused, and notes.
    """
    from mixq import backends
    from mixq.backends.base import ExportSettings
    from mixq.core.assignment import Assignment, uniform
    from mixq.core.precision import Precision
    from mixq.prepared import as_dataset
    from mixq.plan import Plan

    sources = input_paths(*(x for x in (model, plan) if isinstance(x, (str, Path))))
    path = writable_output(Path(path), sources)
    backend = backends.resolve(model)
    if isinstance(plan, (str, Path)):
        plan = Plan.load(plan)
    tuned = plan.load_tuned() if isinstance(plan, Plan) else None  # a bad file: refused before any work
    if scheme is None and isinstance(plan, Plan):
        scheme = plan.scheme
    backends.require_rounding(backend, (scheme or _default_scheme()).weight_rounding)
    if num_samples is None:
        num_samples = plan.num_samples if isinstance(plan, Plan) and plan.num_samples is not None else 64
    data = as_dataset(calibration)
    if len(data) == 0:
        raise DataError("the data set is empty: give the search's calibration data")
    if threads is not None:
        backend.set_threads(threads)
    count = min(num_samples, len(data))
    samples = data.subset(count).load(0, count)
    if isinstance(plan, Precision):
        graph = backend.trace(model, samples[:1], (plan,)).graph
        assignment = uniform(graph, plan)
    else:
        assignment = plan if isinstance(plan, Assignment) else plan.assignment
    settings = ExportSettings(scheme=scheme or _default_scheme(), check_samples=check_samples, benchmark=benchmark,
                              int4=int4, int32_bias=int32_bias, output_quantizers=output_quantizers, threads=threads,
                              unfused_weights=unfused_weights, tuned=tuned)
    report = backend.export(model, assignment, samples, path, settings, progress)
    if runtime is not None and runtime != DEFAULT_RUNTIME and check_samples:
        report.runtime_check = runtime_check(report.path, samples[:check_samples], runtime, threads, benchmark)
    return report


def runtime_check(path: Path, samples: np.ndarray, runtime: str, threads: int | None,
                  benchmark: bool) -> dict[str, Any]:
    """The written file run in ``runtime`` against the same file in ONNX Runtime: do both compute the same?"""
    from mixq.core.quality import measure_quality
    from mixq.runtimes import get_runtime

    other = get_runtime(runtime).run_as_given(str(path), samples[:1], threads)
    reference = get_runtime(DEFAULT_RUNTIME).run_as_given(str(path), samples[:1], threads)
    quality = measure_quality(other(samples), reference(samples), None)
    check: dict[str, Any] = {"runtime": runtime, "n_samples": len(samples), "sqnr_vs_onnxruntime_db": quality.sqnr_db,
                             "top1_agreement_vs_onnxruntime": quality.agreement}
    if benchmark:
        check["latency_ms"] = get_runtime(runtime).latency_ms(str(path), samples[:1], threads=threads)
    return check


def writable_output(path: Path, inputs: Iterable[str | Path] = ()) -> Path:
    """``path`` if a file can be written there, checked before any work (the export itself takes minutes).

    Refused: a folder, a path under a file, a folder where no file can be created (read-only, ``/proc``), and
    any of ``inputs`` (the model, the plan, the data): the export would overwrite what it reads.
    """
    if path.is_dir():
        raise ExportError(f"{path} is a directory: give the file to write, e.g. {path / 'model.onnx'}")
    for source in inputs:
        if _same_file(path, Path(source)):
            raise ExportError(f"-o {path} is one of the inputs ({source}): the export would overwrite it; "
                              "choose another output path")
    existing = next(parent for parent in (path.parent, *path.parent.parents) if parent.exists() or parent == parent.parent)
    if not existing.is_dir():
        raise ExportError(f"cannot write {path}: {existing} is a file, not a folder; choose another output path")
    _probe(existing, path)
    return path


def _same_file(path: Path, source: Path) -> bool:
    try:
        return path.exists() and source.exists() and os.path.samefile(path, source)
    except OSError:
        return False


def _probe(folder: Path, path: Path) -> None:
    """Create and remove one temporary file in ``folder``: ``os.access`` says yes to root even under ``/proc``."""
    try:
        descriptor, name = tempfile.mkstemp(prefix=".mixq-probe.", dir=folder)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {folder} does not accept new files ({exc.strerror or exc}); "
                          "choose another output path") from None
    os.close(descriptor)
    os.unlink(name)


def input_paths(*specs: str | Path | None) -> list[Path]:
    """The files a command reads, from its arguments: a model spec ``FILE.py:factory`` names ``FILE.py``."""
    paths = []
    for spec in specs:
        if spec is None:
            continue
        text = str(spec)
        paths.append(Path(text))
        if ":" in text:
            paths.append(Path(text.rsplit(":", 1)[0]))
        if Path(text).is_dir():
            paths.append(Path(text) / "plan.json")  # a run directory given as --plan
    return paths


def _default_scheme() -> Any:
    from mixq.core.precision import QuantScheme

    return QuantScheme()


__all__ = ["ExportReport", "export", "input_paths", "writable_output"]
