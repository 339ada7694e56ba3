"""`mixq search --finetune-kd`: the tuned plan round-trips through `mixq eval --plan` and `mixq export`; plans
without tuned quantizers are unchanged; a bad tuned file and an ONNX model are one clear error each."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from mixq.cli.main import main

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """One search with distillation on ResidualNet: (model spec file, data, run directory)."""
    from mixq.backends.torch.testing import random_images

    folder = tmp_path_factory.mktemp("kd")
    (folder / "m.py").write_text("from mixq.backends.torch.testing import ResidualNet\n\ndef build():\n"
                                 "    return ResidualNet().eval()\n")
    np.savez(folder / "d.npz", x=random_images(32, seed=3))
    run = folder / "run"
    assert main(["search", f"{folder / 'm.py'}:build", "--data", str(folder / "d.npz"), "--candidates", "w4a4,w8a8",
                 "--budget", "bops<=0.3", "--num-samples", "32", "--out", str(run), "--finetune-kd", "40",
                 "--finetune-minutes", "5", "-q", "--no-report"]) == 0
    return folder / "m.py", folder / "d.npz", run


def test_the_search_stores_the_tuned_quantizers_and_the_plan_names_them(tuned_run: tuple[Path, Path, Path]) -> None:
    from mixq.core.tuned import TunedQuantizers

    _, _, run = tuned_run
    plan = json.loads((run / "plan.json").read_text())
    assert plan["tuned"] == "tuned.npz" and (run / "tuned.npz").is_file()
    tuned = TunedQuantizers.load(run / "tuned.npz")
    assert tuned.method == "kd" and tuned.details["steps"] == 40 and tuned.weights
    assert {"agreement_before", "agreement_after", "seconds"} <= set(tuned.details)
    config = json.loads((run / "config.json").read_text())
    assert config["tuning"] == "kd" and config["tuning_options"] == {"steps": 40, "minutes": 5.0}
    assert "tuning_s" in json.loads((run / "timings.json").read_text())


def test_eval_of_the_plan_reproduces_the_recorded_quality(tuned_run: tuple[Path, Path, Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    model, data, run = tuned_run
    capsys.readouterr()
    assert main(["eval", f"{model}:build", "--data", str(data), "--plan", str(run / "plan.json"), "--json", "-q"]) == 0
    measured = json.loads(capsys.readouterr().out)
    recorded = json.loads((run / "plan.json").read_text())["quality"]
    assert measured["sqnr_db"] == pytest.approx(recorded["sqnr_db"], abs=1e-6)
    assert measured["agreement"] == recorded["agreement"]


def test_the_exported_file_carries_the_tuned_quantizers(tuned_run: tuple[Path, Path, Path],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The file agrees with the tuned simulation, and differs from what the untuned plan exports."""
    model, data, run = tuned_run
    recorded = json.loads((run / "plan.json").read_text())

    def export(plan: Path, out: Path) -> dict:  # type: ignore[type-arg]
        capsys.readouterr()
        assert main(["export", f"{model}:build", "--data", str(data), "--plan", str(plan), "-o", str(out),
                     "--check-samples", "32", "--no-output-quantizers", "--json", "-q"]) == 0
        return json.loads(capsys.readouterr().out)["check"]  # type: ignore[no-any-return]

    tuned = export(run / "plan.json", run.parent / "tuned.onnx")
    untuned_plan = run.parent / "untuned.json"
    untuned_plan.write_text(json.dumps({k: v for k, v in recorded.items() if k != "tuned"}))
    untuned = export(untuned_plan, run.parent / "untuned.onnx")
    # the export's own simulation (ONNX, tuned) computes what the torch search measured with the tuned plan
    assert tuned["simulation_sqnr_db"] == pytest.approx(recorded["quality"]["sqnr_db"], abs=0.05)
    assert tuned["sqnr_vs_simulation_db"] > 30 and tuned["top1_agreement_vs_simulation"] >= 0.95
    assert abs(untuned["simulation_sqnr_db"] - tuned["simulation_sqnr_db"]) > 0.1


