"""`mixq search` on an ONNX file, then `mixq export`: the written model runs and matches the search."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from mixq.cli.main import main

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")


def residual_onnx(folder: Path, images: np.ndarray) -> tuple[Path, Path]:
    """ResidualNet as torch.onnx.export writes it (dynamic batch), and ``images`` as DATA."""
    from mixq.backends.torch.testing import ResidualNet

    model_path = folder / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(ResidualNet().eval(), (torch.from_numpy(images[:1]),), str(model_path), dynamo=False,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
                          opset_version=17)
    data = folder / "data.npz"
    np.savez(data, x=images)
    return model_path, data


def test_search_then_export_an_onnx_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mixq.backends.torch.testing import ResidualNet, random_images

    images = random_images(16, seed=7)
    model_path, data = residual_onnx(tmp_path, images)
    run = tmp_path / "run"
    assert main(["search", str(model_path), "--data", str(data), "--candidates", "w4a8,w8a8", "--budget",
                 "bops<=0.4", "--num-samples", "16", "--out", str(run), "-q", "--no-report"]) == 0
    capsys.readouterr()
    out = tmp_path / "model.qdq.onnx"
    assert main(["export", str(model_path), "--plan", str(run / "plan.json"), "--data", str(data), "-o", str(out),
                 "--check-samples", "16", "--benchmark", "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    events = [json.loads(line) for line in captured.err.splitlines() if line.startswith("{")]
    stages = {e["stage"] for e in events}
    assert {"export: writing and checking", "export: latency of the exported model"} <= stages
    assert report["latency"]["quantized_ms"] > 0 and report["latency"]["float_ms"] > 0
    assert out.is_file() and report["file_bytes"] == out.stat().st_size
    assert report["file_bytes"] < report["float_file_bytes"]
    searched = json.loads((run / "plan.json").read_text())["quality"]["sqnr_db"]
    assert report["check"], report
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: images})[0]
    assert np.all(np.isfinite(outputs)) and outputs.shape == (16, 10)
    reference = ResidualNet().eval()(torch.from_numpy(images)).detach().numpy()
    sqnr = 10 * np.log10(np.mean(np.sum(reference ** 2, 1) / np.sum((reference - outputs) ** 2, 1)))
    assert abs(sqnr - searched) < 1.0  # the deployed file computes what the search measured


def test_a_torch_model_with_a_plan_from_its_onnx_file_names_that_file(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.py").write_text("from mixq.backends.torch.testing import TinyConvNet\n\ndef build():\n"
                                   "    return TinyConvNet().eval()\n")
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 16, 16, 3), np.uint8))
    (tmp_path / "plan.json").write_text(json.dumps({"assignment": {"/conv1/Conv": "w8a8"}}))
    code = main(["export", f"{tmp_path / 'm.py'}:build", "--plan", str(tmp_path / "plan.json"), "--data",
                 str(tmp_path / "d.npz"), "-o", str(tmp_path / "o.onnx"), "-q"])
    error = capsys.readouterr().err
    assert code == 2 and "does not fit" in error and ".onnx" in error, error


def test_export_uniform_writes_the_baseline_without_a_search(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`mixq export MODEL --uniform w8a8` is the file a uniform plan gives, and it runs as the simulation says."""
    from mixq.backends.torch.testing import random_images
    from mixq.core.assignment import uniform
    from mixq.core.precision import Precision
    from mixq.export import export
    from mixq.plan import Plan
    from mixq.prepared import trace_only

    images = random_images(16, seed=3)
    model_path, data = residual_onnx(tmp_path, images)
    out = tmp_path / "w8a8.onnx"
    assert main(["export", str(model_path), "--uniform", "w8a8", "--data", str(data), "-o", str(out),
                 "--check-samples", "16", "--json", "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    graph = trace_only(str(model_path), images[:1]).graph
    assert report["precision_counts"] == {"w8a8": len(graph)}
    assert report["check"]["exported_sqnr_db"] > 20 and report["fused"].get("QLinearConv", 0) > 0
    as_plan = Plan(uniform(graph, Precision.parse("w8a8")), {}, float("nan"))
    export(str(model_path), as_plan, images, tmp_path / "from-plan.onnx", check_samples=0)
    assert out.read_bytes() == (tmp_path / "from-plan.onnx").read_bytes()  # the same file as a uniform plan's
    with pytest.raises(SystemExit):  # --plan and --uniform are exclusive, and one of them is required
        main(["export", str(model_path), "--data", str(data), "-o", str(tmp_path / "x.onnx")])


def test_export_checks_the_file_in_a_second_runtime(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--runtime openvino``: the same file run in OpenVINO is compared with ONNX Runtime's run of it."""
    pytest.importorskip("openvino")
    from mixq.backends.torch.testing import random_images

    model_path, data = residual_onnx(tmp_path, random_images(16, seed=3))
    out = tmp_path / "w8.onnx"
    assert main(["export", str(model_path), "--uniform", "w8a8", "--data", str(data), "-o", str(out), "--runtime",
                 "openvino", "--check-samples", "8", "--json", "-q"]) == 0
    check = json.loads(capsys.readouterr().out)["runtime_check"]
    assert check["runtime"] == "openvino" and check["n_samples"] == 8
    assert check["sqnr_vs_onnxruntime_db"] > 20 and check["top1_agreement_vs_onnxruntime"] >= 0.75
