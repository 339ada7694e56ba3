"""``--rounding adaround`` on ONNX models: the scheme carries it (plans, run keys, export), the simulation
and the exported file use the AdaRound integers, the default stays nearest rounding, torch models are
refused before any work."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

import onnx
from onnx import numpy_helper

from mixq import api
from mixq.backends.onnx import testing
from mixq.config import SearchConfig
from mixq.core.assignment import Assignment
from mixq.core.precision import Precision, QuantScheme
from mixq.cost.totals import CostRecord
from mixq.errors import CapabilityError, ConfigError, RunDirectoryError
from mixq.export import export
from mixq.plan import Plan
from mixq.prepared import prepare
from mixq.rundir import RunDirectory

ADAROUND = QuantScheme(weight_rounding="adaround")
W4A8 = Precision.parse("w4a8")
#: Measured on residual() with these samples: nearest 17.6 dB, AdaRound 26.7 dB on the held-out samples.
MARGIN_DB = 5.0


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache root for the module (never the user's ~/.cache): each (layer, bits) is optimised once."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MIXQ_CACHE_DIR", str(root))
        yield root


def _images(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 3, 8, 8)).astype(np.float32)


CALIB = _images(32, 0)
HELD_OUT = _images(32, 1)


def _nearest(weight: np.ndarray, scale: np.ndarray, zero: np.ndarray, qmin: int, qmax: int) -> np.ndarray:
    return np.clip(np.round(weight.astype(np.float64) / scale) + zero, qmin, qmax).astype(np.int32)


def test_adaround_beats_nearest_rounding_on_held_out_samples() -> None:
    model = testing.residual()
    nearest = api.evaluate(model, HELD_OUT, "w4a8", calibration=CALIB, num_samples=32)
    adaround = api.evaluate(model, HELD_OUT, "w4a8", calibration=CALIB, num_samples=32, scheme=ADAROUND)
    assert adaround["sqnr_db"] > nearest["sqnr_db"] + MARGIN_DB, (nearest, adaround)
    assert adaround["weight_bytes"] == nearest["weight_bytes"]  # same bits, only the rounding changed


def test_the_exported_file_holds_the_adaround_integers_and_agrees_with_the_simulation(tmp_path: Path) -> None:
    model = testing.residual()
    sim = prepare(model, CALIB, ["w4a8"], ADAROUND, 32).sim
    report = export(model, W4A8, CALIB, tmp_path / "q.onnx", num_samples=32, scheme=ADAROUND, check_samples=16)
    assert report.check["sqnr_vs_simulation_db"] > 40.0, report.check
    stored = {t.name: numpy_helper.to_array(t) for t in onnx.load(tmp_path / "q.onnx").graph.initializer}
    changed = 0
    for key, weight in sim.quantizers.weights.items():
        q, scale, zero = sim.quantizers.weight_integers(key, 4)
        (name,) = [n for n in stored if n.startswith(f"{key}::") and n.endswith("_q")]
        np.testing.assert_array_equal(stored[name].astype(np.int32), q)
        params = sim.quantizers.weight_params(key, 4)
        nearest = _nearest(weight, scale, zero, params.qmin, params.qmax)
        assert np.abs(q - nearest).max() <= 1
        changed += int((q != nearest).sum())
    assert changed > 0  # AdaRound did round some weights the other way


def test_the_default_scheme_rounds_to_nearest_and_writes_what_it_wrote_before() -> None:
    assert QuantScheme().weight_rounding == "nearest"
    assert QuantScheme().to_dict() == {"weight_per_channel": True, "weight_symmetric": True, "act_symmetric": False,
                                       "weight_range": "mse", "act_range": "mse", "percentile": 99.99,
                                       "act_dynamic": False}  # as before: plans and run keys unchanged
    assert "adaround" not in json.dumps(SearchConfig().measurement_key())
    sim = prepare(testing.residual(), CALIB, ["w4a8"], QuantScheme(), 32).sim
    for key, weight in sim.quantizers.weights.items():
        q, scale, zero = sim.quantizers.weight_integers(key, 4)
        params = sim.quantizers.weight_params(key, 4)
        np.testing.assert_array_equal(q, _nearest(weight, scale, zero, params.qmin, params.qmax))


def test_the_rounding_round_trips_through_the_plan(tmp_path: Path) -> None:
    assert QuantScheme.from_dict(ADAROUND.to_dict()) == ADAROUND
    assert ADAROUND.to_dict()["weight_rounding"] == "adaround"
    assert QuantScheme.from_dict({"act_range": "minmax"}).weight_rounding == "nearest"  # an older plan
    with pytest.raises(ConfigError, match="weight_rounding must be one of nearest, adaround"):
        QuantScheme(weight_rounding="stochastic")
    with pytest.raises(ConfigError, match="adaround_iterations must be a positive whole number"):
        QuantScheme(adaround_iterations=0)
    short = QuantScheme(weight_rounding="adaround", adaround_iterations=50)
    assert short.to_dict()["adaround_iterations"] == 50 and "adaround_iterations" not in ADAROUND.to_dict()
    assert QuantScheme.from_dict(short.to_dict()) == short
    plan = Plan(Assignment({"conv1": W4A8}), {"bops": CostRecord(1.0, "BOPs", 0.25)}, 20.0, scheme=ADAROUND,
                num_samples=32)
    stored = json.loads(plan.save(tmp_path / "plan.json").read_text())
    assert stored["scheme"]["weight_rounding"] == "adaround"
    assert Plan.load(tmp_path).scheme == ADAROUND


def test_a_resumed_run_with_another_rounding_is_refused(tmp_path: Path) -> None:
    nearest, adaround = SearchConfig(), SearchConfig(scheme=ADAROUND)
    assert nearest.measurement_key() != adaround.measurement_key()
    with RunDirectory(tmp_path) as run:
        run.bind(nearest.measurement_key())
    with RunDirectory(tmp_path) as run, pytest.raises(RunDirectoryError, match="changed: scheme"):
        run.check_key(adaround.measurement_key())


def test_a_backend_without_adaround_is_refused_before_any_work() -> None:
    from mixq.backends import get_backend, require_rounding

    for name in ("torch", "onnx"):  # the built-in backends both round with AdaRound
        require_rounding(get_backend(name), "adaround")

    class ThirdParty:
        name = "tflite"

    with pytest.raises(CapabilityError, match="the tflite backend cannot round weights with AdaRound .it rounds "
                                              "with nearest.*torch nn.Module or an .onnx file"):
        require_rounding(ThirdParty(), "adaround")  # type: ignore[arg-type]
    require_rounding(ThirdParty(), "nearest")  # type: ignore[arg-type]


def test_the_cli_flag_sets_the_scheme() -> None:
    from mixq.cli.main import _scheme
    from mixq.cli.parser import build_parser

    for verb in (["search", "--out", "run"], ["eval"]):
        args = build_parser().parse_args([*verb, "m.onnx", "--data", "d", "--rounding", "adaround"])
        assert _scheme(args) == ADAROUND
        assert _scheme(build_parser().parse_args([*verb, "m.onnx", "--data", "d"])) == QuantScheme()
        args = build_parser().parse_args([*verb, "m.onnx", "--data", "d", "--rounding", "adaround",
                                          "--adaround-iterations", "50"])
        assert _scheme(args) == QuantScheme(weight_rounding="adaround", adaround_iterations=50)
        args = build_parser().parse_args([*verb, "m.onnx", "--data", "d", "--rounding", "adaround",
                                          "--adaround-batch-size", "8", "--adaround-reg", "0.05"])
        assert _scheme(args) == QuantScheme(weight_rounding="adaround", adaround_batch_size=8, adaround_reg_weight=0.05)


def test_the_adaround_settings_reach_the_optimiser_and_round_trip() -> None:
    from mixq.core.rounding import AdaRoundConfig

    scheme = QuantScheme(weight_rounding="adaround", adaround_iterations=60, adaround_batch_size=8,
                         adaround_reg_weight=0.05)
    assert AdaRoundConfig.from_scheme(scheme) == AdaRoundConfig(iterations=60, batch_size=8, reg_weight=0.05)
    assert AdaRoundConfig.from_scheme(ADAROUND) == AdaRoundConfig()
    stored = scheme.to_dict()
    assert stored["adaround_batch_size"] == 8 and stored["adaround_reg_weight"] == 0.05
    assert QuantScheme.from_dict(stored) == scheme
    assert "adaround_batch_size" not in ADAROUND.to_dict()  # defaults are left out: older plans and keys unchanged
    for bad in ({"adaround_batch_size": 0}, {"adaround_reg_weight": -1.0}, {"adaround_reg_weight": "x"}):
        with pytest.raises(ConfigError, match="adaround_"):
            QuantScheme(**bad)  # type: ignore[arg-type]


def test_layer_specs_follow_the_nodes_attributes_and_refuse_what_adaround_cannot_mirror() -> None:
    from onnx import helper

    from mixq.backends.onnx.rounding import layer_spec
    from mixq.core.graph import OpKind

    conv = helper.make_node("Conv", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1], dilations=[1, 1])
    spec, _ = layer_spec(conv, np.zeros((8, 3, 3, 3), np.float32))
    assert spec is not None and (spec.kind, spec.stride, spec.padding, spec.groups) == (OpKind.CONV, (2, 2), (1, 1), 1)
    depthwise = helper.make_node("Conv", ["x", "w"], ["y"], group=8, pads=[1, 1, 1, 1])
    spec, _ = layer_spec(depthwise, np.zeros((8, 1, 3, 3), np.float32))
    assert spec is not None and (spec.kind, spec.groups) == (OpKind.DEPTHWISE_CONV, 8)
    asymmetric = helper.make_node("Conv", ["x", "w"], ["y"], pads=[0, 0, 1, 1])
    assert layer_spec(asymmetric, np.zeros((8, 3, 3, 3), np.float32)) == (None, "asymmetric pads [0, 0, 1, 1]")
    same = helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER")
    assert layer_spec(same, np.zeros((8, 3, 3, 3), np.float32))[0] is None
    weight = np.zeros((4, 6), np.float32)
    assert layer_spec(helper.make_node("Gemm", ["x", "w"], ["y"], transB=1), weight)[0].kind is OpKind.LINEAR
    assert layer_spec(helper.make_node("Gemm", ["x", "w"], ["y"]), weight)[0].kind is OpKind.MATMUL  # (in, out)
    assert layer_spec(helper.make_node("MatMul", ["x", "w"], ["y"]), weight)[0].kind is OpKind.MATMUL
    assert layer_spec(helper.make_node("Gemm", ["x", "w"], ["y"], alpha=0.5), weight)[0] is None
    assert layer_spec(helper.make_node("ConvTranspose", ["x", "w"], ["y"]), np.zeros((3, 8, 2, 2), np.float32))[0] is None


def test_adaround_after_a_nearest_search_through_eval_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                                  ) -> None:
    # Pandey et al.'s "AdaRound over PTQ MP": a plan searched with nearest rounding, evaluated and exported
    # with AdaRound (--rounding overrides the plan's rounding in eval --plan and export).
    from mixq.cli.main import main

    model_path = tmp_path / "m.onnx"
    onnx.save(testing.residual(), model_path)
    np.savez(tmp_path / "calib.npz", x=CALIB)
    np.savez(tmp_path / "held.npz", x=HELD_OUT)
    groups = prepare(str(model_path), CALIB, ["w4a8"], QuantScheme(), 32).graph
    plan = Plan(Assignment({g.id: W4A8 for g in groups}), {"bops": CostRecord(1.0, "BOPs", 0.25)}, 20.0,
                scheme=QuantScheme(), num_samples=32)
    plan.save(tmp_path / "plan.json")
    common = [str(model_path), "--data", str(tmp_path / "held.npz"), "--calib-data", str(tmp_path / "calib.npz"),
              "--plan", str(tmp_path / "plan.json"), "--json", "-q"]
    scores = {}
    for rounding in ([], ["--rounding", "adaround"]):
        assert main(["eval", *common, *rounding]) == 0
        scores[bool(rounding)] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["sqnr_db"]
    assert scores[True] > scores[False] + MARGIN_DB, scores
    out = tmp_path / "q.onnx"
    assert main(["export", str(model_path), "--data", str(tmp_path / "calib.npz"), "--plan", str(tmp_path / "plan.json"),
                 "-o", str(out), "--rounding", "adaround", "--json", "-q"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["check"]["sqnr_vs_simulation_db"] > 40.0, report["check"]
    sim = prepare(str(model_path), CALIB, ["w4a8"], ADAROUND, 32).sim
    stored = {t.name: numpy_helper.to_array(t) for t in onnx.load(out).graph.initializer}
    for key in sim.quantizers.weights:
        (name,) = [n for n in stored if n.startswith(f"{key}::") and n.endswith("_q")]
        np.testing.assert_array_equal(stored[name].astype(np.int32), sim.quantizers.weight_integers(key, 4)[0])
