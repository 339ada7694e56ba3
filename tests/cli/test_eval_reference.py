"""`mixq eval` on ONNX models and on exported files: the same JSON keys as for torch, and an exported file
measured against its float model (``--reference``) gives what ONNX Runtime runs of both files give."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from mixq.cli.main import main  # noqa: E402
from mixq.core.assignment import Assignment, uniform  # noqa: E402
from mixq.core.precision import Precision, parse_candidates  # noqa: E402
from mixq.plan import Plan  # noqa: E402
from mixq.backends.onnx import testing as graphs  # noqa: E402

EVAL_KEYS = {"top1", "top5", "agreement", "sqnr_db", "bops_ratio", "weight_bytes", "n_samples"}
N = 24


@pytest.fixture(scope="module")
def files(exported_classifier: Callable[[str], dict[str, Path]]) -> dict[str, Path]:
    """A float ONNX classifier, data with labels, a w4a8 QDQ export of the classifier, and its plan."""
    return exported_classifier("w4a8")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def eval_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    code, out, err = run(capsys, "eval", *argv, "--json", "-q")
    assert code == 0, err
    return json.loads(out)


def ort_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_onnx_eval_gives_the_same_keys_as_torch(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    from mixq.backends.torch.backend import TorchBackend
    from mixq.backends.torch.testing import ResidualNet

    root, data = files["root"], str(files["data"])
    (root / "tmodel.py").write_text("from mixq.backends.torch.testing import ResidualNet\n\n"
                                    "def build():\n    return ResidualNet().eval()\n")
    torch_graph = TorchBackend().trace(ResidualNet().eval(), torch.zeros(1, 3, 16, 16).numpy(),
                                       parse_candidates("w8a8")).graph
    Plan(uniform(torch_graph, Precision.parse("w6a8")), costs={}, predicted_sqnr_db=0.0).save(root / "tplan.json")
    torch_spec = f"{root / 'tmodel.py'}:build"
    for onnx_mode, torch_mode in ((["--float"], ["--float"]), (["--uniform", "w8a8"], ["--uniform", "w8a8"]),
                                  (["--plan", str(files["plan"])], ["--plan", str(root / "tplan.json")])):
        from_onnx = eval_json(capsys, str(files["float"]), *onnx_mode, "--data", data, "--num-samples", "8")
        from_torch = eval_json(capsys, torch_spec, *torch_mode, "--data", data, "--num-samples", "8")
        assert set(from_onnx) == set(from_torch), onnx_mode
        assert from_onnx["n_samples"] == N
    assert set(from_onnx) == EVAL_KEYS  # the --plan round


def test_exported_file_against_its_float_model(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    result = eval_json(capsys, str(files["qdq"]), "--reference", str(files["float"]), "--data", str(files["data"]))
    with np.load(files["data"]) as npz:
        x, y = npz["x"], npz["y"]
    reference, output = ort_outputs(files["float"], x), ort_outputs(files["qdq"], x)
    agreement = np.mean(reference.argmax(1) == output.argmax(1))
    sqnr = 10 * np.log10(np.mean(np.sum(reference ** 2, 1) / np.sum((reference - output) ** 2, 1)))
    top1 = np.mean(output.argmax(1) == y)
    top5 = np.mean([label in np.argsort(-row)[:5] for row, label in zip(output, y)])
    assert set(result) == EVAL_KEYS | {"reference", "runtime"} and result["reference"] == str(files["float"])
    assert result["n_samples"] == N
    assert result["agreement"] == pytest.approx(agreement)
    assert result["sqnr_db"] == pytest.approx(sqnr, rel=1e-4) and 5.0 < sqnr < 60.0  # w4a8: real noise
    assert result["top1"] == pytest.approx(top1) and result["top5"] == pytest.approx(top5)
    stored = sum(t.ByteSize() for t in onnx.load(str(files["qdq"])).graph.initializer)
    assert result["bops_ratio"] is None and 0 < result["weight_bytes"] <= stored


def test_api_evaluate_with_a_reference(files: dict[str, Path]) -> None:
    from mixq import api
    from mixq.data.dataset import ArrayDataset

    with np.load(files["data"]) as npz:
        x, y = npz["x"], npz["y"]
    result = api.evaluate(files["qdq"], ArrayDataset(x, y), None, reference=files["float"])
    reference, output = ort_outputs(files["float"], x), ort_outputs(files["qdq"], x)
    sqnr = 10 * np.log10(np.mean(np.sum(reference ** 2, 1) / np.sum((reference - output) ** 2, 1)))
    assert result["sqnr_db"] == pytest.approx(sqnr, rel=1e-4) and result["reference"] == str(files["float"])


def test_float_model_against_itself(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    data = str(files["data"])
    itself = eval_json(capsys, str(files["float"]), "--reference", str(files["float"]), "--data", data)
    floated = eval_json(capsys, str(files["float"]), "--float", "--data", data)
    assert itself["agreement"] == 1.0
    assert itself["sqnr_db"] == pytest.approx(120.0)  # exact outputs: the per-sample ratio is capped at 1e12
    assert itself["bops_ratio"] == floated["bops_ratio"] and itself["weight_bytes"] == floated["weight_bytes"]
    assert itself["top1"] == floated["top1"] and set(itself) == set(floated) | {"sqnr_db", "reference"}


def test_onnx_file_against_a_torch_reference(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    import warnings

    torch = pytest.importorskip("torch")
    from mixq.backends.torch.testing import ResidualNet

    root = files["root"]
    (root / "rmodel.py").write_text("from mixq.backends.torch.testing import ResidualNet\n\n"
                                    "def build():\n    return ResidualNet().eval()\n")
    exported = root / "torch_export.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(ResidualNet().eval(), (torch.zeros(1, 3, 16, 16),), str(exported), dynamo=False,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
                          opset_version=17)
    spec = f"{root / 'rmodel.py'}:build"
    result = eval_json(capsys, str(exported), "--reference", spec, "--data", str(files["data"]))
    assert result["reference"] == spec and result["agreement"] == 1.0 and result["sqnr_db"] > 80.0


def test_a_quantized_file_is_not_quantized_again(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    data = str(files["data"])
    for mode in (["--uniform", "w8a8"], ["--plan", str(files["plan"])]):
        code, _, err = run(capsys, "eval", str(files["qdq"]), *mode, "--data", data, "-q")
        assert code == 2 and "already quantized" in err and "--reference FLOAT_MODEL" in err


def test_a_quantized_file_as_float_warns_it_is_compared_with_itself(files: dict[str, Path],
                                                                    capsys: pytest.CaptureFixture[str],
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    code, out, _ = run(capsys, "eval", str(files["qdq"]), "--float", "--data", str(files["data"]), "--json")
    result = json.loads(out)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]  # the CLI logs to stderr
    assert code == 0 and any("against itself" in w and "--reference FLOAT_MODEL" in w for w in warnings)
    assert result["agreement"] == 1.0 and "reference" not in result


def test_reference_with_other_outputs_is_a_data_error(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    other = files["root"] / "five_classes.onnx"
    onnx.save(graphs.residual(classes=5), str(other))
    code, _, err = run(capsys, "eval", str(files["qdq"]), "--reference", str(other), "--data", str(files["data"]), "-q")
    assert code == 2 and "gives 10 output values per sample" in err and "gives 5" in err


def test_reference_excludes_a_plan_and_something_must_be_chosen(files: dict[str, Path],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    data = str(files["data"])
    code, _, err = run(capsys, "eval", str(files["float"]), "--uniform", "w8a8", "--reference", str(files["float"]),
                       "--data", data, "-q")
    assert code == 2 and "evaluated as given" in err
    code, _, err = run(capsys, "eval", str(files["float"]), "--data", data, "-q")
    assert code == 2 and "--reference" in err and "--float" in err


def test_detection_of_quantized_files(files: dict[str, Path]) -> None:
    from mixq.reference import is_quantized_file

    assert is_quantized_file(files["qdq"]) and is_quantized_file(onnx.load(str(files["qdq"])))
    assert not is_quantized_file(files["float"]) and not is_quantized_file(Assignment({}))