def test_a_corrupt_tuned_file_is_one_config_error(tuned_run: tuple[Path, Path, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    model, data, run = tuned_run
    plan = json.loads((run / "plan.json").read_text())
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    (tmp_path / "tuned.npz").write_bytes(b"not an npz file")
    capsys.readouterr()
    for command in (["eval", f"{model}:build", "--data", str(data), "--plan", str(tmp_path / "plan.json"), "-q"],
                    ["export", f"{model}:build", "--data", str(data), "--plan", str(tmp_path / "plan.json"),
                     "-o", str(tmp_path / "o.onnx"), "-q"]):
        assert main(command) == 2
        error = capsys.readouterr().err
        assert "tuned quantizers file" in error and "not readable" in error and error.count("error:") == 1, error
    (tmp_path / "tuned.npz").unlink()
    assert main(["eval", f"{model}:build", "--data", str(data), "--plan", str(tmp_path / "plan.json"), "-q"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_finetune_kd_on_an_onnx_model_says_it_needs_a_torch_model(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from mixq.backends.torch.testing import TinyConvNet, random_images

    images = random_images(8, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(TinyConvNet().eval(), (torch.from_numpy(images[:1]),), str(tmp_path / "m.onnx"),
                          dynamo=False, opset_version=17)
    np.savez(tmp_path / "d.npz", x=images)
    code = main(["search", str(tmp_path / "m.onnx"), "--data", str(tmp_path / "d.npz"), "--budget", "bops<=0.5",
                 "--out", str(tmp_path / "run"), "--finetune-kd", "10", "-q", "--no-report"])
    error = capsys.readouterr().err
    assert code == 2 and "needs a torch model" in error and "nn.Module" in error, error
    assert not (tmp_path / "run").exists()  # refused before any work


def test_tuning_flags_without_a_tuning_step_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "tiny-cnn", "--data", "x.npz", "--out", "/tmp/none", "--finetune-minutes", "3", "-q"]) == 2
    assert "--finetune-kd STEPS" in capsys.readouterr().err


def test_block_reconstruction_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --reconstruct brecq [--qdrop] is the brecq tuner: RUN/tuned.npz named by the plan, eval reproduces its quality.
    from mixq.backends.torch.testing import random_images
    from mixq.core.tuned import TunedQuantizers

    (tmp_path / "m.py").write_text("from mixq.backends.torch.testing import ResidualNet\n\ndef build():\n"
                                   "    return ResidualNet().eval()\n")
    np.savez(tmp_path / "d.npz", x=random_images(16, seed=3))
    model, data, run = f"{tmp_path / 'm.py'}:build", str(tmp_path / "d.npz"), tmp_path / "run"
    assert main(["search", model, "--data", data, "--candidates", "w4a8,w8a8", "--budget", "bops<=0.3",
                 "--num-samples", "16", "--out", str(run), "--reconstruct", "brecq", "--qdrop",
                 "--tune-option", "iterations=30", "-q", "--no-report"]) == 0
    tuned = TunedQuantizers.load(run / "tuned.npz")
    assert tuned.method == "brecq" and tuned.weights and tuned.details["config"]["qdrop"] == 0.5
    assert tuned.details["config"]["iterations"] == 30
    assert json.loads((run / "config.json").read_text())["tuning"] == "brecq"
    capsys.readouterr()
    assert main(["eval", model, "--data", data, "--plan", str(run / "plan.json"), "--json", "-q"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["sqnr_db"] == pytest.approx(json.loads((run / "plan.json").read_text())["quality"]["sqnr_db"],
                                                abs=1e-6)
    for bad in (["--qdrop", "0.5"], ["--reconstruct", "brecq", "--finetune-kd", "5"]):
        assert main(["search", model, "--data", data, "--budget", "bops<=0.3", "--out", str(tmp_path / "r2"),
                     *bad, "-q"]) == 2
