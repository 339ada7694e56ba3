"""A QDQ file written by ``mixq export`` runs in OpenVINO as in ONNX Runtime: the same top-1 and outputs
close enough for a high SQNR, through the API and ``mixq eval FILE --reference FLOAT --runtime openvino``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

from mixq import api  # noqa: E402
from mixq.backends.onnx import testing as graphs  # noqa: E402
from mixq.cli.main import main  # noqa: E402
from mixq.data import ArrayDataset  # noqa: E402
from mixq.errors import ConfigError  # noqa: E402
from mixq.runtimes import RUNTIMES  # noqa: E402

N = 24


def sqnr_db(reference: np.ndarray, output: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference ** 2) / max(np.sum((reference - output) ** 2), 1e-30)))


@pytest.fixture(scope="module")
def files(exported_classifier: Callable[[str], dict[str, Path]]) -> dict[str, Path]:
    """A float ONNX classifier, data with labels and a w8a8 QDQ export of the classifier."""
    return exported_classifier("w8a8")


def images() -> np.ndarray:
    return graphs.blocky_images(N, (3, 16, 16), seed=3)


@pytest.mark.parametrize("threads", [None, 1])
def test_openvino_agrees_with_onnxruntime_on_an_exported_file(files: dict[str, Path], threads: int | None) -> None:
    x = images()
    ort_out = RUNTIMES.create("onnxruntime").run_as_given(files["qdq"], x[:1], threads)(x)
    ov_out = RUNTIMES.create("openvino").run_as_given(files["qdq"], x[:1], threads)(x)
    assert ov_out.shape == ort_out.shape == (N, 10) and ov_out.dtype == np.float32
    assert np.mean(ov_out.argmax(1) == ort_out.argmax(1)) >= 0.9
    assert sqnr_db(ort_out, ov_out) > 25
    # any batch size, and the file as a proto
    proto_runner = RUNTIMES.create("openvino").run_as_given(onnx.load(str(files["qdq"])), x[:1], threads)
    np.testing.assert_allclose(proto_runner(x[:5]), ov_out[:5], rtol=1e-4, atol=1e-4)


def test_both_runtimes_time_a_file(files: dict[str, Path]) -> None:
    x = images()
    for name in RUNTIMES.names():
        ms = RUNTIMES.create(name).latency_ms(files["qdq"], x[:1], runs=3, warmup=1, threads=1)
        assert 0 < ms < 10_000, name


def test_api_evaluate_in_openvino(files: dict[str, Path]) -> None:
    x = images()
    data = ArrayDataset(x, np.zeros(N, dtype=np.int64))
    in_ov = api.evaluate(files["qdq"], data, None, reference=files["float"], runtime="openvino")
    in_ort = api.evaluate(files["qdq"], data, None, reference=files["float"])
    assert in_ov["runtime"] == "openvino" and in_ort["runtime"] == "onnxruntime"
    assert set(in_ov) == set(in_ort)
    assert in_ov["agreement"] >= 0.9 and in_ov["sqnr_db"] > 20
    assert abs(in_ov["sqnr_db"] - in_ort["sqnr_db"]) < 10


def test_a_runtime_with_a_simulated_evaluation_is_refused(files: dict[str, Path]) -> None:
    x = images()
    with pytest.raises(ConfigError, match="runs a file as given"):
        api.evaluate(files["float"], x, "w8a8", runtime="openvino")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_eval_file_in_openvino(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "eval", str(files["qdq"]), "--reference", str(files["float"]), "--data",
                         str(files["data"]), "--runtime", "openvino", "--json", "-q")
    assert code == 0, err
    result = json.loads(out)
    assert result["runtime"] == "openvino" and result["reference"] == str(files["float"])
    assert result["n_samples"] == N and result["agreement"] >= 0.9 and result["sqnr_db"] > 20


def test_cli_unknown_runtime_says_did_you_mean(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(files["qdq"]), "--reference", str(files["float"]), "--data", str(files["data"]),
              "--runtime", "openvin", "--json"])
    assert exit_info.value.code == 2
    assert "did you mean 'openvino'" in capsys.readouterr().err


def test_cli_runtime_with_a_plan_evaluation_is_refused(files: dict[str, Path],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "eval", str(files["float"]), "--uniform", "w8a8", "--data", str(files["data"]),
                       "--runtime", "openvino", "-q")
    assert code == 2 and "runs a file as given" in err


def test_cli_runtime_from_a_config_file(files: dict[str, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "eval.yaml"
    config.write_text(f"reference: {files['float']}\ndata: {files['data']}\nruntime: openvino\n")
    code, out, err = run(capsys, "eval", str(files["qdq"]), "--config-file", str(config), "--json", "-q")
    assert code == 0, err
    assert json.loads(out)["runtime"] == "openvino"
