"""Exporting a plan to a deployable model: ``export(model, plan, calibration, path)``.

ONNX models only, for now: the plan's quantizer groups are the ONNX graph's node names, so the plan
must come from a search on the same ``.onnx`` file (``mixq search model.onnx ...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mixq.errors import ConfigError

if TYPE_CHECKING:
    from mixq.backends.base import Progress
    from mixq.core.assignment import Assignment
    from mixq.core.precision import QuantScheme
    from mixq.data.dataset import Dataset
    from mixq.export.onnx_qdq import ExportReport
    from mixq.plan import Plan


def export(model: object, plan: Plan | Assignment | str | Path, calibration: Dataset | np.ndarray, path: str | Path,
           *, num_samples: int | None = None, scheme: QuantScheme | None = None, check_samples: int = 64,
           benchmark: bool = False, int4: bool = True, int32_bias: bool = True,
           threads: int | None = None, progress: Progress | None = None) -> ExportReport:
    """Write ``plan`` applied to ``model`` as a QDQ ONNX file at ``path``.

    Quantizer ranges are calibrated exactly as in the search (same first ``num_samples`` samples, same
    scheme; by default both are read from the plan's provenance), so the file computes what the search
    simulated. The file is then run on the first ``check_samples`` calibration samples and compared with
    the simulation (``report.check``); with ``benchmark``, latency is measured next to the float model.

    Args:
        model: a ``.onnx`` path or ``onnx.ModelProto`` (the one the plan was searched on).
        plan: a ``Plan``, an ``Assignment``, or the path of a ``plan.json`` (or its run directory).
        calibration: the calibration data of the search.
        int4: store weights of <= 4 bits as INT4 (opset 21); otherwise as int8.
        int32_bias: int32 biases for 8-bit groups, as ORT's integer Conv/Gemm kernels need; ``False`` keeps
            float biases (bit-exact with the simulation, fewer fused kernels).

    Returns an ``ExportReport``: file size next to the float model's, the check against the simulation,
    latencies (with ``benchmark``), the integer kernels ONNX Runtime fused, and notes.
    """
    from mixq import backends
    from mixq.api import as_dataset, prepare, resolve_assignment
    from mixq.config import scheme_from_dict
    from mixq.backends.onnx.simulation import OnnxSimulation
    from mixq.export.onnx_qdq import export_qdq
    from mixq.plan import Plan

    backend = backends.resolve(model)
    if backend.name != "onnx":
        raise ConfigError(
            "export writes ONNX and needs the plan to be made on an ONNX model: export the network with "
            "torch.onnx.export, then run `mixq search model.onnx ...` and `mixq export model.onnx --plan ...`"
        )
    if isinstance(plan, (str, Path)):
        plan = Plan.load(plan)
    provenance = plan.provenance if isinstance(plan, Plan) else {}
    if scheme is None:
        scheme = scheme_from_dict(dict(provenance["scheme"])) if "scheme" in provenance else None
    if num_samples is None:
        num_samples = int(provenance.get("num_samples", 64))
    data = as_dataset(calibration)
    session = prepare(model, data, ["w8a8"], scheme or _default_scheme(), num_samples, threads, progress)
    assignment = resolve_assignment(session.graph, plan)
    assert assignment is not None
    check = session.calibration[:check_samples] if check_samples else None
    sim: OnnxSimulation = session.sim  # type: ignore[assignment]  # the ONNX backend's simulation
    return export_qdq(sim, assignment, path, check_data=check, benchmark=benchmark, int4=int4,
                      int32_bias=int32_bias, threads=threads, progress=progress)


def _default_scheme() -> Any:
    from mixq.core.precision import QuantScheme

    return QuantScheme()


__all__ = ["export"]
