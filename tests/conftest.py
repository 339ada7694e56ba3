"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` next to the repository; tests that need it skip in a clone without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not present: {SHARED_DATA} (benchmark data lives in ../shared)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def exported_classifier(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, Path]]:
    """``build(precision)``: a float ONNX classifier, 24 labelled samples, the uniform plan at ``precision`` and
    its QDQ export, made once per precision: the files that running exported files as given is tested on."""
    made: dict[str, dict[str, Path]] = {}

    def build(precision: str) -> dict[str, Path]:
        if precision not in made:
            made[precision] = _exported_classifier(tmp_path_factory.mktemp(f"classifier-{precision}"), precision)
        return made[precision]

    return build


def _exported_classifier(root: Path, precision: str) -> dict[str, Path]:
    import numpy as np

    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from mixq.backends.onnx import testing as graphs
    from mixq.backends.onnx.backend import OnnxBackend
    from mixq.core.assignment import uniform
    from mixq.core.precision import Precision, parse_candidates
    from mixq.export import export
    from mixq.plan import Plan

    x = graphs.blocky_images(24, (3, 16, 16), seed=3)
    np.savez(root / "data.npz", x=x, y=np.random.default_rng(1).integers(0, 10, len(x)))
    float_path = root / "model.onnx"
    onnx.save(graphs.residual(), str(float_path))
    graph = OnnxBackend().trace(float_path, x[:1], parse_candidates("w8a8")).graph
    plan = Plan(uniform(graph, Precision.parse(precision)), costs={}, predicted_sqnr_db=0.0, num_samples=16)
    plan.save(root / "plan.json")
    export(float_path, plan, x, root / "model.qdq.onnx", check_samples=0)
    return {"root": root, "float": float_path, "qdq": root / "model.qdq.onnx", "data": root / "data.npz",
            "plan": root / "plan.json"}
