"""A model whose file fixes the batch at 1 exports and is checked in batches of 1; a failed export leaves no file."""

from __future__ import annotations

from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from mixq.backends.onnx import testing as graphs  # noqa: E402
from mixq.core.assignment import Assignment  # noqa: E402
from mixq.core.precision import Precision  # noqa: E402
from mixq.export import export  # noqa: E402

PLAN = Assignment({group: Precision.parse("w8a8") for group in ("conv", "up", "fc")})


@pytest.mark.parametrize("hardcoded", [False, True], ids=["batch relaxed in the simulation", "batch baked in"])
def test_a_batch_fixed_at_one_exports_and_is_checked(tmp_path: Path, hardcoded: bool) -> None:
    onnx.save(graphs.deconv(batch=1, hardcoded_reshape=hardcoded), str(tmp_path / "float.onnx"))
    report = export(tmp_path / "float.onnx", PLAN, graphs.images(5, (3, 4, 4)), tmp_path / "q.onnx")
    assert report.check["n_samples"] == 5 and report.check["top1_agreement_vs_simulation"] == 1.0
    assert report.path.is_file() and report.file_bytes == report.path.stat().st_size


def test_a_failed_check_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mixq.backends.onnx.export import onnx_qdq

    def broken(*args: object, **kwargs: object) -> dict[str, float]:
        raise RuntimeError("the check failed")

    monkeypatch.setattr(onnx_qdq, "compare", broken)
    onnx.save(graphs.deconv(batch=1), str(tmp_path / "float.onnx"))
    with pytest.raises(RuntimeError, match="the check failed"):
        export(tmp_path / "float.onnx", PLAN, graphs.images(5, (3, 4, 4)), tmp_path / "q.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["float.onnx"]
